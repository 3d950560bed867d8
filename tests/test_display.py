"""What the CLI shows while it trains and fetches: laid out for 40-200 columns, nothing cut; the run
directory first and the next commands last; a download of unknown size on a terminal."""
import functools
import http.server
import io
import re
import threading

import numpy as np
import pytest
from rich.console import Console
from tinyrun import invoke

from netcli import cli
from netcli.app.next_steps import next_commands
from netcli.config import config_from_dict
from netcli.display import RichReporter, TrainingView, pack
from netcli.data.mnist import MNIST
from netcli.train import build_experiment, train
from test_data_download import QuietHandler, data_home, mirrors  # noqa: F401  (fixtures)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor")


def screen_lines(console: Console) -> list[str]:
    """What a terminal shows line by line, control codes removed (a live view's frames included)."""
    return [line for line in re.split(r"[\r\n]+", ANSI.sub("", console.file.getvalue())) if line.strip()]


def mnist_like_view() -> TrainingView:
    """The view of configs/mnist_cnn.yaml-sized training, halfway through epoch 2 of 10."""
    v = TrainingView()
    v.epoch, v.epochs, v.batch, v.batches, v.step, v.total_steps = 2, 10, 412, 844, 1256, 8440
    v.means = {"loss": 0.41764, "accuracy": 0.87121}
    v.monitor, v.monitored, v.best = "val_accuracy", 0.98712, 0.98803
    v.lr, v.rate, v.epoch_left, v.run_left, v.elapsed = 9.5e-4, 3210.4, 12.2, 220.0, 61.0
    return v


def render(view, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(view)
    return console.file.getvalue().rstrip("\n").split("\n")


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_the_training_view_fits_every_width_with_its_essential_fields(width):
    lines = render(mnist_like_view(), width)
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines), lines
    assert "…" not in text and "..." not in text
    for field in ("epoch 2/10", "412/844", "0:12", "3:40", "loss 0.4176", "val_accuracy 0.9871 (best 0.9880)"):
        assert field in text, (field, lines)
    assert "━" in lines[0]  # the bar
    if width >= 60:
        assert "ETA 0:12 · run 3:40" in lines[0]
    if width == 80:  # two lines: the progress, then the metrics with what else fits
        assert len(lines) == 2 and lines[0].startswith("epoch 2/10 ━") and lines[0].endswith("ETA 0:12 · run 3:40")
        assert lines[1].startswith("loss 0.4176  val_accuracy 0.9871 (best 0.9880)  train_accuracy 0.8712")
    if width >= 120:
        assert len(lines) == 1
    if width == 200:  # room for everything
        for field in ("train_accuracy 0.8712", "lr 9.50e-04", "3,210 samples/s", "step 1,256/8,440", "elapsed 1:01"):
            assert field in text, field


def test_before_the_first_validation_the_monitored_metric_shows_as_unknown():
    v = mnist_like_view()
    v.monitored = v.best = v.epoch_left = v.run_left = None
    (first, second) = render(v, 80)
    assert "ETA -:-- · run -:--" in first and second.startswith("loss 0.4176  val_accuracy -  ")


def test_pack_keeps_fields_whole_and_drops_only_optional_ones():
    assert pack(["aaaa 1", "bbbb 2"], ["c 3", "dddddd 4"], 19) == ["aaaa 1  bbbb 2  c 3"]
    assert pack(["aaaa 1", "bbbb 2"], ["c 3"], 10, indent="  ") == ["aaaa 1", "  bbbb 2"]
    assert pack(["aaaa 1"], ["c 3", "d 4"], 21, first="x" * 8) == ["xxxxxxxx  aaaa 1  c 3"]


@pytest.mark.parametrize("width", [80, 120])
def test_a_real_run_on_a_terminal_reads_at_its_width(tiny, width, monkeypatch):
    """Train for real with the CLI's reporter on a fixed-width terminal: every line the terminal shows fits,
    the run directory comes first, each epoch has its line with all its metrics."""
    from netcli.config import load_config

    console = terminal(width)
    monkeypatch.chdir(tiny)
    cfg = load_config(tiny / "tiny.yaml", ["train.epochs=3"])
    with RichReporter(console, plain=False) as reporter:
        result = train(cfg, "runs", base_dir=tiny, reporter=reporter)
    lines = screen_lines(console)
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    assert "…" not in "".join(lines)
    assert lines[0] == f"run: {result.run_dir}"
    for k in (1, 2, 3):
        epoch_line = next(i for i, line in enumerate(lines) if line.startswith(f"epoch {k}/3  val_accuracy "))
        record = " ".join(lines[epoch_line:epoch_line + 2])
        for name in ("train_loss", "train_accuracy", "val_loss", "samples/s"):
            assert name in record, (name, record)
    frames = [line for line in lines if line.startswith("epoch 3/3 ━")]
    assert frames and "5/5  ETA 0:00 · run 0:00" in frames[-1], frames  # the bar's last frame: nothing left


def test_quiet_lines_stay_plain(tiny):
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("run: ") and lines[1].startswith("epoch 1: train_loss ")
    assert "━" not in r.output and "\x1b" not in r.output


def test_train_names_the_run_first_and_ends_with_the_next_commands(tiny):
    r = invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    (run,) = (tiny / "runs" / "tiny").iterdir()
    lines = r.stdout.splitlines()
    assert lines[0] == f"run: {run}"
    nxt = lines.index("next:")
    assert lines[nxt - 1].startswith(f"finished: {run}")
    assert [line.strip() for line in lines[nxt + 1:]] == [
        f"netcli eval {run}", f"netcli predict {run} INPUT.npy", f"netcli export {run} --format safetensors"]
    for command in lines[nxt + 1:nxt + 2] + lines[nxt + 3:]:  # the ones that run as printed do
        r = invoke(*command.split()[1:])
        assert r.exit_code == 0, (command, r.output)


# -- the next commands follow the model's capabilities and the data's splits ---------------------------
def data(tmp_path, n=40, features=16, test=True):
    rng = np.random.default_rng(0)
    x = rng.random((n, features)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=x, y=(x[:, 0] > 0.5).astype(np.int64))
    np.savez(tmp_path / "test.npz", x=x[:8], y=(x[:8, 0] > 0.5).astype(np.int64))
    return {"dataset": "npz", "path": str(tmp_path / "train.npz"), "batch_size": 8, "val_fraction": 0.25,
            **({"test_path": str(tmp_path / "test.npz")} if test else {})}


MODELS = {
    "classifier": {"type": "classifier", "layers": [{"type": "dense", "units": 2}]},
    "regressor": {"type": "regressor", "layers": [{"type": "dense", "units": 1}]},
    "autoencoder": {"type": "autoencoder", "encoder": [{"type": "dense", "units": 4}],
                    "decoder": [{"type": "dense", "units": 16}]},
    "vae": {"type": "vae", "latent_dim": 2, "encoder": [{"type": "dense", "units": 4}],
            "decoder": [{"type": "dense", "units": 16}]},
}


@pytest.mark.parametrize("kind, test, expected", [
    ("classifier", True, ["eval R", "predict R INPUT.npy", "export R --format safetensors"]),
    ("regressor", False, ["eval R --split val", "predict R INPUT.npy", "export R --format safetensors"]),
    ("autoencoder", True, ["eval R", "sample R", "export R --format safetensors"]),
    ("vae", True, ["eval R", "sample R", "export R --format safetensors"]),
])
def test_next_commands_are_those_the_model_can_do(tmp_path, kind, test, expected):
    d = data(tmp_path, test=test)
    if kind == "regressor":
        np.savez(tmp_path / "train.npz", x=np.random.default_rng(0).random((40, 16), np.float32),
                 y=np.zeros((40, 1), np.float32))
    cfg = config_from_dict({"name": kind, "data": d, "model": MODELS[kind], "optimizer": "adam"}, "x.yaml")
    got = next_commands(tmp_path / "R", build_experiment(cfg))
    assert [c.replace(f"{tmp_path / 'R'}", "R").removeprefix("netcli ") for c in got] == expected


# -- a download of unknown size on a terminal, and the result as a table ----------------------------------
def test_data_fetch_on_a_terminal_with_no_content_length_shows_bytes_and_prints_a_table(
        mirrors, data_home, monkeypatch):
    """The byte column crashed (None total) when a server sent no Content-Length, as pip's wheel step does."""
    class NoLength(QuietHandler):  # HTTP/1.0: the body ends when the connection closes
        def send_header(self, keyword, value):
            if keyword.lower() != "content-length":
                super().send_header(keyword, value)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        NoLength, directory=str(data_home.parent / "good")))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        monkeypatch.setattr(MNIST, "MIRRORS", [f"http://127.0.0.1:{server.server_address[1]}/"])
        monkeypatch.setattr(MNIST, "MD5", mirrors["md5"])
        err = terminal(80)
        monkeypatch.setattr(cli, "err", err)
        r = invoke("data", "fetch", "mnist")
    finally:
        server.shutdown()
        server.server_close()
    assert r.exit_code == 0, (r.output, r.exception)
    shown = ANSI.sub("", err.file.getvalue())
    assert "train-images-idx3-ubyte.gz" in shown and "/? " in shown  # bytes so far of an unknown total
    assert "{" not in r.stdout  # a table, not a dict
    assert "…" not in r.stdout, r.stdout
    rows, key = {}, None
    for line in r.stdout.splitlines():  # rows of a two-column table; a long value goes on in the next rows
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 2:
            key = cells[0] or key
            rows[key] = rows.get(key, "") + cells[1] if not cells[0] else cells[1]
    assert rows["name"] == "mnist" and rows["source"] == "mirrors" and len(rows["sha256"]) == 64
    assert rows["path"] == str(data_home / "mnist.npz") and rows["size"].endswith("KiB")


def test_train_shows_the_fetch_of_its_data(mirrors, data_home, monkeypatch, tmp_path):
    """Training on MNIST with an empty cache says what it fetches (it was silent) before naming its run."""
    monkeypatch.setattr(MNIST, "MIRRORS", [mirrors["good"]])
    monkeypatch.setattr(MNIST, "MD5", mirrors["md5"])
    (tmp_path / "m.yaml").write_text("name: m\ndata: {dataset: mnist, flatten: true, batch_size: 10}\n"
                                     "model: {type: classifier, layers: [{type: dense, units: 10}]}\n"
                                     "optimizer: adam\ntrain: {epochs: 1}\n")
    err = terminal(80)
    monkeypatch.setattr(cli, "err", err)
    r = invoke("train", tmp_path / "m.yaml", "--runs-dir", tmp_path / "runs", "--quiet")
    assert r.exit_code == 0, r.output
    shown = ANSI.sub("", err.file.getvalue())
    for name in mirrors["files"]:
        assert name in shown, name
    assert r.stdout.startswith("run: ")


def test_the_etas_count_the_steps_left_and_the_validations(monkeypatch):
    """Time a step and an epoch's end, then check the ETAs: the run's is the epoch's plus the later epochs."""
    import netcli.display as display
    from netcli.train import TrainState

    clock = [100.0]
    monkeypatch.setattr(display.time, "time", lambda: clock[0])
    r = RichReporter(Console(file=io.StringIO()), plain=True)
    r.start("runs/x", 0, 3 * 10, "val_loss")
    state = TrainState()
    for epoch in range(2):
        r.epoch_start(epoch, 3, 10, 0)
        for b in range(10):
            clock[0] += 0.5  # a step takes 0.5 s
            state.step, state.batch, state.seen, state.sums = state.step + 1, b + 1, 8 * (b + 1), {"loss": 1.0}
            r.step(state, {"loss": 1.0}, 0.1)
        if epoch == 0:
            assert r.view.epoch_left == 0 and r.view.run_left == pytest.approx(20 * 0.5)
            clock[0] += 2.0  # validation takes 2 s
            r.epoch_end(epoch, {"val_loss": 0.5})
            state.batch = 0
    r.epoch_start(2, 3, 10, 0)  # the last epoch: 10 steps and its validation left
    assert r.view.epoch_left == pytest.approx(10 * 0.5 + 2) and r.view.run_left == pytest.approx(10 * 0.5 + 2)
    r.view.total_steps = 25  # train.max_steps ends the run halfway through the epoch
    r.etas()
    assert r.view.epoch_left == pytest.approx(5 * 0.5 + 2) == r.view.run_left
