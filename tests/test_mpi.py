"""Data-parallel training under a real mpiexec (the `mpi` extra: mpi4py + the mpich wheel's mpiexec).

N ranks (2, 3 with uneven slices, 4 oversubscribed) must end a run of 300
steps where one process ends it (float64, within 1e-10 relative); a step is
one all-reduce; a signal to mpiexec checkpoints once and exits 130 on every
rank; a killed rank ends the job within seconds; a run resumes on another
number of ranks.
"""
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from netcli.config import load_config
from netcli.train import build_experiment

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec")
NETCLI = [str(BIN / "netcli")]
RANK = [sys.executable, str(ROOT / "tests" / "mpi_rank.py")]
COUNT = [sys.executable, str(ROOT / "tests" / "mpi_count.py")]

CNN = {
    "name": "cnn", "seed": 1, "dtype": "float64",
    "data": {"dataset": "npz", "path": "train.npz", "test_path": "test.npz", "batch_size": 16, "val_fraction": 0.2},
    "model": {"type": "classifier", "layers": [
        # no bias before a batch norm: its true gradient is 0, and Adam turns the rounding noise there into full steps
        {"type": "conv2d", "filters": 4, "kernel": 3, "padding": 1, "bias": False},
        {"type": "batchnorm"}, "relu", {"type": "maxpool2d", "size": 2}, {"type": "dropout", "rate": 0.3},
        "flatten", {"type": "dense", "units": 8, "bias": False}, {"type": "batchnorm"}, "relu",
        {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 3}]},
    "optimizer": {"type": "adam", "lr": 0.01},
    "train": {"epochs": 100, "max_steps": 300},
}  # 112 training samples in batches of 16: 7 steps an epoch
TRANSFORMER = {
    "name": "tr", "seed": 2, "dtype": "float64",
    "data": {"dataset": "reverse_digits", "seq_len": 6, "train_size": 116, "test_size": 20, "batch_size": 16,
             "val_fraction": 0.1},  # 104 training samples: the last batch of each epoch has 8 (3 + 3 + 2 on 3 ranks)
    "model": {"type": "classifier", "layers": [
        {"type": "embedding", "vocab_size": 10, "dim": 16}, {"type": "sinusoidal_position"},
        {"type": "transformer_encoder", "blocks": 2, "heads": 2, "ffn": 32, "dropout": 0.1},
        {"type": "dense", "units": 10}]},
    "optimizer": {"type": "adam", "lr": 0.003},
    "train": {"epochs": 100, "max_steps": 300},
}


def env(**extra):
    e = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **extra}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # let each rank pick cores / ranks
        e.pop(name, None)
    return e


def netcli(folder: Path, ranks: int, *args, mpi_args=(), wrap=False, count=False, timeout=300, background=False,
           data_limit: int | None = None):
    """``netcli ARGS`` in ``folder``: plainly for ranks == 0, else under ``mpiexec -n ranks``; ``data_limit``:
    the bytes of private memory (RLIMIT_DATA) each process may hold."""
    cmd = [*NETCLI, *map(str, args)]
    if wrap:
        cmd = [*RANK, str(folder), *cmd]
    if count:
        cmd = [*COUNT, str(folder), *map(str, args)]
    if ranks:
        cmd = [MPIEXEC, *mpi_args, "-n", str(ranks), *cmd]
    if background:  # its own process group, which the test's cleanup kills if the test fails
        p = subprocess.Popen(cmd, cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        _started.append(p)
        return p
    return subprocess.run(cmd, cwd=folder, env=env(), capture_output=True, text=True, timeout=timeout,
                          preexec_fn=data_limit and (lambda: limit_data(data_limit)))


def limit_data(nbytes: int) -> None:
    """Let this process (and what it starts) hold at most ``nbytes`` of heap and private mappings; a file
    mapped read-only (np.load(mmap_mode="r")) is not counted, its pages are the kernel's to drop."""
    resource.setrlimit(resource.RLIMIT_DATA, (nbytes, nbytes))


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftovers():
    yield
    while _started:
        p = _started.pop()
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def write(folder: Path, cfg: dict, name: str = "run.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for file, n in (("train.npz", 140), ("test.npz", 30)):  # three classes of 1x6x6 images, shifted by the label
        y = rng.integers(0, 3, n)
        np.savez(folder / file, x=rng.normal(size=(n, 1, 6, 6)) + y[:, None, None, None], y=y)
    (folder / name).write_text(yaml.safe_dump(cfg))
    return folder


def train(folder: Path, ranks: int, *args, **kw) -> Path:
    """Train run.yaml into folder/runs (``ranks`` 0: one plain process); the run directory."""
    r = netcli(folder, ranks, "train", "run.yaml", "--runs-dir", "runs", "-q", *args, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    return last_run(folder)


def last_run(folder: Path) -> Path:
    return sorted((folder / "runs").glob("*/*/"))[-1]


def weights(run: Path) -> np.ndarray:
    """Every parameter and buffer of the run's last checkpoint, as one vector."""
    with np.load(run / "checkpoints" / "last.npz") as f:
        return np.concatenate([f[k].ravel() for k in sorted(f.files) if k.startswith(("param/", "buffer/"))])


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The one-process runs the ranks are compared with: {name: (folder, run)}."""
    out = {}
    for name, cfg in (("cnn", CNN), ("transformer", TRANSFORMER)):
        folder = write(tmp_path_factory.mktemp(name), cfg)
        out[name] = folder, train(folder, 0)
    return out


@pytest.mark.parametrize("ranks", [2, 3, 4])
@pytest.mark.parametrize("model", ["cnn", "transformer"])
def test_ranks_reproduce_one_process(references, tmp_path, model, ranks):
    ref_folder, ref = references[model]
    folder = write(tmp_path, CNN if model == "cnn" else TRANSFORMER)
    run = train(folder, ranks)
    assert relative(weights(ref), weights(run)) < 1e-10
    summary = yaml.safe_load((run / "summary.json").read_text())
    assert summary["ranks"] == ranks and summary["steps"] == 300
    ref_summary = yaml.safe_load((ref / "summary.json").read_text())
    for k, v in ref_summary["metrics"].items():  # epoch metric sums and validation over the global batch
        assert summary["metrics"][k] == pytest.approx(v, rel=1e-9), k
    ref_log = (ref / "metrics.jsonl").read_text().splitlines()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(ref_log)  # rank 0 alone wrote it


def test_a_step_is_one_all_reduce_of_the_gradient_buffer_and_its_scalars(tmp_path):
    """Gradients, the optimizer's loss, the step's metrics (loss, accuracy) and the stop flag travel in one
    contiguous array per step (a model without batch norm, whose statistics add their own, and without
    validation, which adds one per epoch)."""
    cfg = {**CNN, "data": {**CNN["data"], "val_fraction": 0.0},
           "model": {"type": "classifier", "layers": ["flatten", {"type": "dense", "units": 8}, "relu",
                                                      {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 3}]},
           "train": {"epochs": 3}}
    folder = write(tmp_path, cfg)
    r = netcli(folder, 2, "train", "run.yaml", "--runs-dir", "runs", "-q", count=True)
    assert r.returncode == 0, r.stdout + r.stderr
    steps = yaml.safe_load((last_run(folder) / "summary.json").read_text())["steps"]
    grad = build_experiment(load_config(folder / "run.yaml")).model.parameters.segments[0].grad
    for rank in (0, 1):
        sizes = yaml.safe_load((folder / f"allreduce.{rank}.json").read_text())
        assert sizes == [len(grad) + 4] * steps == [len(grad) + 4] * 27  # 140 samples in batches of 16, 3 epochs


def test_resume_on_another_number_of_ranks(references, tmp_path):
    """4 ranks for 40 steps, 1 process to 120, 2 ranks to 200, 3 ranks to 300: the one-process run of 300 steps."""
    _, ref = references["cnn"]
    folder = write(tmp_path, CNN)
    run = train(folder, 4, "--set", "train.max_steps=40")
    said = {0: "with 1 process (it was trained with 4 MPI ranks)",
            2: "with 2 MPI ranks (it was trained with 1 process)",
            3: "with 3 MPI ranks (it was trained with 2 MPI ranks)"}
    for ranks, steps in ((0, 120), (2, 200), (3, 300)):
        r = netcli(folder, ranks, "train", "run.yaml", "--resume", run, "--set", f"train.max_steps={steps}",
                   "--allow-config-change", "-q")
        assert r.returncode == 0, r.stderr
        assert said[ranks] in r.stdout, r.stdout
    assert relative(weights(ref), weights(run)) < 1e-10


def test_threads_per_rank_and_errors_once(tmp_path):
    folder = write(tmp_path, CNN)
    r = netcli(folder, 2, "train", "run.yaml", "--runs-dir", "runs", "-q", "--set", "train.max_steps=1")
    cores = len(os.sched_getaffinity(0))
    assert f"training on 2 MPI ranks x {max(1, cores // 2)} thread" in r.stdout
    r = netcli(folder, 2, "train", "run.yaml", "--set", "optimizer.lr=-1")
    assert r.returncode == 2
    assert r.stderr.count("error:") == 1 and "optimizer.lr" in r.stderr
    # 112 samples in batches of 11 leave 2 in the last: fewer than 3 ranks
    r = netcli(folder, 3, "train", "run.yaml", "--set", "data.batch_size=11")
    assert r.returncode == 2 and r.stderr.count("error:") == 1
    assert "data.batch_size" in r.stderr and "leave 2 in the last batch" in r.stderr


def wait_for_checkpoint(folder: Path, name: str, timeout: float = 60) -> Path:
    """The run being trained in ``folder``, once its checkpoints/``name`` exists (runs/cnn/ appears before its run)."""
    end = time.time() + timeout
    while not (found := sorted((folder / "runs").glob(f"*/*/checkpoints/{name}"))):
        assert time.time() < end, f"no checkpoints/{name} appeared under {folder / 'runs'}"
        time.sleep(0.1)
    return found[-1].parent.parent


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_mpiexec_checkpoints_once_and_exits_130_everywhere(tmp_path, signum):
    folder = write(tmp_path, {**CNN, "train": {"epochs": 100_000}})
    p = netcli(folder, 2, "train", "run.yaml", "--runs-dir", "runs", "-q", wrap=True, background=True)
    run = wait_for_checkpoint(folder, "best.npz")  # an epoch is done: training is under way
    p.send_signal(signum)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stdout + stderr
    assert [(folder / f"rc.{r}").read_text() for r in (0, 1)] == ["130", "130"]
    assert stdout.count("checkpoint written") == 1, stdout
    r = netcli(folder, 2, "train", "run.yaml", "--resume", run, "--set", "train.max_steps=30",
               "--allow-config-change", "-q")  # the checkpoint resumes
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr


def test_killed_rank_ends_the_job_and_the_checkpoint_loads(tmp_path):
    folder = write(tmp_path, {**CNN, "train": {"epochs": 100_000, "checkpoint_every": 5}})
    p = netcli(folder, 2, "train", "run.yaml", "--runs-dir", "runs", "-q", wrap=True, background=True)
    wait_for_checkpoint(folder, "last.npz")
    os.kill(int((folder / "pid.1").read_text()), signal.SIGKILL)
    start = time.time()
    p.communicate(timeout=60)
    assert time.time() - start < 10 and p.returncode != 0
    r = netcli(folder, 0, "eval", last_run(folder))
    assert r.returncode == 0, r.stderr


def test_survivor_of_a_killed_rank_stops_waiting_with_one_line(tmp_path):
    """Where mpiexec does not clean up (-disable-auto-cleanup; other launchers), the all-reduce's deadline ends rank 0."""
    folder = write(tmp_path, {**CNN, "train": {"epochs": 100_000, "checkpoint_every": 5}})
    os.environ["NETCLI_MPI_TIMEOUT"] = "3"
    try:
        p = netcli(folder, 2, "train", "run.yaml", "--runs-dir", "runs", "-q", wrap=True, background=True,
                   mpi_args=["-disable-auto-cleanup"])
    finally:
        del os.environ["NETCLI_MPI_TIMEOUT"]
    wait_for_checkpoint(folder, "last.npz")
    os.kill(int((folder / "pid.1").read_text()), signal.SIGKILL)
    start = time.time()
    _, stderr = p.communicate(timeout=60)
    assert time.time() - start < 10
    assert (folder / "rc.0").read_text() == "1"
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "rank 0: no answer from the other ranks in 3 s" in lines[0], stderr
    with np.load(last_run(folder) / "checkpoints" / "last.npz") as f:
        assert f["param/net.10.W"].shape == (8, 3)


def test_eval_and_sample_on_an_mpi_run(references, tmp_path):
    folder, _ = references["cnn"]
    run = train(folder, 2, "--set", "train.max_steps=20")
    r = netcli(folder, 0, "eval", run)
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr
    vae = {"name": "vae", "seed": 0, "dtype": "float64",
           "data": {"dataset": "npz", "path": "train.npz", "batch_size": 16, "val_fraction": 0.2},
           "model": {"type": "vae", "latent_dim": 2, "likelihood": "gaussian",
                     "encoder": ["flatten", {"type": "dense", "units": 8}, "relu", {"type": "dense", "units": 4}],
                     "decoder": [{"type": "dense", "units": 36}, {"type": "reshape", "shape": [1, 6, 6]}]},
           "optimizer": {"type": "adam", "lr": 0.01}, "train": {"max_steps": 30, "epochs": 10}}
    write(tmp_path, vae)
    one, two = train(tmp_path, 0), train(tmp_path, 2)
    assert relative(weights(one), weights(two)) < 1e-10  # the reparameterisation noise too
    r = netcli(tmp_path, 0, "sample", two, "-n", "4")
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr


LIMIT = 384 << 20  # what each process may hold; a netcli process holds about 150 MiB once it has started
BIG = {
    "name": "big", "seed": 0,
    "data": {"dataset": "npy", "features": "x.npy", "targets": "y.npy", "batch_size": 512, "val_fraction": 0.02},
    "model": {"type": "classifier", "layers": [{"type": "dense", "units": 16}, "relu", {"type": "dense", "units": 2}]},
    "optimizer": {"type": "adam", "lr": 0.003}, "train": {"epochs": 1},
}


@pytest.fixture(scope="module")
def big_npy(tmp_path_factory) -> Path:
    """1 GiB of float32 features (262,144 samples of 1,024) in x.npy, 2.7 times LIMIT, and their labels in y.npy."""
    folder = tmp_path_factory.mktemp("big")
    n, f, chunk = 1 << 18, 1 << 10, 1 << 14
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    x = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32, shape=(n, f))
    for i in range(0, n, chunk):  # written in parts: this process need not hold it either
        x[i:i + chunk] = rng.random((chunk, f), dtype=np.float32) - 0.5
        x[i:i + chunk, :4] += y[i:i + chunk, None] - 0.5  # the label shows in the first four features
    x.flush()
    del x
    np.save(folder / "y.npy", y)
    (folder / "run.yaml").write_text(yaml.safe_dump(BIG))
    return folder


def test_the_big_set_does_not_fit_in_a_process_read_whole(big_npy):
    r = subprocess.run([sys.executable, "-c", "import numpy as np; np.load('x.npy')"], cwd=big_npy, env=env(),
                       capture_output=True, text=True, preexec_fn=lambda: limit_data(LIMIT))
    assert r.returncode != 0 and "MemoryError" in r.stderr, r.stderr


@pytest.mark.parametrize("ranks", [0, 2])
def test_a_data_set_larger_than_a_process_may_hold_trains_memory_mapped(big_npy, ranks):
    """Each process reads only its batches (each rank its slices of them) from the mapped file."""
    runs = f"runs{ranks}"
    r = netcli(big_npy, ranks, "train", "run.yaml", "--runs-dir", runs, "-q", data_limit=LIMIT)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = yaml.safe_load(next((big_npy / runs).glob("*/*/summary.json")).read_text())
    assert summary["status"] == "finished" and summary["steps"] == 502  # 256,901 training samples in batches of 512
    assert summary["metrics"]["val_accuracy"] > 0.99


def test_without_mpi4py_a_plain_run_trains_and_a_launched_one_says_what_to_install(tmp_path):
    """netcli imports mpi4py only under a launcher: a plain process trains without it; ranks started by one
    (PMI_SIZE, as mpiexec sets it) without mpi4py stop with one line naming the extra."""
    folder = write(tmp_path, {**CNN, "train": {"max_steps": 2}})
    stub = tmp_path / "no_mpi4py" / "mpi4py"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('No module named mpi4py')\n")
    hide = {"PYTHONPATH": f"{stub.parent}{os.pathsep}{ROOT}"}
    cmd = [*NETCLI, "train", "run.yaml", "--runs-dir", "runs", "-q"]
    r = subprocess.run(cmd, cwd=folder, env=env(**hide), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "max_steps" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(cmd, cwd=folder, env=env(**hide, PMI_SIZE="2"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: mpiexec started 2 ranks but mpi4py is not installed; pip install 'netcli[mpi]'"]
