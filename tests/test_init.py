"""netcli init: every model kind x data source it offers writes a config that validates and trains a few steps."""
import numpy as np
import pytest
import yaml

from netcli.init import KINDS, inspect, offered, write_config
from tinyrun import invoke


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """mnist, fashion_mnist and four small files: CSV regression, CSV text labels, npz images, npz sequences."""
    d = tmp_path_factory.mktemp("init-data")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    rows = ["area,rooms,age,price"] + [f"{a:.3f},{r:.3f},{g:.3f},{3 * a - r + 0.1 * g:.4f}" for a, r, g in x]
    (d / "houses.csv").write_text("\n".join(rows) + "\n")
    rows = ["f1,f2,kind"] + [f"{a:.3f},{b:.3f},{'big' if a + b > 0 else 'small'}" for a, b, _ in x]
    (d / "kinds.csv").write_text("\n".join(rows) + "\n")
    y = rng.integers(0, 3, 40)
    np.savez(d / "images.npz", images=rng.uniform(size=(40, 1, 8, 8)).astype(np.float32), labels=y)
    np.savez(d / "seqs.npz", x=rng.normal(size=(40, 6, 4)).astype(np.float32), y=y)
    return d, {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "houses": str(d / "houses.csv"),
               "kinds": str(d / "kinds.csv"), "images": str(d / "images.npz"), "seqs": str(d / "seqs.npz")}


TARGETS = {"houses": "price", "kinds": "kind"}


def _combinations():
    return [(kind, src) for src in ("mnist", "fashion_mnist", "houses", "kinds", "images", "seqs") for kind in KINDS]


def test_inspection_reads_shape_target_and_task(sources):
    d, src = sources
    houses = inspect(src["houses"], "price", d)
    assert (houses.shape, houses.task, houses.outputs) == ((3,), "regression", 1)
    kinds = inspect(src["kinds"], "kind", d)
    assert (kinds.shape, kinds.task, kinds.outputs) == ((2,), "classification", 2)
    images = inspect(src["images"], None, d)
    assert (images.shape, images.task, images.outputs, images.unit_range) == ((1, 8, 8), "classification", 3, True)
    assert images.section == {"dataset": "npz", "path": "images.npz", "x_key": "images", "y_key": "labels"}
    assert inspect(src["seqs"], None, d).shape == (6, 4)
    offers = {name: [k for k in KINDS if offered(k, inspect(src[name], TARGETS.get(name), d)) is None] for name in src}
    assert offers["mnist"] == list(KINDS) and offers["images"] == list(KINDS)
    assert offers["houses"] == ["mlp"] and offers["seqs"] == ["mlp", "cnn", "rnn", "lstm", "gru", "transformer"]


@pytest.mark.parametrize("kind,src", _combinations())
def test_every_offered_combination_validates_and_trains(sources, tmp_path, kind, src):
    d, paths = sources
    out = tmp_path / f"{src}_{kind}.yaml"
    why = offered(kind, inspect(paths[src], TARGETS.get(src), d))
    args = ["init", "--model", kind, "--data", paths[src], "-o", out] + (["--target", TARGETS[src]] if src in TARGETS else [])
    result = invoke(*args)
    if why:
        assert result.exit_code == 2 and "this data takes:" in result.output and not out.exists()
        return
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=") and text.count("  # ") >= 3  # commented
    schema = out.parent / text.splitlines()[0].split("$schema=")[1]
    assert schema.resolve().name == "netcli.schema.json" and schema.resolve().exists()
    assert invoke("validate", out).exit_code == 0
    limit = ["--set", "data.limit=48"] if src in ("mnist", "fashion_mnist") else []
    result = invoke("train", out, "-q", "--runs-dir", tmp_path / "runs", "--set", "train.max_steps=2",
                    "--set", "data.batch_size=8", *limit)
    assert result.exit_code == 0, result.output
    assert "max_steps" in result.output


def test_never_overwrites_without_force(tmp_path):
    out = tmp_path / "x.yaml"
    out.write_text("mine\n")
    result = invoke("init", "--model", "mlp", "--data", "mnist", "-o", out)
    assert result.exit_code == 2 and "pass --force" in result.output and out.read_text() == "mine\n"
    assert invoke("init", "--model", "mlp", "--data", "mnist", "-o", out, "--force").exit_code == 0
    assert yaml.safe_load(out.read_text())["data"] == {"dataset": "mnist", "flatten": True, "batch_size": 64,
                                                       "val_fraction": 0.1}


def test_missing_options_without_a_terminal_are_one_line_errors(sources, tmp_path):
    d, paths = sources
    result = invoke("init", "--data", "mnist", "-o", tmp_path / "a.yaml")
    assert result.exit_code == 2 and "give --model" in result.output
    result = invoke("init", "--model", "mlp", "--data", paths["houses"], "-o", tmp_path / "a.yaml")
    assert result.exit_code == 2 and "give --target" in result.output and "area, rooms, age, price" in result.output
    result = invoke("init", "--model", "cnnn", "--data", "mnist", "-o", tmp_path / "a.yaml")
    assert result.exit_code == 2 and "did you mean 'cnn'" in result.output


def test_asks_for_the_target_when_it_can(sources, tmp_path):
    d, paths = sources
    asked = []

    def ask(question, choices, default):
        asked.append((question, choices, default))
        return "price"

    out = write_config("mlp", paths["houses"], tmp_path / "h.yaml", ask=ask)
    assert asked == [("column to predict (area, rooms, age, price)", ["area", "rooms", "age", "price"], "price")]
    cfg = yaml.safe_load(out.read_text())
    assert cfg["data"]["label_column"] == "price" and cfg["model"]["type"] == "regressor"
