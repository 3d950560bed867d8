"""Crash safety: checkpoints every N steps, SIGINT/SIGTERM stops, SIGKILL at random moments.

What a crash may leave behind (and what it may not):
- a run killed before its first checkpoint was written has no checkpoints/last.npz;
  `--resume` on it is a clean error and the run has to be started again;
- otherwise checkpoints/last.npz is always a whole checkpoint that loads and resumes,
  because every checkpoint is written to a temporary file, fsynced and renamed over
  the old one;
- a SIGKILL during a write may leave that temporary `.last.npz.*.tmp` behind: nothing
  reads it, and `--resume` deletes it;
- lines that metrics.jsonl got after the checkpoint are cut on resume, so the resumed
  run's log equals that of a run that was never killed.
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from netcli.cli import app
from netcli.config import load_config
from netcli.runs import load_checkpoint, save_checkpoint
from netcli.train import build_experiment, restore

runner = CliRunner()

CONFIG = """\
name: crash
seed: 1
data: {dataset: npz, path: train.npz, batch_size: 8, val_fraction: 0.2}
model:
  type: classifier
  layers:
    - flatten
    - {type: dense, units: 8}
    - relu
    - {type: dropout, rate: 0.2}
    - {type: batchnorm}
    - {type: dense, units: 2}
optimizer: {type: adam, lr: 0.01}
schedule: {type: cosine}
train: {epochs: 60, log_every: 1, checkpoint_every: 1}
"""
STEPS = 60 * 5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 48)
    x = rng.normal(size=(48, 1, 4, 4)).astype(np.float32) + y[:, None, None, None]
    np.savez(d / "train.npz", x=x, y=y)
    (d / "crash.yaml").write_text(CONFIG)
    return d


@pytest.fixture(scope="module")
def straight(data):
    r = runner.invoke(app, ["train", str(data / "crash.yaml"), "--runs-dir", str(data / "straight"), "--quiet",
                            "--set", "train.checkpoint_every=1000"])  # the same training, written less often
    assert r.exit_code == 0, r.output
    (run,) = (data / "straight" / "crash").iterdir()
    return run


def records(run):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    arrays_a, meta_a = load_checkpoint(a / "checkpoints" / "last.npz")
    arrays_b, meta_b = load_checkpoint(b / "checkpoints" / "last.npz")
    assert arrays_a.keys() == arrays_b.keys()
    for k in arrays_a:
        assert np.array_equal(arrays_a[k], arrays_b[k]), k
    for key in ("state", "model_rng", "data_rng"):
        assert meta_a[key] == meta_b[key], key
    assert records(a) == records(b)


def new_runs(root, before):
    return sorted(set((root / "crash").iterdir()) - before) if (root / "crash").is_dir() else []


# -- checkpoint_every ---------------------------------------------------------------------------


def test_checkpoints_every_n_steps_and_every_epoch(data, monkeypatch):
    import netcli.train as T

    saved = []
    save = T.save_run_checkpoint
    monkeypatch.setattr(T, "save_run_checkpoint",
                        lambda path, exp, state, *a: (saved.append((path.name, state.step)), save(path, exp, state, *a)))
    r = runner.invoke(app, ["train", str(data / "crash.yaml"), "--runs-dir", str(data / "every"), "--quiet",
                            "--set", "train.epochs=2", "--set", "train.checkpoint_every=3"])
    assert r.exit_code == 0, r.output
    last = [step for name, step in saved if name == "last.npz"]
    # every 3 steps, at the end of each 5-step epoch, and once more when the run ends
    assert last == [3, 5, 6, 9, 10, 10]
    assert {step for name, step in saved if name == "best.npz"} <= {5, 10}
    (run,) = (data / "every" / "crash").iterdir()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.npz", "last.npz"]


# -- atomic writes ----------------------------------------------------------------------------


@pytest.mark.parametrize("crash", [OSError, KeyboardInterrupt])
def test_a_checkpoint_write_that_dies_halfway_keeps_the_previous_one(tmp_path, monkeypatch, crash):
    path = tmp_path / "last.npz"
    save_checkpoint(path, {"w": np.arange(3.0)}, {"step": 1})
    before = path.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise crash()

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(Exception if crash is OSError else KeyboardInterrupt):
        save_checkpoint(path, {"w": np.arange(4.0)}, {"step": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.npz"]  # the temporary file is gone
    arrays, meta = load_checkpoint(path)
    assert np.array_equal(arrays["w"], np.arange(3.0)) and meta["step"] == 1


# -- SIGINT / SIGTERM -----------------------------------------------------------------------------


def wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_at_the_next_step_and_says_how_to_resume(data, straight, tmp_path, sig):
    root = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", "from netcli.cli import main; main()", "train",
                             str(data / "crash.yaml"), "--runs-dir", str(root), "--quiet",
                             "--set", "train.checkpoint_every=5"],  # ~1 s of training: the signal comes well before
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(root.glob("crash/*/metrics.jsonl")))  # training has begun
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    (run,) = (root / "crash").iterdir()
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    step = load_checkpoint(run / "checkpoints" / "last.npz")[1]["state"]["step"]
    assert 0 < step < STEPS
    assert f"{sig.name}: checkpoint written at step {step}; continue with: netcli train --resume {run}" in output
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"

    r = runner.invoke(app, ["train", "--resume", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    assert_same_run(straight, run)


# -- SIGKILL at random moments --------------------------------------------------------------------


def _cli(args):
    sys.stdout = sys.stderr = open(os.devnull, "w")
    app(args, prog_name="netcli")


def test_sigkill_at_random_moments_always_leaves_a_checkpoint_that_resumes(data, straight, tmp_path):
    """Kill training 25 times at random moments (forked children, so no interpreter start-up per kill).

    Each kill is followed by a check of the checkpoint and a resume (killed again, mostly); a run that
    gets to its end is compared with the one never killed and a new run is started.
    """
    root, rng, kills, finished, run = tmp_path / "runs", np.random.default_rng(7), 0, 0, None
    exp = build_experiment(load_config(data / "crash.yaml"))
    fork = multiprocessing.get_context("fork")
    # kill times scale with how long a whole run takes on this machine now (a loaded machine
    # would otherwise kill every fresh run before its first checkpoint)
    t0, child = time.perf_counter(), fork.Process(target=_cli, args=(["train", str(data / "crash.yaml"), "--runs-dir",
                                                                       str(tmp_path / "timing"), "--quiet"],))
    child.start()
    child.join()
    assert child.exitcode == 0
    whole = time.perf_counter() - t0
    while kills < 25:
        before = set((root / "crash").iterdir()) if (root / "crash").is_dir() else set()
        args = ["train", "--resume", str(run)] if run else ["train", str(data / "crash.yaml")]
        child = fork.Process(target=_cli, args=(args + ["--runs-dir", str(root), "--quiet"],))
        child.start()
        child.join(rng.uniform(0.02, 1.0) * whole)  # a checkpoint takes ~10 ms (fsync), a step less
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            kills += 1
        run = run or (new_runs(root, before) or [None])[0]
        if child.exitcode == 0:  # it got to the end first
            assert_same_run(straight, run)
            finished, run = finished + 1, None
            continue
        assert child.exitcode == -signal.SIGKILL
        ckpt = run / "checkpoints" / "last.npz" if run else None
        if ckpt is None or not ckpt.exists():  # killed before the first checkpoint of a fresh run
            run = None
            continue
        arrays, meta = load_checkpoint(ckpt)  # whole, never half-written
        restore(ckpt, arrays, meta, exp, np.random.default_rng())  # and it fits the model
        strays = [p.name for p in (run / "checkpoints").iterdir() if p.name not in ("last.npz", "best.npz")]
        assert all(name.startswith((".last.npz.", ".best.npz.")) and name.endswith(".tmp") for name in strays)
        lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
        assert all(json.loads(line) for line in lines[:meta["state"]["log_lines"]])

    if run is not None:
        r = runner.invoke(app, ["train", "--resume", str(run), "--quiet"])
        assert r.exit_code == 0, r.output
        assert not list(run.rglob("*.tmp"))
        assert_same_run(straight, run)
        finished += 1
    assert finished >= 1


def test_resuming_a_run_killed_before_its_first_checkpoint_is_a_clean_error(data, tmp_path):
    run = tmp_path / "runs" / "crash" / "20240101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text((data / "crash.yaml").read_text().replace("train.npz", str(data / "train.npz")))
    r = runner.invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code == 2
    assert "no checkpoint" in r.output and "start it again" in r.output and "Traceback" not in r.output
