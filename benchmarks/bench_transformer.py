"""Transformer encoder block: netcli vs torch.nn.TransformerEncoderLayer on the CPU, same process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_transformer.py

One train step = forward + backward of one block (d_model 64, 4 heads, ffn 128,
T = 32, batch 64, dropout 0, float32), post-norm and pre-norm. The two
engines alternate step by step so that both see the same machine load; the
table gives the median of the repeats and the ratio netcli / torch.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from netcli.layers.transformer import TransformerEncoder

D, HEADS, FFN, T, BATCH = 64, 4, 128, 32, 64


def netcli_step(norm_first: bool):
    layer = TransformerEncoder(heads=HEADS, ffn=FFN, dropout=0.0, norm_first=norm_first)
    layer.setup((T, D), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((BATCH, T, D)).astype(np.float32)
    dy = np.ones_like(x)

    def step():
        layer.forward(x, training=True)
        layer.backward(dy)

    return step


def torch_step(norm_first: bool):
    layer = torch.nn.TransformerEncoderLayer(D, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=norm_first)
    x = torch.randn(BATCH, T, D, requires_grad=True)
    dy = torch.ones(BATCH, T, D)

    def step():
        layer(x).backward(dy)

    return step


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def compare(steps: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each engine, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            dt = timed(step)
            if i >= warmup:
                times[name].append(dt)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"encoder block train step: d_model {D}, heads {HEADS}, ffn {FFN}, T {T}, batch {BATCH}, float32")
    print(f"{'block':<10} {'threads':>7} {'netcli ms':>10} {'torch ms':>9} {'ratio':>6}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for norm_first in (False, True):
                med = compare({"netcli": netcli_step(norm_first), "torch": torch_step(norm_first)},
                              args.repeats, args.warmup)
                name = "pre-norm" if norm_first else "post-norm"
                print(f"{name:<10} {threads:>7} {med['netcli'] * 1e3:>10.2f} {med['torch'] * 1e3:>9.2f} "
                      f"{med['netcli'] / med['torch']:>6.2f}")


if __name__ == "__main__":
    main()
