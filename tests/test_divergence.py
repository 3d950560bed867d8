"""The divergence guard: a non-finite loss or gradient stops the run (exit 3) naming the step,
what went non-finite and the layer nearest the output whose gradient did; the last good
checkpoint stays loadable. With `train.nan_policy: skip` such batches are skipped, up to
`train.max_skips`.

NaNs are injected by wrapping Dense.backward: after the real backward, the chosen dense
layer's weight gradient (or the input gradient it returns) gets a NaN at chosen steps.
"""
import json

import numpy as np
import pytest
from tinyrun import runner, write_tiny_data

from netcli.cli import app
from netcli.layers.dense import Dense
from netcli.optim import Optimizer
from netcli.runs import load_checkpoint

CONFIG = """\
name: nan
seed: 2
data: {dataset: npz, path: train.npz, batch_size: 8, val_fraction: 0.2}
model:
  type: classifier
  layers:
    - flatten
    - {type: dense, units: 8}
    - relu
    - {type: batchnorm}
    - {type: dense, units: 2}
optimizer: {type: sgd, lr: 0.1}
train: {epochs: 3, checkpoint_every: 2}
"""


@pytest.fixture
def tiny(tmp_path):
    write_tiny_data(tmp_path)  # the config reads train.npz only
    (tmp_path / "nan.yaml").write_text(CONFIG)
    return tmp_path


def train(tiny, *sets):
    args = ["train", str(tiny / "nan.yaml"), "--runs-dir", str(tiny / "runs"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    return runner.invoke(app, args)


def only_run(tiny):
    (run,) = (tiny / "runs" / "nan").iterdir()
    return run


@pytest.fixture
def nan_at(monkeypatch):
    """nan_at(units, steps, where): a NaN in that dense layer's W gradient ("grad") or returned dx ("dx")."""

    def inject(units, steps, where="grad"):
        calls = {"n": 0}
        backward = Dense.backward

        def poisoned(self, dy):
            dx = backward(self, dy)
            if self.config.units == units:
                calls["n"] += 1  # one backward per training step
                if calls["n"] in steps:
                    if where == "grad":
                        self.grads["W"][0, 0] = np.nan
                    else:
                        dx = dx.copy()
                        dx[0, 0] = np.nan
            return dx

        monkeypatch.setattr(Dense, "backward", poisoned)

    return inject


def test_a_nan_gradient_stops_the_run_naming_step_and_layer(tiny, nan_at):
    nan_at(units=8, steps={5})
    r = train(tiny)
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    run = only_run(tiny)
    last = run / "checkpoints" / "last.npz"
    message = r.output.replace("\n", " ")
    assert "error: step 5: gradient of net.1.W (dense layer) is not finite (loss " in message
    assert f"training stopped, last good checkpoint: {last}" in message
    arrays, meta = load_checkpoint(last)
    assert meta["state"]["step"] == 4  # checkpoint_every 2: the last one before step 5
    assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("param/"))
    assert runner.invoke(app, ["eval", str(run), "--split", "val"]).exit_code == 0  # the good checkpoint loads


def test_the_layer_named_is_the_one_nearest_the_output(tiny, nan_at):
    # a NaN in the input gradient the last dense returns reaches every layer below it:
    # the batchnorm just below is where it shows first
    nan_at(units=2, steps={3}, where="dx")
    r = train(tiny)
    assert r.exit_code == 3
    assert "step 3: gradient of net.3." in r.output and "(batchnorm layer)" in r.output


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the guard's message, not numpy's warnings
def test_a_non_finite_loss_names_the_loss(tiny):
    r = train(tiny, "optimizer.lr=1e30")  # the first update blows the weights up; the next loss overflows
    assert r.exit_code == 3, r.output
    assert "error: step 2: loss is " in r.output and "Traceback" not in r.output
    assert not (only_run(tiny) / "checkpoints" / "last.npz").exists()
    assert "no checkpoint had been written yet" in r.output


def test_weights_that_overflow_are_never_checkpointed(tiny, monkeypatch):
    step = Optimizer.step

    def overflowing(self, lr):  # the update at step 3 overflows one weight
        step(self, lr)
        if self.t == 3:
            self.group.named()[0][1].flat[0] = np.inf

    monkeypatch.setattr(Optimizer, "step", overflowing)
    r = train(tiny, "train.checkpoint_every=1")
    assert r.exit_code == 3, r.output
    last = only_run(tiny) / "checkpoints" / "last.npz"
    assert f"error: step 3: parameter net.1.W is not finite after the update; training stopped, last good " \
           f"checkpoint: {last}" in r.output.replace("\n", " ")
    assert load_checkpoint(last)[1]["state"]["step"] == 2


def test_nan_policy_skip_skips_bad_batches(tiny, nan_at):
    nan_at(units=8, steps={3, 7})
    r = train(tiny, "train.nan_policy=skip", "train.max_skips=2")
    assert r.exit_code == 0, r.output
    assert "step 3: skipped a batch (gradient of net.1.W (dense layer) is not finite" in r.output
    assert "1 of at most 2 skipped" in r.output and "2 of at most 2 skipped" in r.output
    run = only_run(tiny)
    arrays, meta = load_checkpoint(run / "checkpoints" / "last.npz")
    assert meta["state"]["skipped"] == 2
    assert meta["state"]["step"] == 15 - 2  # skipped batches take no optimizer step
    assert all(np.isfinite(v).all() for v in arrays.values() if v.dtype.kind == "f")
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_nan_policy_skip_gives_up_after_max_skips(tiny, nan_at):
    nan_at(units=8, steps={3, 4, 5})
    r = train(tiny, "train.nan_policy=skip", "train.max_skips=2")
    assert r.exit_code == 3, r.output
    assert "step 3: gradient of net.1.W (dense layer) is not finite" in r.output.replace("\n", " ")
    assert "training stopped after 2 skipped batches" in r.output.replace("\n", " ")
    # batches 3 and 4 were skipped, so the third bad batch comes at optimizer step 3
    _, meta = load_checkpoint(only_run(tiny) / "checkpoints" / "last.npz")
    assert meta["state"]["step"] == 2


def test_a_skipped_batch_leaves_no_trace_in_batchnorm_statistics(tiny, monkeypatch):
    """The NaN shows in the forward, which has already folded the batch into the running statistics;
    a skip must undo that, or every later val_loss is NaN and no checkpoint loads."""
    forward, calls, seen = Dense.forward, {"n": 0}, {}

    def poisoned(self, x, training):
        y = forward(self, x, training)
        if self.config.units == 8 and training:
            calls["n"] += 1
            if calls["n"] == 3:
                y = y.copy()
                y[0, 0] = np.nan  # reaches the batchnorm's statistics, then the loss
        return y

    monkeypatch.setattr(Dense, "forward", poisoned)
    r = train(tiny, "train.nan_policy=skip")
    assert r.exit_code == 0 and "step 3: skipped a batch (loss is nan" in r.output, r.output
    run = only_run(tiny)
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val_loss = [rec["value"] for rec in val if rec["name"] == "val_loss"]
    assert len(val_loss) == 3 and np.isfinite(val_loss).all(), val_loss
    for name in ("last", "best"):
        arrays, _ = load_checkpoint(run / "checkpoints" / f"{name}.npz")
        assert all(np.isfinite(v).all() for k, v in arrays.items() if k.startswith("buffer/")), name
    assert runner.invoke(app, ["eval", str(run), "--split", "val"]).exit_code == 0


def test_a_finite_loss_past_the_divergence_threshold_stops_with_exit_3(tiny):
    """Adam at lr 1e6 keeps the loss finite but huge; the threshold stops it before that update is applied."""
    r = train(tiny, "optimizer.type=adam", "optimizer.lr=1e6", "train.divergence_threshold=100")
    assert r.exit_code == 3, r.output
    message = r.output.replace("\n", " ")
    assert "exceeds train.divergence_threshold 100; training stopped, " in message and "Traceback" not in message
    step = int(message.split("error: step ")[1].split(":")[0])
    assert step > 1  # the first loss (~0.7) was under it
    run = only_run(tiny)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and "divergence_threshold" in summary["message"]
    assert train(tiny, "optimizer.type=adam", "optimizer.lr=1e6").exit_code == 0  # without it the run "finishes"
