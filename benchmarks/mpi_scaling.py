"""Data-parallel mnist_cnn: 1 process x 2 threads against 2 MPI ranks x 1 thread, the all-reduces' share of
a step, their latency and bandwidth, and a model of scaling to 8, 32 and 128 ranks across machines.

    python benchmarks/mpi_scaling.py [--epochs 1] [--max-steps N]   # --max-steps: a quick look, not an epoch

Needs the mpi extra (`pip install 'netcli[mpi]'`: mpi4py and the mpich wheel's mpiexec, found next to this
Python) and MNIST in the cache (`netcli data fetch mnist`). Run it on a quiet machine: it prints the load
average before and after.

1. Throughput: `netcli train configs/mnist_cnn.yaml --set train.epochs=1` as one process with 2 threads,
   under `mpiexec -n 2` (1 thread a rank, the default of cores / ranks), and as one process with 1 thread.
   Each rank runs the CLI in this script's process with the trainer's step and every wait of a collective
   timed (``--timed``): samples/s of the epoch (summary.json: steps, end-of-epoch validation and
   checkpoint included), the mean step, and the time a step spends in all-reduces (the gradient buffer's,
   and batch norm's per-channel sums), waiting for the other rank included.
2. Ping (``--ping``, under `mpiexec -n 2`): the all-reduce the step uses (``distributed.allreduce_sum``) of
   float32 arrays from 4 B to 64 MiB, median of repeats; latency is half the smallest one's time (a
   2-rank ring all-reduce pays 2 (N-1) = 2 latencies), bandwidth the median over the sizes of 1 MiB and
   more of bytes over time less those latencies (it moves 2 (N-1)/N = 1 times the bytes).
3. Compute (``--compute``, one process, 1 thread): a train step (forward, backward, Adam) of the model at
   per-rank batches of 2 to 1024 samples.
4. Model: a step of N ranks with b samples each takes compute(b) + ring(N, gradient bytes) + k ring(N,
   one batch-norm message), ring(N, bytes) = 2 (N-1)/N bytes / bandwidth + 2 (N-1) latency, with k the
   batch-norm all-reduces a step made in (1) and the network's figures assumed (printed with the table).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's netcli, in this process and in every rank it starts
CONFIG = ROOT / "configs" / "mnist_cnn.yaml"
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
NETWORKS = {  # assumed, not measured here: (bandwidth bytes/s, latency s) of MPI over TCP on Ethernet
    "10 GbE (assumed 1.25 GB/s, 30 us)": (1.25e9, 30e-6),
    "25 GbE (assumed 3.1 GB/s, 15 us)": (3.125e9, 15e-6),
}
RANKS = (8, 32, 128)
BATCHES = (2, 8, 32, 64, 128, 1024)  # per-rank batches the compute is timed at


# -- what runs inside each rank ---------------------------------------------------------------

def timed(out: Path, args: list[str]) -> None:
    """Run ``netcli ARGS`` here with the trainer's steps and the collectives' waits timed; write out/timing.<rank>.json."""
    from netcli import distributed as D
    from netcli import train as T
    from netcli.cli import main

    steps, waits = [], {}
    wait_all, train_step = D._wait_all, T.Trainer.train_step

    def timed_wait(requests, what):
        t0 = time.perf_counter()
        wait_all(requests, what)
        n, s = waits.get(what, (0, 0.0))
        waits[what] = (n + 1, s + time.perf_counter() - t0)

    def timed_step(self, *a, **kw):
        t0 = time.perf_counter()
        train_step(self, *a, **kw)
        steps.append(time.perf_counter() - t0)

    D._wait_all, T.Trainer.train_step = timed_wait, timed_step
    sys.argv = ["netcli", *args]
    try:
        main()
    finally:
        (out / f"timing.{D.rank()}.json").write_text(json.dumps({"steps": steps, "waits": waits}))


def ping(out: Path, repeats: int = 50) -> None:
    """Time the step's all-reduce over sizes (run under mpiexec -n 2); rank 0 writes out/ping.json."""
    from netcli import distributed as D

    world = D.init()
    rows = []
    for size in 4 ** np.arange(0, 13):  # float32 elements: 4 B to 64 MiB
        a = np.ones(int(size), np.float32)
        times = []
        for i in range(repeats + 3):
            world.comm.Barrier()
            t0 = time.perf_counter()
            D.allreduce_sum(a)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        rows.append((a.nbytes, statistics.median(times)))
    if D.is_root():
        (out / "ping.json").write_text(json.dumps(rows))


def compute(out: Path, repeats: int = 10) -> None:
    """Time a train step of the config's model at each per-rank batch, on one thread; write out/compute.json."""
    from netcli import backend as B
    from netcli.config import load_config
    from netcli.train import build_experiment

    B.tune_allocator()
    B.set_threads(1)
    exp = build_experiment(load_config(CONFIG, ["data.val_fraction=0"]))
    (opt,) = exp.optimizers.values()
    x, y = exp.splits.train_x, exp.splits.train_y
    result = {"params": exp.model.num_params(), "grad_bytes": int(exp.model.parameters.segments[0].grad.nbytes)}
    for b in BATCHES:
        times = []
        for i in range(repeats + 2):
            xb, yb = B.as_input(x[i * b:(i + 1) * b]), y[i * b:(i + 1) * b]
            t0 = time.perf_counter()
            exp.model.train_step(xb, yb, lambda name, loss, metrics=None: opt.step(1e-3))
            if i >= 2:
                times.append(time.perf_counter() - t0)
        result[str(b)] = statistics.median(times)
    (out / "compute.json").write_text(json.dumps(result))


# -- the driver --------------------------------------------------------------------------------

def child(cmd: list[str], threads: int | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}{r.stdout[-2000:]}")


def throughput(work: Path, label: str, ranks: int, threads: int | None, sets: list[str]) -> dict:
    folder = work / label.replace(" ", "")
    folder.mkdir()
    cmd = [sys.executable, __file__, "--timed", str(folder), "--", "train", str(CONFIG), "--runs-dir",
           str(folder / "runs"), "-q", *(a for s in sets for a in ("--set", s))]
    child([MPIEXEC, "-n", str(ranks), *cmd] if ranks > 1 else cmd, threads)
    summary = json.loads(next((folder / "runs").glob("*/*/summary.json")).read_text())
    timings = [json.loads((folder / f"timing.{r}.json").read_text()) for r in range(ranks)]
    step = statistics.mean(statistics.mean(t["steps"]) for t in timings)
    steps = len(timings[0]["steps"])
    waits = {what: sum(t["waits"].get(what, (0, 0))[1] for t in timings) / ranks / steps
             for what in {w for t in timings for w in t["waits"]}}
    counts = {what: timings[0]["waits"][what][0] / steps for what in timings[0]["waits"]}
    return {"label": label, "samples_per_s": summary["samples_per_s"], "step": step, "waits": waits,
            "counts": counts, "accuracy": summary["metrics"].get("val_accuracy")}


def ring(n: int, nbytes: float, bandwidth: float, latency: float) -> float:
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=0, help="stop each run after this many steps (0: no limit)")
    parser.add_argument("--timed", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ping", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--compute", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timed:
        return timed(args.timed, args.rest)
    if args.ping:
        return ping(args.ping)
    if args.compute:
        return compute(args.compute)

    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {len(os.sched_getaffinity(0))})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = [f"train.epochs={args.epochs}", *([f"train.max_steps={args.max_steps}"] if args.max_steps else [])]
        runs = [throughput(work, "1 process x 2 threads", 1, 2, sets),
                throughput(work, "2 ranks x 1 thread", 2, None, sets),
                throughput(work, "1 process x 1 thread", 1, 1, sets)]
        child([MPIEXEC, "-n", "2", sys.executable, __file__, "--ping", str(work)], None)
        child([sys.executable, __file__, "--compute", str(work)], 1)
        pings = json.loads((work / "ping.json").read_text())
        comp = json.loads((work / "compute.json").read_text())
    load_after = os.getloadavg()[0]

    print(f"\n{f'{args.max_steps} steps' if args.max_steps else f'{args.epochs} epoch(s)'} of "
          f"{CONFIG.relative_to(ROOT)} (global batch 64)\n")
    print("| run | samples/s (epoch) | step ms | all-reduce ms a step (share): gradients + batch norm | val accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for r in runs:
        grad, bn = r["waits"].get("gradient all-reduce", 0.0), r["waits"].get("batch-norm all-reduce", 0.0)
        comm = f"{1e3 * (grad + bn):.2f} ({(grad + bn) / r['step']:.0%}): {1e3 * grad:.2f} + {1e3 * bn:.2f}" \
            if r["waits"] else "-"
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        print(f"| {r['label']} | {r['samples_per_s']:.0f} | {1e3 * r['step']:.2f} | {comm} | {acc} |")
    mpi = runs[1]
    bn_count = mpi["counts"].get("batch-norm all-reduce", 0)
    print("\nall-reduces a step under mpiexec: "
          + ", ".join(f"{w}: {c:g}" for w, c in sorted(mpi["counts"].items()) if c >= 0.5))

    print("\nall-reduce of float32 arrays, 2 ranks on this machine (shared memory), median of 50\n")
    print("| bytes | us | GB/s (bytes / time) |")
    print("| --- | --- | --- |")
    for nbytes, t in pings:
        print(f"| {nbytes} | {1e6 * t:.1f} | {nbytes / t / 1e9:.3f} |")
    latency = pings[0][1] / 2
    bandwidth = statistics.median(nbytes / (t - 2 * latency) for nbytes, t in pings if nbytes >= 2**20)
    print(f"\nlatency {1e6 * latency:.1f} us (half the 4-byte time), bandwidth {bandwidth / 1e9:.2f} GB/s "
          "(median over 1 MiB and more of bytes / (time - 2 latencies))")

    grad_bytes = comp["grad_bytes"]
    print(f"\ncompute of a train step on 1 thread ({comp['params']} parameters, {grad_bytes / 2**20:.2f} MiB of "
          "float32 gradients)\n")
    print("| samples a rank | step ms | ms a sample |")
    print("| --- | --- | --- |")
    for b in BATCHES:
        print(f"| {b} | {1e3 * comp[str(b)]:.2f} | {1e3 * comp[str(b)] / b:.3f} |")

    print(f"\nmodel: N ranks, one core each, on machines joined by the network; a step = compute(b) + "
          f"ring(N, {grad_bytes} B) + {bn_count:g} x ring(N, batch-norm sums); ring(N, bytes) = "
          "2(N-1)/N bytes/bandwidth + 2(N-1) latency. samples/s (speedup over one rank of one thread at "
          "batch 64, communication's share of a step)\n")
    bn_bytes = 2 * 64 * 4  # the largest batch-norm message: the second layer's (2, 64) float32 gradient sums
    regimes = {"global batch 64": lambda n: 64 / n, "global batch 1024": lambda n: 1024 / n,
               "64 a rank": lambda n: 64}
    one = 64 / comp["64"]  # samples/s of one rank on one thread at the config's batch
    print("| network | batch | " + " | ".join(f"N = {n}" for n in RANKS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in RANKS) + " |")
    for net, (bw, lat) in {**NETWORKS, f"shared memory (measured {bandwidth / 1e9:.1f} GB/s, "
                                      f"{1e6 * latency:.0f} us)": (bandwidth, latency)}.items():
        for regime, per_rank in regimes.items():
            cells = []
            for n in RANKS:
                b = per_rank(n)
                if b < 1 or str(int(b)) not in comp:
                    cells.append("- (under 1 sample a rank)" if b < 1 else "-")
                    continue
                comm = ring(n, grad_bytes, bw, lat) + bn_count * ring(n, bn_bytes, bw, lat)
                t = comp[str(int(b))] + comm
                cells.append(f"{n * b / t:,.0f} ({n * b / t / one:.1f}x, {comm / t:.0%})")
            print(f"| {net} | {regime} | " + " | ".join(cells) + " |")
    print(f"\nload average after: {load_after:.2f}")


if __name__ == "__main__":
    main()
