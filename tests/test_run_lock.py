"""A run directory is locked while a process trains it (runs.run_lock, runs.lock_holder).

The lock is an flock the OS drops when its process ends, so a SIGKILLed trainer leaves no stale
lock; a second process that tries to train the same run gets one line naming the holder.
"""
import os
import signal
import socket
import subprocess
import sys

import pytest
from test_resume import CONFIG, only_run, train
from tinyrun import invoke, write_tiny_data

from netcli.cli import RichReporter
from netcli.runs import lock_holder, new_run_dir, run_lock

HOLD = """\
import sys, time
from netcli.runs import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def finished(tmp_path):
    write_tiny_data(tmp_path)
    (tmp_path / "mlp.yaml").write_text(CONFIG)
    assert train(tmp_path, tmp_path / "mlp.yaml").exit_code == 0
    return only_run(tmp_path / "runs")


def hold_lock(run):
    """Another process that holds ``run``'s lock until it is killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.stdout.readline() == "locked\n"
    return p


def test_a_second_process_cannot_train_a_locked_run_and_a_killed_holder_leaves_no_lock(finished):
    holder = hold_lock(finished)
    before = {p.name: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    try:
        info = lock_holder(finished)
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        r = invoke("train", "--resume", finished, "--set", "train.epochs=4", "--allow-config-change", "--quiet")
        assert r.exit_code == 2, r.output
        assert r.output.strip() == (f"error: {finished}: is being trained by pid {holder.pid} on host "
                                    f"{socket.gethostname()} (since {info['since']}); "
                                    "wait for it to finish or stop that process")
        assert {p.name: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before  # nothing touched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_holder(finished) is None  # the OS released it with the process
    r = invoke("train", "--resume", finished, "--set", "train.epochs=4", "--allow-config-change", "--quiet")
    assert r.exit_code == 0, r.output


def test_lock_holder_names_this_process_while_it_trains(tmp_path, monkeypatch):
    write_tiny_data(tmp_path)
    (tmp_path / "mlp.yaml").write_text(CONFIG)
    seen = []
    monkeypatch.setattr(RichReporter, "step", lambda self, state, metrics, lr: seen.append(
        lock_holder(only_run(tmp_path / "runs"))))
    assert train(tmp_path, tmp_path / "mlp.yaml").exit_code == 0
    assert seen and all(s["pid"] == os.getpid() and s["host"] == socket.gethostname() for s in seen)
    assert lock_holder(only_run(tmp_path / "runs")) is None  # released when training ended


def test_the_lock_is_exclusive_within_one_process_too_and_is_released_on_errors(tmp_path):
    run = new_run_dir(tmp_path, "x", "")
    assert lock_holder(run) is None
    with pytest.raises(ZeroDivisionError):
        with run_lock(run):
            with pytest.raises(Exception, match="is being trained by pid"):
                with run_lock(run):
                    pass
            1 / 0
    assert lock_holder(run) is None
    with run_lock(run):
        assert lock_holder(run)["pid"] == os.getpid()
