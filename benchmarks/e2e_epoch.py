"""One epoch of configs/mnist_cnn.yaml: `netcli train` against the same model in plain PyTorch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/e2e_epoch.py --threads 1 2

Each side is a whole child process, as a user runs it: `netcli train
configs/mnist_cnn.yaml --set train.epochs=1` and benchmarks/torch_mnist_cnn.py
(same network, data, batch order, batch size, optimizer and schedule, and the
same end-of-epoch validation and checkpoints). Both get the same thread count
(OPENBLAS_NUM_THREADS / OMP_NUM_THREADS for netcli, torch.set_num_threads for
torch). Reported per side: the wall time of the whole process (imports and
data loading included), the training loop's own time (netcli's summary.json
wall_time_s; the torch script's loop_s) and the child's peak resident set
(ru_maxrss from os.wait4). With --repeats > 1 the two alternate and the
medians are shown.

MNIST must be in netcli's cache (`netcli data fetch mnist`); with --wait the
script polls for it that long first.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist_cnn.yaml"
TORCH_SCRIPT = ROOT / "benchmarks" / "torch_mnist_cnn.py"


def cache_file() -> Path:
    return Path(os.environ.get("NETCLI_DATA") or Path.home() / ".cache" / "netcli").expanduser() / "mnist.npz"


def run(cmd: list[str], threads: int) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (ru_maxrss in KiB on Linux)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=1, help="runs per side (alternating); medians shown")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for MNIST to appear in the cache")
    args = parser.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"WARNING: {var}={os.environ[var]} is set; benchmark with "
                  "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/e2e_epoch.py")
    if os.getloadavg()[0] > 0.5:
        print(f"WARNING: load average {os.getloadavg()[0]:.1f}: other processes compete for the cores; "
              "the timings are not reliable")
    deadline = time.time() + args.wait
    while not cache_file().exists():
        if time.time() > deadline:
            sys.exit(f"{cache_file()} not found: run `netcli data fetch mnist` first (or pass --wait SECONDS)")
        time.sleep(10)
    netcli = shutil.which("netcli") or sys.exit("the netcli command is not installed (pip install -e .)")
    print(f"one epoch of {CONFIG.relative_to(ROOT)}; median of {args.repeats} run(s) per side\n")
    print(f"{'threads':>7} {'side':<7} {'process s':>10} {'loop s':>7} {'peak RSS MiB':>12}  result")
    for threads in args.threads:
        results: dict[str, list] = {"netcli": [], "torch": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="e2e-runs-") as runs:
                wall, rss, _ = run([netcli, "train", str(CONFIG), "--set", "train.epochs=1", "--quiet",
                                    "--runs-dir", runs], threads)
                summary = json.loads(next(Path(runs).glob("*/*/summary.json")).read_text())
            m = summary["metrics"]
            results["netcli"].append((wall, summary["wall_time_s"], rss,
                                      f"val_accuracy {m.get('val_accuracy', float('nan')):.4f}"))
            wall, rss, out = run([sys.executable, str(TORCH_SCRIPT), "--epochs", "1", "--threads", str(threads)],
                                 threads)
            report = json.loads(out.strip().splitlines()[-1])
            results["torch"].append((wall, report["loop_s"], rss, f"val_accuracy {report['val_accuracy']:.4f}"))
        medians = {}
        for side, runs_ in results.items():
            wall, loop, rss = (statistics.median(r[i] for r in runs_) for i in range(3))
            medians[side] = wall, loop
            print(f"{threads:>7} {side:<7} {wall:>10.1f} {loop:>7.1f} {rss:>12.0f}  {runs_[-1][3]}")
        (nw, nl), (tw, tl) = medians["netcli"], medians["torch"]
        print(f"{threads:>7} {'ratio':<7} {nw / tw:>10.2f} {nl / tl:>7.2f}")


if __name__ == "__main__":
    main()
