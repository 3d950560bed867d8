"""Per-layer speed and memory of a config's model, as Caffe's `caffe time`: `netcli bench CONFIG`.

    table = bench_config("configs/mnist_cnn.yaml", ["data.batch_size=128"], repeats=10)

The experiment is built as for training and one batch of the training split
goes through the model's train step (forward, loss, backward) ``repeats``
times after two warm-up steps, each followed by an optimizer step as in
training. Every layer's forward and backward is timed by wrapping the bound
methods on the layer instance (composite layers include their children); the
table shows the median over the repeats, per call summed within a step.

- FLOPs: the layer's forward ``flops()`` (per sample) times the rows it was
  given (the batch, or batch x tokens for a layer applied token by token).
- GFLOP/s: forward FLOPs / forward time; backward counts 2x the forward FLOPs
  (one product for the input gradient and one for the weight gradient).
- params: bytes of the layer's parameters (its children's included).
- activations: bytes allocated by the layer's forward and still held when it
  returns (its output and what it keeps for backward), measured with
  tracemalloc on a first, untimed forward; the total is the whole network's.
"""
from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Column, Table

from .. import backend as B
from ..layers.base import Layer, walk

WARMUP = 2


@dataclass
class LayerTimes:
    """One layer's measurements; the *_now fields collect the step being run."""

    path: str
    layer: Layer
    forward: list[float] = field(default_factory=list)  # seconds per step
    backward: list[float] = field(default_factory=list)
    forward_now: float = 0.0
    backward_now: float = 0.0
    rows: int = 0  # samples (or tokens) in the last forward, for FLOPs
    activation_bytes: int = 0
    trace_memory: bool = False

    def wrap(self) -> None:
        """Shadow the layer's forward and backward with timed versions (instance attributes)."""
        forward, backward = self.layer.forward, self.layer.backward
        per_row = math.prod(self.layer.in_shape or ())

        def timed_forward(x, training, *ctx):  # ctx: the batch Context, for a layer that takes one
            held = tracemalloc.get_traced_memory()[0] if self.trace_memory else 0
            start = time.perf_counter()
            y = forward(x, training, *ctx)
            self.forward_now += time.perf_counter() - start
            if self.trace_memory:
                self.activation_bytes += tracemalloc.get_traced_memory()[0] - held
            self.rows = x.size // per_row if per_row else len(x)
            return y

        def timed_backward(dy):
            start = time.perf_counter()
            dx = backward(dy)
            self.backward_now += time.perf_counter() - start
            return dx

        self.layer.forward, self.layer.backward = timed_forward, timed_backward

    def unwrap(self) -> None:
        del self.layer.forward, self.layer.backward

    def end_step(self, keep: bool) -> None:
        if keep:
            self.forward.append(self.forward_now)
            self.backward.append(self.backward_now)
        self.forward_now = self.backward_now = 0.0

    @property
    def flops(self) -> int:
        return self.layer.flops() * self.rows


def bench_model(model, optimizers, lr: float, x, y, repeats: int) -> tuple[list[LayerTimes], list[LayerTimes], dict]:
    """Time ``repeats`` train steps of ``model`` on (x, y); returns (non-root layers, roots, step figures).

    A step is the model's own ``train_step``; each optimizer it steps (``optimizers``: name -> Optimizer)
    is timed apart from the rest.
    """
    opt_time = [0.0]

    def step(name, loss, metrics=None):
        t0 = time.perf_counter()
        optimizers[name].step(lr)
        opt_time[0] += time.perf_counter() - t0

    roots, layers = [], []
    for name, net in model.networks().items():
        for path, layer in walk(net, f"{name}."):
            (layers if layer is not net else roots).append(LayerTimes(path.rstrip("."), layer))
    everything = roots + layers
    for t in everything:
        t.wrap()
    try:
        for t in everything:
            t.trace_memory = True
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        model.train_step(x, y, lambda name, loss, metrics=None: None)  # the optimizers' steps come after the measurement
        peak = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
        for t in everything:
            t.trace_memory = False
        for opt in optimizers.values():
            opt.step(lr)
        for t in everything:
            t.end_step(keep=False)
        steps, opt = [], []
        for i in range(WARMUP + repeats):
            opt_time[0] = 0.0
            t0 = time.perf_counter()
            model.train_step(x, y, step)
            t1 = time.perf_counter()
            if i >= WARMUP:
                steps.append(t1 - t0 - opt_time[0])
                opt.append(opt_time[0])
            for t in everything:
                t.end_step(keep=i >= WARMUP)
    finally:
        for t in everything:
            t.unwrap()
    return layers, roots, {"step": statistics.median(steps), "optimizer": statistics.median(opt),
                           "peak_bytes": peak, "batch": len(x)}


def bench_config(config_path: Path | str, overrides: list[str] = (), repeats: int = 10) -> Table:
    """Build the config's experiment and time its layers on one training batch; a rich Table."""
    from ..train import prepare_experiment

    cfg, exp = prepare_experiment(Path(config_path), list(overrides))
    bs = cfg.data.batch_size
    x, y = exp.splits.train_x[:bs], exp.splits.train_y[:bs]
    layers, roots, step = bench_model(exp.model, exp.optimizers, cfg.optimizer.lr, x, y, repeats)

    numbers = [Column(h, justify="right") for h in ("forward ms", "backward ms", "FLOPs", "fwd GFLOP/s",
                                                    "bwd GFLOP/s", "params", "activations")]
    table = Table("layer", "type", *numbers,
                  title=f"{cfg.name}: batch {len(x)}, {B.threads()} thread(s), median of {repeats} train steps",
                  caption=f"train step (forward + loss + backward) {step['step'] * 1e3:.2f} ms, "
                          f"{cfg.optimizer.type} step {step['optimizer'] * 1e3:.2f} ms, "
                          f"{len(x) / (step['step'] + step['optimizer']):,.0f} samples/s; "
                          f"peak memory of a step {B.format_bytes(step['peak_bytes'])} (tracemalloc)")
    for t in layers:
        depth = t.path.count(".") - 1
        table.add_row(t.path, "  " * depth + t.layer.type_name, *_cells(t.forward, t.backward, t.flops),
                      B.format_bytes(_param_bytes(t.layer)), B.format_bytes(t.activation_bytes))
    fwd = [sum(v) for v in zip(*(t.forward for t in roots))]
    bwd = [sum(v) for v in zip(*(t.backward for t in roots))]
    table.add_row("total", "", *_cells(fwd, bwd, sum(t.flops for t in roots)),
                  B.format_bytes(sum(_param_bytes(t.layer) for t in roots)),
                  B.format_bytes(sum(t.activation_bytes for t in roots)), end_section=True)
    return table


def _cells(forward: list[float], backward: list[float], flops: int) -> list[str]:
    f, b = statistics.median(forward), statistics.median(backward)
    rate = lambda n, s: f"{n / s / 1e9:.1f}" if n and s > 0 else "-"  # noqa: E731
    return [f"{f * 1e3:.4g}", f"{b * 1e3:.4g}", f"{flops:,}" if flops else "-", rate(flops, f), rate(2 * flops, b)]


def _param_bytes(layer: Layer) -> int:
    return sum(p.nbytes for _, sub in walk(layer) for p in sub.params.values())
