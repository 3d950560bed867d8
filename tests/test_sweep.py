"""`netcli sweep`: Optuna studies on SQLite and on a real PostgreSQL server, workers, pruning, failures, Ctrl-C.

The PostgreSQL test needs the server's programs (Debian's `postgresql` package, which `.ci/run` installs
and starts; without its NETCLI_TEST_POSTGRES URL the fixture starts a private server in a temporary
directory). It is skipped only where neither is available, which CI never is.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from tinyrun import invoke

from netcli.config import load_config
from netcli.sweep import load_sweep, trial_rows

ROOT = Path(__file__).resolve().parent.parent

SWEEP = """\
base: tiny.yaml
set: {train.epochs: 4}
space:
  optimizer.lr: {loguniform: [1.0e-4, 1.0]}
  model.layers.0.filters: {choice: [1, 2, 4]}
objective: {metric: val_loss, direction: minimize}
trials: 8
sampler: random
pruner: {type: median, startup_trials: 2, warmup_epochs: 0}
"""


def sweep_here(tiny, text=SWEEP, name="sw.yaml"):
    (tiny / name).write_text(text)
    return tiny / name


def run_cli(tiny, *args, timeout=600, **popen):
    """netcli as a separate process (worker processes and signals behave as on a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", "from netcli.cli import main; main()", *map(str, args)],
                            cwd=tiny, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def check_finished_sweep(tiny, path, storage=None, trials=8):
    """The invariants of a finished sweep: the budget, links to ordinary runs, the report files."""
    sw = load_sweep(path, tiny / "sweeps" / "sw", tiny / "runs", storage)
    rows = trial_rows(sw)
    assert len(rows) == trials and sorted(r["number"] for r in rows) == list(range(trials))
    assert {r["state"] for r in rows} <= {"complete", "pruned", "failed"}
    for r in rows:
        link = tiny / "sweeps" / "sw" / "trials" / f"{r['number']:04d}"
        assert link.is_symlink() and (link / "config.yaml").is_file()
        cfg = yaml.safe_load((link / "config.yaml").read_text())
        assert cfg["optimizer"]["lr"] == pytest.approx(r["params"]["optimizer.lr"])
        assert cfg["model"]["layers"][0]["filters"] == r["params"]["model.layers.0.filters"]
        summary = json.loads((link / "summary.json").read_text())
        if r["state"] == "pruned":
            assert summary["status"] == "pruned" and summary["epochs_completed"] == r["epochs"] < 4
        elif r["state"] == "complete":
            assert summary["status"] == "finished" and r["value"] == pytest.approx(summary["best"]["val_loss"])
    done = [r for r in rows if r["state"] == "complete"]
    best = min(done, key=lambda r: r["value"])
    best_cfg = load_config(tiny / "sweeps" / "sw" / "best.yaml")  # ready to train
    assert best_cfg.optimizer.lr == pytest.approx(best["params"]["optimizer.lr"]) and best_cfg.train.epochs == 4
    assert (tiny / "sweeps" / "sw" / "history.png").stat().st_size > 1000
    return rows


def test_two_workers_on_sqlite_finish_a_sweep_with_pruned_trials(tiny):
    p = run_cli(tiny, "sweep", sweep_here(tiny), "--workers", "2")
    output, _ = p.communicate(timeout=600)
    assert p.returncode == 0, output
    rows = check_finished_sweep(tiny, tiny / "sw.yaml")
    assert any(r["state"] == "pruned" for r in rows) and any(r["state"] == "complete" for r in rows), rows
    assert "worker 0" in output and "worker 1" in output  # both pulled trials
    assert (tiny / "sweeps" / "sw" / "study.db").is_file()
    status = invoke("sweep", tiny / "sw.yaml", "--status", "--sweep-dir", tiny / "sweeps" / "sw",
                    "--runs-dir", tiny / "runs")
    assert status.exit_code == 0 and "complete" in status.output and "best: trial" in status.output, status.output


def test_a_diverging_trial_is_failed_with_its_message_and_the_sweep_goes_on(tiny):
    path = sweep_here(tiny, """\
base: tiny.yaml
space:
  optimizer.lr: {choice: [1.0e+30, 0.01]}
objective: {metric: val_accuracy, direction: maximize}
sampler: grid
pruner: none
""")
    r = invoke("sweep", path, "--sweep-dir", tiny / "sweeps" / "sw", "--runs-dir", tiny / "runs")
    assert r.exit_code == 0, r.output
    rows = {r["params"]["optimizer.lr"]: r for r in trial_rows(load_sweep(path, tiny / "sweeps" / "sw"))}
    assert len(rows) == 2  # the grid's size
    assert rows[1e30]["state"] == "failed" and "not finite" in rows[1e30]["message"]
    assert json.loads(Path(rows[1e30]["run"], "summary.json").read_text())["status"] == "diverged"
    assert rows[0.01]["state"] == "complete"


def test_ctrl_c_stops_the_workers_and_a_rerun_resumes(tiny):
    path = sweep_here(tiny, SWEEP.replace("train.epochs: 4", "train.epochs: 60").replace("trials: 8", "trials: 2")
                      .replace("type: median", "type: none"))
    p = run_cli(tiny, "sweep", path, "--workers", "2")
    db = tiny / "sweeps" / "sw" / "study.db"
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tiny / "runs").glob("sw-*/*/checkpoints/last.npz"))) < 2:
        time.sleep(0.1)  # until both workers' trials have trained an epoch
    p.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal: to the command, which stops its workers
    output, _ = p.communicate(timeout=120)
    assert p.returncode == 130, output
    assert "run the same command again to resume" in output
    storage = f"sqlite:///{db}"
    trials = optuna.load_study(study_name="sw", storage=storage).get_trials()
    assert not [t for t in trials if t.state.name == "RUNNING"]  # every worker told its trial's end
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state.name == "FAIL" for t in interrupted)
    for t in interrupted:  # its run stopped at a step boundary with a checkpoint, as Ctrl-C does
        run = Path(t.user_attrs["run"])
        assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    p = run_cli(tiny, "sweep", path, "--workers", "2")
    output, _ = p.communicate(timeout=600)
    assert p.returncode == 0, output
    rows = trial_rows(load_sweep(path, tiny / "sweeps" / "sw"))
    finished = [r for r in rows if r["state"] != "interrupted"]
    assert len(finished) == 2 and all(r["state"] == "complete" for r in finished)
    again = {json.dumps(r["params"], sort_keys=True) for r in finished}
    assert all(json.dumps(t.params, sort_keys=True) in again for t in interrupted)  # queued again and run


def test_sweep_file_mistakes_are_one_line_each_with_file_and_line(tiny):
    path = sweep_here(tiny, """\
base: tiny.yaml
space:
  optimizer.lr: {loguniform: [0.0, 1.0]}
  optimizer.lrr: {uniform: [0.1, 0.2]}
  train.epochs: {normal: [1, 2]}
objective: {metric: val_accuracy, direction: up}
""")
    r = invoke("sweep", path)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert any("sw.yaml:5: space.train.epochs: unknown kind of values 'normal'" in line for line in lines), lines
    assert any(line.startswith("error: ") and "sw.yaml:6: objective.direction" in line for line in lines), lines
    path = sweep_here(tiny, SWEEP.replace("model.layers.0.filters: {choice: [1, 2, 4]}",
                                          "model.layers.0.filterz: {choice: [1, 2]}"))
    r = invoke("sweep", path)
    assert r.exit_code == 2 and "sw.yaml:5: space.model.layers.0.filterz: 1 does not fit tiny.yaml" in r.output, \
        r.output
    assert "unknown key 'filterz'" in r.output
    path = sweep_here(tiny, SWEEP.replace("{loguniform: [1.0e-4, 1.0]}", "{loguniform: [0.0, 1.0]}"))
    r = invoke("sweep", path)
    assert r.exit_code == 2 and r.output.strip() == "error: " + f"{path}:4: space.optimizer.lr: loguniform needs " \
                                                                "low > 0 (got 0.0)"
    r = invoke("sweep", sweep_here(tiny, SWEEP.replace("sampler: random", "sampler: grid")))
    assert r.exit_code == 2 and "space.optimizer.lr: the grid sampler needs choice or int values" in r.output
    r = invoke("sweep", sweep_here(tiny), "--storage", "postgresql://nobody:secret@127.0.0.1:9/none",
               "--sweep-dir", tiny / "sweeps" / "sw")
    assert r.exit_code == 2 and "cannot open the study storage" in r.output and "secret" not in r.output, r.output


def test_missing_optuna_is_one_line_naming_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    r = invoke("sweep", sweep_here(tiny))
    assert r.exit_code == 2
    assert r.output.strip() == "error: this needs optuna, which is not installed: pip install 'netcli[sweep]'"


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_server():
    """A real PostgreSQL server: .ci/run's (NETCLI_TEST_POSTGRES), else a private one in a temporary directory."""
    if os.environ.get("NETCLI_TEST_POSTGRES"):
        yield os.environ["NETCLI_TEST_POSTGRES"]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # the server refuses to run as root
    home = Path(tempfile.mkdtemp(prefix="netcli-pg-"))
    if as_user:
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = home / "data"
    subprocess.run([*as_user, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", data, "-l", home / "log", "-w", "-o",
                    f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], check=True,
                   capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the server for one test."""
    import psycopg

    name = f"netcli_test_{os.getpid()}_{time.time_ns()}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_two_workers_share_a_study_on_postgresql(tiny, postgres_url):
    path = sweep_here(tiny, SWEEP.replace("trials: 8", "trials: 4"))
    # as two machines would: the same command twice, each with its own local workers, one study in the server
    procs = [run_cli(tiny, "sweep", path, "--storage", postgres_url, "--workers", "1", "--sweep-dir",
                     tiny / "sweeps" / "sw") for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("trial " in out for out in outputs)  # both machines ran trials
    assert not (tiny / "sweeps" / "sw" / "study.db").exists()
    rows = check_finished_sweep(tiny, path, storage=postgres_url, trials=4)
    assert any(r["state"] == "complete" for r in rows)
    p = run_cli(tiny, "sweep", path, "--storage", postgres_url, "--workers", "2", "--status",
                "--sweep-dir", tiny / "sweeps" / "sw")
    output, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and output.count("complete") >= 1, output
