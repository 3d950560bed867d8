"""LSTM and GRU train step: netcli vs torch.nn.LSTM / torch.nn.GRU on the CPU, same process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lstm.py

One train step = forward + backward of one layer (hidden 128, T = 28, input 28,
batch 64, float32) with a fixed random output gradient, the input gradient
included. "seq" back-propagates from every step's output (return_sequences),
"last" from the final hidden state only (a sequence classifier). The two
engines alternate step by step so both see the same machine load; the table
gives the median of the repeats, the ratio netcli / torch of the medians,
and the ratio of the fastest steps (less sensitive to other load on the
machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from netcli.layers.recurrent import GRU, LSTM

H, T, F, BATCH = 128, 28, 28, 64
KINDS = {"lstm": (LSTM, torch.nn.LSTM), "gru": (GRU, torch.nn.GRU)}


def netcli_step(kind: str, last: bool):
    layer = KINDS[kind][0](units=H, return_sequences=not last)
    layer.setup((T, F), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, T, F)).astype(np.float32)
    dy = rng.standard_normal((BATCH, *layer.out_shape)).astype(np.float32)

    def step():
        layer.forward(x, training=True)
        layer.backward(dy)

    return step


def torch_step(kind: str, last: bool):
    layer = KINDS[kind][1](F, H, batch_first=True)
    x = torch.randn(BATCH, T, F, requires_grad=True)
    dy = torch.randn(BATCH, H) if last else torch.randn(BATCH, T, H)

    def step():
        out, _ = layer(x)
        (out[:, -1] if last else out).backward(dy)

    return step


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def compare(steps: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step of each engine over the repeats, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            dt = timed(step)
            if i >= warmup:
                times[name].append(dt)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    print(f"train step (forward + backward): hidden {H}, T {T}, input {F}, batch {BATCH}, float32; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'layer':<6} {'grad':<5} {'threads':>7} {'netcli ms':>10} {'torch ms':>9} {'ratio':>6} {'min ratio':>9}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for kind in args.kinds:
                for last in (False, True):
                    times = compare({"netcli": netcli_step(kind, last), "torch": torch_step(kind, last)},
                                    args.repeats, args.warmup)
                    ours, theirs = (statistics.median(times[k]) for k in ("netcli", "torch"))
                    best = min(times["netcli"]) / min(times["torch"])
                    print(f"{kind:<6} {'last' if last else 'seq':<5} {threads:>7} {ours * 1e3:>10.2f} "
                          f"{theirs * 1e3:>9.2f} {ours / theirs:>6.2f} {best:>9.2f}")


if __name__ == "__main__":
    main()
