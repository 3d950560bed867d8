"""netcli's numpy engine against PyTorch CPU on the same workloads, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py
    python benchmarks/run.py --only cnn_train --threads 1 --repeats 30

For every workload the script first checks that netcli computes the right
thing: the netcli model's weights are copied into the torch model, and
netcli's float32 loss (or eval output), every parameter gradient and every
parameter after one Adam step are compared with torch's computation in
float64 (TOLERANCE and ADAM_TOLERANCE below). A mismatch aborts that workload
loudly, naming the arrays; a fast wrong engine cannot pass. (Torch's own
float32 error against the same reference is printed too: the float64
reference matters, e.g. torch's float32 post-norm transformer block gradients
are off by percents where netcli's are within 1e-6.)

Then, per thread count (numpy's BLAS through threadpoolctl,
torch.set_num_threads), both engines warm up and run ``--repeats`` steps
interleaved (netcli, torch, netcli, ...) so both see the same machine load.
The table gives the median step time of each and the ratio netcli / torch.

A train step is forward, loss, backward and an Adam step (netcli: the model's
train_batch then optimizer.step, as the trainer does; torch: zero_grad,
forward, loss, backward, step). An eval step is a forward pass in eval mode
(torch under no_grad).

Peak memory is measured once per workload and engine in a fresh child process
(1 thread): the growth of the peak resident set (VmHWM, reset through
/proc/self/clear_refs) over building the model and running its first step.
It counts parameters, gradients, optimizer state and the step's activations
and temporaries alike for both engines. The child runs the workload once
before measuring (so that lazily loaded code and thread pools are not
counted) and pins glibc's mmap threshold at 64 KiB, so that every freed array
leaves the resident set and the measured run cannot reuse the first run's
memory unseen.

Not a test: timings depend on the machine. Run it by hand.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn

import netcli.layers  # noqa: F401  (registers the layers)
import netcli.models  # noqa: F401  (registers the model types)
from netcli import backend as B
from netcli.optim import make_optimizer
from netcli.registry import LAYERS, MODELS

LR = 1e-3
TOLERANCE = 1e-4  # max |netcli - reference| / max |reference| for the loss, outputs and gradients
ADAM_TOLERANCE = 0.05  # max |netcli - reference| / lr for the parameters after one Adam step


# -- workloads -------------------------------------------------------------------------------------


@dataclass
class Workload:
    """One model, batch and mode, described for both engines.

    ``layers`` is the netcli layer list (the YAML's ``model.layers``);
    ``torch_net`` builds the same network in torch; ``weights`` maps each
    netcli parameter name to a torch parameter name, with True where the
    torch array is the transpose (torch's Linear stores (out, in)).
    """

    name: str
    batch: int
    in_shape: tuple[int, ...]
    layers: list
    torch_net: Callable[[], nn.Module]
    weights: dict[str, tuple[str, bool]]
    model: str = "classifier"  # or "regressor" (mse against a random target of the output's shape)
    train: bool = True
    needs: tuple[str, ...] = ()  # registered layer types the workload needs
    notes: list[str] = field(default_factory=list)


class LastStep(nn.Module):
    """A torch recurrent layer whose final hidden state feeds a linear layer (netcli: return_sequences false)."""

    def __init__(self, rnn: nn.Module, units: int, classes: int):
        super().__init__()
        self.rnn, self.fc = rnn, nn.Linear(units, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def dense_weights(pairs: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """netcli dense prefix -> torch Linear prefix, for W (transposed) and b."""
    out = {}
    for ours, theirs in pairs.items():
        out[f"{ours}.W"] = (f"{theirs}.weight", True)
        out[f"{ours}.b"] = (f"{theirs}.bias", False)
    return out


def cnn(batch: int, train: bool) -> Workload:
    layers = [{"type": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, "relu", {"type": "maxpool2d", "size": 2},
              {"type": "conv2d", "filters": 32, "kernel": 3, "padding": 1}, "relu", {"type": "maxpool2d", "size": 2},
              "flatten", {"type": "dense", "units": 128}, "relu", {"type": "dense", "units": 10}]
    net = lambda: nn.Sequential(  # noqa: E731
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    weights = {"net.0.W": ("0.weight", False), "net.0.b": ("0.bias", False),
               "net.3.W": ("3.weight", False), "net.3.b": ("3.bias", False),
               **dense_weights({"net.7": "7", "net.9": "9"})}
    return Workload(f"cnn_{'train' if train else 'eval'}", batch, (1, 28, 28), layers, net, weights, train=train,
                    needs=("conv2d", "maxpool2d"))


def recurrent(kind: str) -> Workload:
    torch_rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
    weights = {f"net.0.{n}": (f"rnn.{n}_l0", False) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    return Workload(f"{kind}_train", 64, (28, 28), [{"type": kind, "units": 128}, {"type": "dense", "units": 10}],
                    lambda: LastStep(torch_rnn(28, 128, batch_first=True), 128, 10),
                    {**weights, **dense_weights({"net.1": "fc"})}, needs=(kind,))


def transformer() -> Workload:
    block = "net.0.0"  # sublayers of a block: norm1, attn (qkv, out), drop1, norm2, dense, act, dropout, dense, dropout
    weights = {f"{block}.0.gamma": ("norm1.weight", False), f"{block}.0.beta": ("norm1.bias", False),
               f"{block}.3.gamma": ("norm2.weight", False), f"{block}.3.beta": ("norm2.bias", False),
               f"{block}.1.0.W": ("self_attn.in_proj_weight", True), f"{block}.1.0.b": ("self_attn.in_proj_bias", False),
               **dense_weights({f"{block}.1.1": "self_attn.out_proj", f"{block}.4": "linear1", f"{block}.7": "linear2"})}
    return Workload("transformer_train", 64, (32, 64),
                    [{"type": "transformer_encoder", "heads": 4, "ffn": 128, "dropout": 0.0}],
                    lambda: nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True),
                    weights, model="regressor", needs=("transformer_encoder",))


WORKLOADS: list[Workload] = [
    Workload("mlp_train", 64, (784,), [{"type": "dense", "units": 256}, "relu", {"type": "dense", "units": 10}],
             lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)),
             dense_weights({"net.0": "0", "net.2": "2"})),
    cnn(64, True), cnn(256, True), cnn(64, False), cnn(256, False),
    recurrent("lstm"), recurrent("gru"),
    transformer(),
]

# Workloads the brief lists that need model types netcli does not have yet.
PENDING = {"vae_train": "the model type 'vae'", "ddpm_train": "a denoiser layer (netcli/layers/diffusion.py)"}


# -- the two engines -----------------------------------------------------------------------------------


class NetcliRunner:
    """The model built as the trainer builds it: the model type from its validated config, then Adam."""

    def __init__(self, w: Workload, x: np.ndarray, y: np.ndarray, out_shape: tuple[int, ...]):
        cls = MODELS.get(w.model)
        self.model = cls(cls.Config(type=w.model, layers=w.layers), None)
        info = SimpleNamespace(input_shape=w.in_shape, target_shape=out_shape if w.model == "regressor" else (),
                               num_classes=10, task="classification" if w.model == "classifier" else "regression")
        self.model.setup(info, B.make_rng(0))
        self.optimizer = make_optimizer({"type": "adam", "lr": LR}, self.model.params())
        self.x, self.y, self.train = x, y, w.train

    def step(self) -> None:
        if self.train:
            self.model.train_batch(self.x, self.y)
            self.optimizer.step(LR)
        else:
            self.model.predict(self.x)


class TorchRunner:
    def __init__(self, w: Workload, x: np.ndarray, y: np.ndarray):
        torch.manual_seed(0)
        self.net = w.torch_net()
        self.net.train(w.train)
        self.loss = nn.CrossEntropyLoss() if w.model == "classifier" else nn.MSELoss()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.x, self.y, self.train = torch.from_numpy(x), torch.from_numpy(y), w.train

    def step(self) -> None:
        if self.train:
            self.optimizer.zero_grad()
            self.loss(self.net(self.x), self.y).backward()
            self.optimizer.step()
        else:
            with torch.no_grad():
                self.net(self.x)


def batch_data(w: Workload) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """A fixed input batch in [0, 1) and targets: class labels, or (regressor) random outputs."""
    rng = np.random.default_rng(1)
    x = rng.random((w.batch, *w.in_shape), dtype=np.float32)
    if w.model == "classifier":
        return x, rng.integers(0, 10, w.batch), (10,)
    out_shape = w.in_shape  # the regressor workloads keep their input's shape
    return x, rng.standard_normal((w.batch, *out_shape), dtype=np.float32), out_shape


def build(w: Workload) -> tuple[NetcliRunner, TorchRunner]:
    """Both engines on the same batch, the torch model holding a copy of netcli's initial weights."""
    x, y, out_shape = batch_data(w)
    ours, theirs = NetcliRunner(w, x, y, out_shape), TorchRunner(w, x, y)
    torch_params = dict(theirs.net.named_parameters())
    names = {n for n, _, _ in ours.model.params()}
    if names != set(w.weights) or {t for t, _ in w.weights.values()} != set(torch_params):
        raise MismatchError(f"parameter maps do not cover both models: netcli {sorted(names)}, "
                            f"torch {sorted(torch_params)}")
    with torch.no_grad():
        for name, p, _ in ours.model.params():
            target, transpose = w.weights[name]
            torch_params[target].copy_(torch.from_numpy(p.T if transpose else p))
    return ours, theirs


# -- the correctness gate -------------------------------------------------------------------------------


class MismatchError(AssertionError):
    pass


def netcli_results(w: Workload, ours: NetcliRunner) -> dict[str, np.ndarray]:
    """What the gate compares, in torch's orientation: the loss, every gradient and every parameter
    after one Adam step (train), or the eval output. Steps the model once."""
    if not w.train:
        return {"eval output": ours.model.predict(ours.x)}
    out = {"loss": np.array(ours.model.train_batch(ours.x, ours.y)["loss"])}
    params = [(name, p, *w.weights[name]) for name, p, _ in ours.model.params()]
    for (name, _, g), (_, p, _, transpose) in zip(ours.model.params(), params):
        out[f"gradient of {name}"] = (g.T if transpose else g).copy()  # the step zeroes it
    ours.optimizer.step(LR)
    for name, p, _, transpose in params:
        out[f"{name} after an Adam step"] = p.T if transpose else p
    return out


def torch_results(w: Workload, net: nn.Module, runner: TorchRunner, dtype: torch.dtype) -> dict[str, np.ndarray]:
    """The same for a copy of the torch model in ``dtype``, keyed by netcli's parameter names."""
    net = copy.deepcopy(net).to(dtype)
    x = runner.x.to(dtype)
    y = runner.y.to(dtype) if runner.y.is_floating_point() else runner.y
    if not w.train:
        with torch.no_grad():
            return {"eval output": net(x).numpy()}
    params = dict(net.named_parameters())
    loss = runner.loss(net(x), y)
    loss.backward()
    out = {"loss": loss.detach().numpy()}
    out.update({f"gradient of {name}": params[t].grad.numpy().copy() for name, (t, _) in w.weights.items()})
    torch.optim.Adam(net.parameters(), lr=LR).step()
    out.update({f"{name} after an Adam step": params[t].detach().numpy() for name, (t, _) in w.weights.items()})
    return out


def errors(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative error of each array: max |got - ref| / max |ref|; for parameters after the Adam step
    max |got - ref| / lr, since a step moves each entry by about lr (less where the gradient is ~0,
    whose float32 rounding can change the move by a fraction of lr)."""
    out = {}
    for what, r in ref.items():
        g = np.asarray(got[what], dtype=np.float64)
        if g.shape != r.shape:
            raise MismatchError(f"{what}: shape {g.shape} != torch's {r.shape}")
        scale = LR if what.endswith("Adam step") else max(float(np.max(np.abs(r))), 1e-12)
        out[what] = float(np.max(np.abs(g - r))) / scale
    return out


def check(w: Workload, ours: NetcliRunner, theirs: TorchRunner) -> tuple[tuple[float, str], tuple[float, str]]:
    """netcli (float32) against torch in float64 with the same weights: the loss and every gradient
    within TOLERANCE, each parameter after one Adam step within ADAM_TOLERANCE * lr.

    Returns the worst (error, array) of netcli and, for comparison, of torch in float32.
    Leaves the netcli model stepped once (the torch model is untouched).
    """
    ref = torch_results(w, theirs.net, theirs, torch.float64)
    ours_err = errors(netcli_results(w, ours), ref)
    torch_err = errors(torch_results(w, theirs.net, theirs, torch.float32), ref)
    bad = [f"{what}: {e:.3g}" for what, e in ours_err.items()
           if not e <= (ADAM_TOLERANCE if what.endswith("Adam step") else TOLERANCE)]
    if bad:
        raise MismatchError("; ".join(bad))
    worst = lambda errs: max((e, what) for what, e in errs.items())  # noqa: E731
    return worst(ours_err), worst(torch_err)


# -- timing ------------------------------------------------------------------------------------------------


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved(ours: Callable, theirs: Callable, repeats: int, warmup: int) -> tuple[float, float]:
    """Median seconds per step of each engine, alternating step by step after ``warmup`` steps each."""
    t_ours, t_theirs = [], []
    for i in range(warmup + repeats):
        a, b = timed(ours), timed(theirs)
        if i >= warmup:
            t_ours.append(a)
            t_theirs.append(b)
    return statistics.median(t_ours), statistics.median(t_theirs)


# -- peak memory (in a child process) -----------------------------------------------------------------------


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def memory_child(name: str, batch: str, engine: str) -> None:
    """Print the peak RSS growth (KiB) over building ``engine``'s model and running its first step."""
    w = next(w for w in WORKLOADS if w.name == name and w.batch == int(batch))
    torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        x, y, out_shape = batch_data(w)
        make = (lambda: NetcliRunner(w, x, y, out_shape)) if engine == "netcli" else (lambda: TorchRunner(w, x, y))
        make().step()  # load code and thread pools; with the fixed mmap threshold its arrays go back to the OS
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        rss0 = _status_kib("VmRSS")
        make().step()
        print(json.dumps(_status_kib("VmHWM") - rss0))


def peak_memory(w: Workload, engine: str) -> float | None:
    """MiB, or None where /proc is missing (not Linux) or the child failed."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    proc = subprocess.run([sys.executable, __file__, "--memory-child", w.name, str(w.batch), engine],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"  (memory of {w.name} on {engine} not measured: {proc.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1]) / 1024


# -- main ------------------------------------------------------------------------------------------------


def blas_report() -> str:
    found = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')} kernels, {i['filepath'].rsplit('/', 1)[-1]})"
             for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(found) or "no BLAS found by threadpoolctl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to run at")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per engine (median); at least 10")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per engine first")
    parser.add_argument("--only", nargs="+", default=None, help="workload names (e.g. cnn_train lstm_train)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(*args.memory_child)
    if args.repeats < 10:
        parser.error("--repeats must be at least 10")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"WARNING: {var}={os.environ[var]} is set and changes OpenBLAS's kernels or blocking; "
                  "benchmark with: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py")
    print(f"numpy {np.__version__}, BLAS: {blas_report()}; torch {torch.__version__}")
    print(f"median of {args.repeats} interleaved steps after {args.warmup} warm-up steps; "
          "memory: peak RSS growth over model build + first step, fresh process, 1 thread\n")

    selected = [w for w in WORKLOADS if args.only is None or w.name in args.only]
    rows, failed = [], []
    for w in selected:
        missing = [t for t in w.needs if t not in LAYERS]
        if missing:
            print(f"{w.name}: skipped, netcli has no {', '.join(missing)} layer yet")
            continue
        try:
            ours, theirs = build(w)
            (err, where), (t_err, t_where) = check(w, ours, theirs)
        except MismatchError as e:
            print(f"\n!!! {w.name} (batch {w.batch}): netcli and torch DISAGREE, not timed: {e}\n", file=sys.stderr)
            failed.append(w.name)
            continue
        print(f"{w.name} (batch {w.batch}): matches torch float64 (netcli's worst error {err:.1e} in {where}; "
              f"torch float32's {t_err:.1e} in {t_where})")
        mem = (None, None) if args.no_memory else (peak_memory(w, "netcli"), peak_memory(w, "torch"))
        for threads in args.threads:
            torch.set_num_threads(threads)
            with threadpool_limits(threads, user_api="blas"):
                t_ours, t_theirs = interleaved(ours.step, theirs.step, args.repeats, args.warmup)
            rows.append((w.name, w.batch, threads, t_ours * 1e3, t_theirs * 1e3, mem))
    for name, why in PENDING.items():
        if args.only is None or name in args.only:
            print(f"{name}: skipped, it needs {why}, which netcli does not have yet")

    fmt = lambda m: "-" if m is None else f"{m:.1f}"  # noqa: E731
    print(f"\n{'workload':<18} {'batch':>5} {'threads':>7} {'netcli ms':>10} {'torch ms':>9} {'ratio':>6} "
          f"{'netcli MiB':>10} {'torch MiB':>9}")
    for name, batch, threads, a, b, (ma, mb) in rows:
        print(f"{name:<18} {batch:>5} {threads:>7} {a:>10.2f} {b:>9.2f} {a / b:>6.2f} {fmt(ma):>10} {fmt(mb):>9}")
    if failed:
        sys.exit(f"\nnetcli and torch disagree on: {', '.join(failed)}")


if __name__ == "__main__":
    main()
