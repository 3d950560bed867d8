"""`netcli train --resume` continues a run exactly; --allow-config-change and --init-from.

A run interrupted at any step (here by a SIGINT raised from the progress
callback, as Ctrl-C would) and resumed ends bit for bit where the same run
trained straight through ends: parameters, optimizer moments, both random
generators (the model has dropout, so the model generator matters), data
order, schedule position and the metrics written to metrics.jsonl.

`train.max_steps` is part of the config: it is the run's length, over which the
LR schedule is laid out. Raising it on resume is a config change
(--allow-config-change, recorded in the run); with a schedule that does not
depend on the length the continued run still equals one trained straight.
"""
import json
import signal

import numpy as np
import pytest
import yaml
from tinyrun import invoke, write_tiny_data

from netcli.cli import RichReporter
from netcli.runs import load_checkpoint
from netcli.train import Trainer, model_arrays

CONFIG = """\
name: mlp
seed: 5
data: {dataset: npz, path: train.npz, test_path: test.npz, batch_size: 8, val_fraction: 0.2}
model:
  type: classifier
  layers:
    - flatten
    - {type: dense, units: 8}
    - relu
    - {type: dropout, rate: 0.3}
    - {type: batchnorm}
    - {type: dense, units: 2}
optimizer: {type: adam, lr: 0.01, weight_decay: 0.001}
schedule: {type: cosine, warmup_steps: 3}
train: {epochs: 3, log_every: 1}
"""
STEPS_PER_EPOCH = 5  # 38 training samples in batches of 8
TOTAL = 3 * STEPS_PER_EPOCH


@pytest.fixture
def tiny(tmp_path):
    write_tiny_data(tmp_path)
    (tmp_path / "mlp.yaml").write_text(CONFIG)
    return tmp_path


def train(tiny, *args, runs="runs"):
    return invoke("train", *args, "--runs-dir", tiny / runs, "--quiet")


def only_run(root):
    (run,) = [d for d in (root / "mlp").iterdir()]
    return run


@pytest.fixture
def interrupt_at(monkeypatch):
    """interrupt_at(k): the next training run gets a SIGINT right after its optimizer step k."""
    at = {"step": None}
    step = RichReporter.step

    def step_then_signal(self, state, metrics, lr):
        step(self, state, metrics, lr)
        if state.step == at["step"]:
            at["step"] = None
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(RichReporter, "step", step_then_signal)
    return lambda k: at.update(step=k)


def records(run):
    """metrics.jsonl without the wall-clock times."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def assert_same_checkpoint(a, b):
    arrays_a, meta_a = load_checkpoint(a)
    arrays_b, meta_b = load_checkpoint(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    assert any(k.startswith("optim/main/m.") for k in arrays_a)  # Adam's moments are in there
    for k in arrays_a:
        assert arrays_a[k].dtype == arrays_b[k].dtype and np.array_equal(arrays_a[k], arrays_b[k]), k
    for key in ("state", "model_rng", "data_rng", "config"):
        assert meta_a[key] == meta_b[key], key


@pytest.fixture
def straight(tiny):
    r = train(tiny, tiny / "mlp.yaml", runs="straight")
    assert r.exit_code == 0, r.output
    return only_run(tiny / "straight")


@pytest.mark.parametrize("k", [2, STEPS_PER_EPOCH, STEPS_PER_EPOCH + 3],
                         ids=["first-epoch", "last-batch-of-an-epoch", "mid-epoch"])
def test_interrupted_and_resumed_equals_straight_through(tiny, straight, interrupt_at, k):
    interrupt_at(k)
    r = train(tiny, tiny / "mlp.yaml")
    run = only_run(tiny / "runs")
    assert r.exit_code == 130, r.output
    assert f"checkpoint written at step {k}" in r.output
    assert f"netcli train --resume {run}" in r.output
    assert load_checkpoint(run / "checkpoints" / "last.npz")[1]["state"]["step"] == k
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"

    r = invoke("train", "--resume", run, "--quiet")
    assert r.exit_code == 0, r.output
    assert f"resuming {run} at step {k}" in r.output

    assert_same_checkpoint(straight / "checkpoints" / "last.npz", run / "checkpoints" / "last.npz")
    assert_same_checkpoint(straight / "checkpoints" / "best.npz", run / "checkpoints" / "best.npz")
    assert records(straight) == records(run)
    assert [r["step"] for r in records(run) if r["split"] == "train" and r["name"] == "loss"] == \
        list(range(1, TOTAL + 1))
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (straight, run))
    assert summary_b["status"] == "finished" and summary_b["steps"] == TOTAL
    assert summary_a["metrics"] == summary_b["metrics"] and summary_a["best"] == summary_b["best"]


def test_resuming_twice_and_resuming_a_finished_run(tiny, straight, interrupt_at):
    interrupt_at(4)
    train(tiny, tiny / "mlp.yaml")
    run = only_run(tiny / "runs")
    interrupt_at(9)
    assert invoke("train", "--resume", run, "--quiet").exit_code == 130
    assert invoke("train", "--resume", run, "--quiet").exit_code == 0
    assert_same_checkpoint(straight / "checkpoints" / "last.npz", run / "checkpoints" / "last.npz")
    assert records(straight) == records(run)
    # a finished run resumes to where it is: nothing more is trained or logged, its summary stays
    summary = (run / "summary.json").read_text()
    r = invoke("train", "--resume", run, "--quiet")
    assert r.exit_code == 0 and "nothing left to train (finished at step 15)" in r.output
    assert_same_checkpoint(straight / "checkpoints" / "last.npz", run / "checkpoints" / "last.npz")
    assert records(straight) == records(run)
    assert (run / "summary.json").read_text() == summary


def test_resume_with_the_same_config_file_is_no_change(tiny, straight, interrupt_at):
    interrupt_at(7)
    train(tiny, tiny / "mlp.yaml")
    run = only_run(tiny / "runs")
    r = invoke("train", tiny / "mlp.yaml", "--resume", run, "--quiet")
    assert r.exit_code == 0, r.output
    assert not (run / "config_changes.log").exists()
    assert_same_checkpoint(straight / "checkpoints" / "last.npz", run / "checkpoints" / "last.npz")


def test_max_steps_run_stops_and_resumes_without_an_extra_step(tiny):
    r = train(tiny, tiny / "mlp.yaml", "--set", "train.max_steps=7")
    run = only_run(tiny / "runs")
    assert r.exit_code == 0 and "max_steps: " in r.output, r.output
    assert load_checkpoint(run / "checkpoints" / "last.npz")[1]["state"]["step"] == 7
    before = records(run)
    r = invoke("train", "--resume", run, "--quiet")
    assert r.exit_code == 0 and "nothing left to train (max_steps at step 7)" in r.output, r.output
    assert load_checkpoint(run / "checkpoints" / "last.npz")[1]["state"]["step"] == 7
    assert records(run) == before


def test_max_steps_at_an_epoch_end_still_finishes_that_epoch(tiny):
    r = train(tiny, tiny / "mlp.yaml", "--set", f"train.max_steps={2 * STEPS_PER_EPOCH}")
    assert r.exit_code == 0, r.output
    run = only_run(tiny / "runs")
    val = [r for r in records(run) if r["split"] == "val"]
    assert [r["epoch"] for r in val if r["name"] == "val_loss"] == [0, 1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and "train_loss" in summary["metrics"]


def test_raising_max_steps_on_resume_continues_the_same_training(tiny):
    const = ("--set", "schedule.type=constant", "--set", "schedule.warmup_steps=0")
    assert train(tiny, tiny / "mlp.yaml", *const, runs="straight").exit_code == 0
    assert train(tiny, tiny / "mlp.yaml", *const, "--set", "train.max_steps=7").exit_code == 0
    run = only_run(tiny / "runs")
    r = invoke("train", tiny / "mlp.yaml", "--resume", run, *const, "--allow-config-change", "--quiet")
    assert r.exit_code == 0, r.output
    assert "train.max_steps: 7 -> None" in (run / "config_changes.log").read_text()
    a, meta_a = load_checkpoint(only_run(tiny / "straight") / "checkpoints" / "last.npz")
    b, meta_b = load_checkpoint(run / "checkpoints" / "last.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()
    assert meta_a["model_rng"] == meta_b["model_rng"] and meta_b["state"]["step"] == TOTAL


def test_changed_config_is_refused_unless_allowed_and_then_recorded(tiny, interrupt_at):
    interrupt_at(6)
    train(tiny, tiny / "mlp.yaml")
    run = only_run(tiny / "runs")
    before = (run / "config.yaml").read_text()

    r = invoke("train", tiny / "mlp.yaml", "--resume", run, "--set", "optimizer.lr=0.02", "--quiet")
    assert r.exit_code == 2
    assert "optimizer.lr: 0.01 -> 0.02" in r.output and "--allow-config-change" in r.output
    assert "Traceback" not in r.output
    assert (run / "config.yaml").read_text() == before
    assert not (run / "config_changes.log").exists()

    r = invoke("train", tiny / "mlp.yaml", "--resume", run, "--set", "optimizer.lr=0.02",
               "--set", "train.epochs=4", "--allow-config-change", "--quiet")
    assert r.exit_code == 0, r.output
    log = (run / "config_changes.log").read_text()
    assert "optimizer.lr: 0.01 -> 0.02" in log and "train.epochs: 3 -> 4" in log
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == 0.02 and saved["train"]["epochs"] == 4
    _, meta = load_checkpoint(run / "checkpoints" / "last.npz")
    assert meta["config"]["optimizer"]["lr"] == 0.02 and meta["state"]["step"] == 4 * STEPS_PER_EPOCH
    # the changed run now resumes as it is, without the flag
    assert invoke("train", "--resume", run, "--quiet").exit_code == 0


def test_a_changed_architecture_is_a_clean_error_even_when_allowed(tiny, interrupt_at):
    interrupt_at(3)
    train(tiny, tiny / "mlp.yaml")
    run = only_run(tiny / "runs")
    r = invoke("train", tiny / "mlp.yaml", "--resume", run, "--set", "model.layers.1.units=9",
               "--allow-config-change", "--quiet")
    assert r.exit_code == 2, r.output
    assert "does not fit this model" in r.output and "net.1.W" in r.output


def test_init_from_starts_a_new_run_from_another_runs_weights(tiny, straight, monkeypatch):
    started_with = {}
    run_ = Trainer.run

    def run_and_record(self, state):
        started_with.update({k: v.copy() for k, v in model_arrays(self.exp.model).items()})
        return run_(self, state)

    monkeypatch.setattr(Trainer, "run", run_and_record)
    r = train(tiny, tiny / "mlp.yaml", "--init-from", straight, "--set", "train.epochs=1")
    assert r.exit_code == 0, r.output
    assert f"initialised from {straight}" in r.output
    run = only_run(tiny / "runs")
    best, _ = load_checkpoint(straight / "checkpoints" / "best.npz")
    assert started_with.keys() == {k for k in best if not k.startswith("optim/")}
    for k, v in started_with.items():
        assert np.array_equal(v, best[k]), k
    arrays, meta = load_checkpoint(run / "checkpoints" / "last.npz")
    assert meta["state"]["step"] == STEPS_PER_EPOCH  # a new run: steps and optimizer state start afresh
    assert int(arrays["optim/main/step"]) == STEPS_PER_EPOCH


def test_init_from_with_resume_is_an_error(tiny, straight):
    r = invoke("train", tiny / "mlp.yaml", "--resume", straight, "--init-from", straight)
    assert r.exit_code == 2
    assert "--resume and --init-from cannot be combined" in r.output and "Traceback" not in r.output


def test_init_from_a_different_model_is_a_clean_error(tiny, straight):
    r = train(tiny, tiny / "mlp.yaml", "--init-from", straight, "--set", "model.layers.1.units=3")
    assert r.exit_code == 2
    assert "does not fit this model" in r.output and "Traceback" not in r.output
    assert not (tiny / "runs").exists() or not list((tiny / "runs").rglob("*.npz"))


def test_resume_needs_a_run_with_a_checkpoint(tiny):
    r = invoke("train", "--resume", tiny / "nowhere")
    assert r.exit_code == 2 and "no such run directory" in r.output
    r = invoke("train")
    assert r.exit_code == 2 and "--resume" in r.output


def test_set_on_resume_without_a_config_file_changes_the_runs_own_config(tiny):
    """`--resume RUN --set ...` applies the overrides to the run's config.yaml (they used to be dropped)."""
    assert train(tiny, tiny / "mlp.yaml").exit_code == 0
    run = only_run(tiny / "runs")
    before = (run / "config.yaml").read_text()
    r = invoke("train", "--resume", run, "--set", "train.epochs=4", "--quiet")
    assert r.exit_code == 2 and "train.epochs: 3 -> 4" in r.output and "--allow-config-change" in r.output
    assert (run / "config.yaml").read_text() == before
    r = invoke("train", "--resume", run, "--set", "train.epochs=4", "--allow-config-change", "--quiet")
    assert r.exit_code == 0 and any(line.startswith(f"finished: {run}") for line in r.output.splitlines()), r.output
    assert "train.epochs: 3 -> 4" in (run / "config_changes.log").read_text()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 4
    # the finished run went on: a fourth epoch was trained and validated
    assert load_checkpoint(run / "checkpoints" / "last.npz")[1]["state"]["step"] == 4 * STEPS_PER_EPOCH
    assert [r["epoch"] for r in records(run) if r["name"] == "val_loss"] == [0, 1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 4
    # a bad override is reported at --set, with the run's config file untouched
    r = invoke("train", "--resume", run, "--set", "train.epochs=0", "--allow-config-change", "--quiet")
    assert r.exit_code == 2 and "train.epochs" in r.output and "Traceback" not in r.output
