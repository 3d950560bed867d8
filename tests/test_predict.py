"""`netcli predict` and netcli.predict: images, folders, arrays, CSV rows and stdin, with no data set loaded."""
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_hostile import assert_clean_error
from tinyrun import invoke, runner

import netcli
from netcli.cli import app
from netcli.data.mnist import MNIST
from netcli.predict import image_input, predict
from netcli.runs import find_run

MNIST_MLP = """\
name: mnist_tiny
seed: 0
data: {dataset: mnist, limit: 1000, batch_size: 50, val_fraction: 0.1}
model:
  type: classifier
  layers: [flatten, {type: dense, units: 32}, relu, {type: dense, units: 10}]
optimizer: {type: adam, lr: 3.0e-3}
train: {epochs: 2}
"""


def train_run(folder, text, name):
    (folder / f"{name}.yaml").write_text(text)
    r = invoke("train", folder / f"{name}.yaml", "--runs-dir", folder / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    return find_run(folder / "runs" / text.split("\n")[0].split(": ")[1])


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    run = train_run(folder, MNIST_MLP, "mnist_tiny")
    r = invoke("eval", run)
    assert r.exit_code == 0, r.output
    return run


def test_real_mnist_pngs_predict_what_eval_computes(mnist_run, tmp_path):
    """The eval split (the first 200 test images under limit 1000) as PNG files: the same confusion matrix."""
    test_x, test_y = MNIST.arrays()["test_x"][:200], MNIST.arrays()["test_y"][:200]
    for i, img in enumerate(test_x):
        Image.fromarray(img).save(tmp_path / f"{i:03d}.png")
    r = runner.invoke(app, ["predict", str(mnist_run), str(tmp_path), "--format", "csv", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    assert "200 image(s) read as light-on-dark" in r.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert [ln.split(",")[0] for ln in lines] == [str(tmp_path / f"{i:03d}.png") for i in range(200)]  # sorted
    pred = np.array([int(ln.split(",")[1]) for ln in lines])
    cm = np.zeros((10, 10), np.int64)
    np.add.at(cm, (test_y, pred), 1)
    assert cm.tolist() == json.loads((mnist_run / "eval.json").read_text())["confusion_matrix"]
    # dark ink on white, found by the border: the same classes
    for i, img in enumerate(test_x[:50]):
        Image.fromarray(255 - img).convert("RGB").save(tmp_path / f"inv{i:02d}.jpg", quality=100)
    model = netcli.load_run(mnist_run)
    inv = predict(model, [str(tmp_path / f"inv{i:02d}.jpg") for i in range(50)])
    assert set(inv.polarity.values()) == {"dark-on-light"}
    assert np.mean([int(r["class"]) for r in inv.rows] == pred[:50]) >= 0.96  # JPEG is lossy


def test_pictures_of_other_sizes_are_fitted_like_mnist(mnist_run):
    """A digit drawn 3x larger off-centre on a big canvas comes back close to the 28x28 original."""
    model = netcli.load_run(mnist_run)
    corr = []
    for img in MNIST.arrays()["test_x"][:100]:
        canvas = np.zeros((120, 150), np.uint8)
        canvas[5:89, 50:134] = np.asarray(Image.fromarray(img).resize((84, 84), Image.Resampling.BILINEAR))
        x, read_as = image_input(Image.fromarray(canvas), model.info)
        assert read_as == "light-on-dark" and x.shape == (1, 28, 28) and 0 <= x.min() and x.max() <= 1
        corr.append(np.corrcoef(x.ravel(), img.ravel())[0, 1])
        ys, xs = np.nonzero(x[0])
        assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 20  # the ink inside MNIST's 20x20 box
        mass = x[0].sum()
        assert abs(np.arange(28) @ x[0].sum(1) / mass - 14) <= 0.5  # centred by mass, as MNIST
    assert np.median(corr) > 0.9, np.median(corr)


@pytest.fixture
def tiny_run(tiny):
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet").exit_code == 0
    return find_run(tiny / "runs" / "tiny")


def test_arrays_mixed_inputs_and_stdin(tiny_run, tmp_path):
    model = netcli.load_run(tiny_run)
    x = np.random.default_rng(0).normal(size=(5, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "one.npy", x[0])
    np.save(tmp_path / "batch.npy", x[1:4])
    np.savez(tmp_path / "more.npz", x=x[4:])
    buf = io.BytesIO()
    np.save(buf, x[:2])
    r = runner.invoke(app, ["predict", str(tiny_run), str(tmp_path / "one.npy"), str(tmp_path / "batch.npy"),
                            str(tmp_path / "more.npz"), "-", "--top-k", "2"], input=buf.getvalue())
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["input"] for row in rows] == [str(tmp_path / "one.npy"), *[f"{tmp_path / 'batch.npy'}[{i}]" for i in
                                                                         range(3)], f"{tmp_path / 'more.npz'}[0]",
                                             "-[0]", "-[1]"]
    proba = model.predict_proba(np.concatenate([x, x[:2]]))
    assert [int(row["class"]) for row in rows] == proba.argmax(-1).tolist()
    np.testing.assert_allclose([row["probability"] for row in rows], proba.max(-1), atol=1e-6)
    assert all(len(row["top_k"]) == 2 and row["top_k"][0][0] == row["class"] for row in rows)


def huge_png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (its data is cut short: it must be refused before decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def test_bad_inputs_are_one_line_naming_them(mnist_run, tiny_run, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not a picture at all")
    (tmp_path / "huge.png").write_bytes(huge_png_header(10_000, 10_000))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "ok.png")
    cases = {"empty.png": "empty (0 bytes)", "junk.png": "not a readable image",
             "huge.png": "10000x10000 pixels is more than this reads", "missing.png": "no such file",
             "wrong.npy": "shape (3, 5) does not fit the model, which takes (1, 28, 28)"}
    (tmp_path / "out.json").write_text("kept")
    for name, fragment in cases.items():
        r = runner.invoke(app, ["predict", str(mnist_run), str(tmp_path / "ok.png"), str(tmp_path / name),
                                "-o", str(tmp_path / "out.json")])
        assert_clean_error(r, f"{tmp_path / name}: {fragment}")
        assert (tmp_path / "out.json").read_text() == "kept"  # nothing already written is lost
    r = runner.invoke(app, ["predict", str(mnist_run), *[str(tmp_path / n) for n in ["ok.png", *cases]], "--skip-bad",
                            "-o", str(tmp_path / "out.json")])
    assert r.exit_code == 0, r.output
    assert [row["input"] for row in json.loads((tmp_path / "out.json").read_text())] == [str(tmp_path / "ok.png")]
    assert sum(line.startswith("skipped: ") for line in r.stderr.splitlines()) == len(cases)
    assert_clean_error(invoke("predict", tiny_run, tmp_path / "ok.png"),
                       "takes array inputs of shape (1, 4, 4), not images")
    assert_clean_error(invoke("predict", mnist_run, tmp_path / "empty.png", "--skip-bad"), "no input could be read")


def test_csv_rows_by_column_name(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=120), rng.normal(size=120)
    kind = np.where(a + b > 0, "up", "down")
    (tmp_path / "t.csv").write_text("a,b,kind\n" + "".join(f"{u},{v},{k}\n" for u, v, k in zip(a, b, kind)))
    run = train_run(tmp_path, "name: tab\ndata: {dataset: csv, path: t.csv, label_column: kind, batch_size: 16}\n"
                              "model: {type: classifier, layers: [{type: dense, units: 2}]}\n"
                              "optimizer: {type: adam, lr: 0.05}\ntrain: {epochs: 5}\n", "tab")
    (tmp_path / "q.csv").write_text("b,a\n2,2\n-2,-2\n")  # columns in another order, no label column
    r = runner.invoke(app, ["predict", str(run), str(tmp_path / "q.csv"), "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert [ln.split(",")[:2] for ln in r.stdout.splitlines()[1:]] == [[f"{tmp_path / 'q.csv'}:2", "up"],
                                                                       [f"{tmp_path / 'q.csv'}:3", "down"]]
    r = runner.invoke(app, ["predict", str(run), "-", "--format", "csv"], input="a,b,kind\n-3,-1,up\n")
    assert r.exit_code == 0 and r.stdout.splitlines()[1].split(",")[:2] == ["-:2", "down"], r.output
    (tmp_path / "bad.csv").write_text("a,c\n1,2\n")
    assert_clean_error(invoke("predict", run, tmp_path / "bad.csv"),
                       f"{tmp_path / 'bad.csv'}: missing column(s) b; unknown column(s) c (the model takes a, b)")
    (tmp_path / "text.csv").write_text("a,b\n1,x\n")
    assert_clean_error(invoke("predict", run, tmp_path / "text.csv"), f"{tmp_path / 'text.csv'}:2: column 'b' has 'x'")


def test_the_readme_inputs_are_real_digits(mnist_run):
    """examples/ (the README's inputs): ten test digits, a dark-on-light scan of a 7, a batch of four."""
    ex = Path(__file__).resolve().parent.parent / "examples"
    r = runner.invoke(app, ["predict", str(mnist_run), str(ex / "scan.png"), str(ex / "digits"), str(ex / "batch.npy"),
                            "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "1 image(s) read as dark-on-light, 10 image(s) read as light-on-dark" in r.stderr, r.stderr
    rows = json.loads(r.stdout)
    assert [row["input"].rsplit("/", 1)[-1] for row in rows] == \
        ["scan.png", *(f"{k}.png" for k in range(10)), *(f"batch.npy[{i}]" for i in range(4))]
    got = {row["input"].rsplit("/", 1)[-1]: row["class"] for row in rows}
    # test images 0-3 (a 7, a 2, a 1, a 0) as arrays, as PNG files and (the 7) as an inverted, enlarged scan
    assert [got["batch.npy[0]"], got["batch.npy[1]"], got["batch.npy[2]"], got["batch.npy[3]"]] == \
        [got["7.png"], got["2.png"], got["1.png"], got["0.png"]] == [got["scan.png"], "2", "1", "0"]
