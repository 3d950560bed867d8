"""netcli's numpy engine against PyTorch CPU on the same workloads, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py
    python benchmarks/run.py --only cnn_train --threads 1 --repeats 30

For every workload the script first checks that netcli computes the right
thing: the netcli model's weights are copied into the torch model, and
netcli's float32 loss (or eval output) and every parameter gradient are compared with torch's
computation in float64, with the same random draws (noise, timesteps), and
netcli's Adam step with torch.optim.Adam's (float64) from the same gradients
(TOLERANCE and ADAM_TOLERANCE below). A mismatch aborts that workload
loudly, naming the arrays; a fast wrong engine cannot pass. (Torch's own
float32 error against the same reference is printed too: the float64
reference matters, e.g. torch's float32 post-norm transformer block gradients
are off by percents where netcli's are within 1e-6.)

Then, per thread count (netcli's backend.set_threads: the engine splits
each batch over its own threads, BLAS on one thread in each; torch's
set_num_threads), both engines warm up and run ``--repeats`` steps
interleaved in blocks of 5 (see ``interleaved``) so both see the same machine load.
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
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_info
from torch import nn

import netcli.layers  # noqa: F401  (registers the layers)
import netcli.models  # noqa: F401  (registers the model types)
from netcli import backend as B
from netcli.optim import make_optimizer
from netcli.registry import LAYERS, MODELS

LR = 1e-3
TOLERANCE = 1e-4  # max |netcli - reference| / max |reference| for the loss, outputs and gradients
ADAM_TOLERANCE = 1e-3  # max |netcli - torch.optim.Adam| / lr of the parameters after one step from netcli's gradients


# -- workloads -------------------------------------------------------------------------------------


@dataclass
class Workload:
    """One model, batch and mode, described for both engines.

    ``model`` is the netcli model config (the YAML's ``model:`` section);
    ``torch_net`` builds the same model in torch, an nn.Module whose forward
    is the eval pass and whose ``loss(x, y)`` is the training loss;
    ``weights`` maps each netcli parameter name to the torch one, with True
    where the torch array is the transpose (torch's Linear stores (out, in)).
    ``draws`` gives, for the check, the random draws (noise, timesteps) the
    netcli model's next train step will make, from a copy of its generator.
    """

    name: str
    batch: int
    in_shape: tuple[int, ...]
    model: dict
    torch_net: Callable[[], nn.Module]
    weights: dict[str, tuple[str, bool]]
    target: str = "labels"  # "labels" (10 classes), "same" (a random target of the input's shape) or "none"
    train: bool = True
    draws: Callable | None = None

    def needs(self) -> list[str]:
        """Model types and layer types this workload needs that netcli has not registered (yet)."""
        types = [self.model["type"]] if self.model["type"] not in MODELS else []
        specs = [s for k, v in self.model.items() if isinstance(v, list) for s in v]
        return types + [t for t in (s if isinstance(s, str) else s["type"] for s in specs) if t not in LAYERS]


class Supervised(nn.Module):
    """A network and its loss: cross-entropy on labels, or mse."""

    def __init__(self, net: nn.Module, loss: nn.Module):
        super().__init__()
        self.net, self.loss_fn = net, loss

    def forward(self, x):
        return self.net(x)

    def loss(self, x, y):
        return self.loss_fn(self.net(x), y)


class LastStep(nn.Module):
    """A torch recurrent layer whose final hidden state feeds a linear layer (netcli: return_sequences false)."""

    def __init__(self, rnn: nn.Module, units: int, classes: int):
        super().__init__()
        self.rnn, self.fc = rnn, nn.Linear(units, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class TorchVAE(nn.Module):
    """netcli's vae model (bernoulli likelihood, beta 1): BCE on logits summed over pixels + KL, batch means."""

    def __init__(self, pixels: int, hidden: int, latent: int):
        super().__init__()
        self.latent, self.fixed = latent, None
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def loss(self, x, y):
        mu, logvar = self.encoder(x).split(self.latent, dim=1)
        std = torch.exp(0.5 * logvar)
        eps = self.fixed[0] if self.fixed else torch.randn_like(std)
        out = self.decoder(mu + std * eps)
        recon = nn.functional.binary_cross_entropy_with_logits(out, x, reduction="sum")
        kl = 0.5 * torch.sum(mu**2 + std**2 - 1 - logvar)
        return (recon + kl) / len(x)


class TorchDDPM(nn.Module):
    """netcli's ddpm model (linear betas) with a time_mlp_denoiser, and its weight average (EMA) each step."""

    def __init__(self, pixels: int, units: list[int], time_dim: int, T: int = 1000, ema_decay: float = 0.999):
        super().__init__()
        self.hidden = nn.ModuleList()
        self.time_proj = nn.ModuleList()
        width = pixels
        for u in units:
            self.hidden.append(nn.Linear(width, u))
            self.time_proj.append(nn.Linear(time_dim, u, bias=False))
            width = u
        self.out = nn.Linear(width, pixels)
        self.time_dim, self.T, self.ema_decay, self.fixed = time_dim, T, ema_decay, None
        self.abar = np.cumprod(1 - np.linspace(1e-4, 0.02, T))  # float64, as netcli
        self.ema: list[torch.Tensor] | None = None
        self.ema_updates = 0

    def embedding(self, t: np.ndarray, dtype) -> torch.Tensor:
        half = self.time_dim // 2
        angles = t.astype(np.float64)[:, None] * np.exp(-math.log(10000.0) * np.arange(half) / half)
        return torch.from_numpy(np.concatenate([np.sin(angles), np.cos(angles)], axis=1)).to(dtype)

    def denoise(self, x, t: np.ndarray):
        emb = self.embedding(t, x.dtype)
        h = x
        for dense, proj in zip(self.hidden, self.time_proj):
            h = torch.relu(dense(h) + proj(emb))
        return self.out(h)

    def update_ema(self) -> None:
        params = [p.detach() for p in self.parameters()]
        if self.ema is None:
            self.ema = [p.clone() for p in params]
        decay = min(self.ema_decay, (1 + self.ema_updates) / (10 + self.ema_updates))
        torch._foreach_mul_(self.ema, decay)
        torch._foreach_add_(self.ema, params, alpha=1 - decay)
        self.ema_updates += 1

    def loss(self, x, y):
        if self.fixed:
            t, eps = self.fixed
        else:
            self.update_ema()
            t, eps = np.random.randint(0, self.T, len(x)), torch.randn_like(x)
        ab = torch.from_numpy(self.abar[t])[:, None]
        xt = (ab.sqrt() * (2 * x.double() - 1) + (1 - ab).sqrt() * eps.double()).to(x.dtype)
        return nn.functional.mse_loss(self.denoise(xt, t), eps)


def dense_weights(pairs: dict[str, str]) -> dict[str, tuple[str, bool]]:
    """netcli dense prefix -> torch Linear prefix, for W (transposed) and b (none for a prefix ending in '!')."""
    out = {}
    for ours, theirs in pairs.items():
        out[f"{ours.rstrip('!')}.W"] = (f"{theirs}.weight", True)
        if not ours.endswith("!"):
            out[f"{ours}.b"] = (f"{theirs}.bias", False)
    return out


def classifier(layers: list) -> dict:
    return {"type": "classifier", "layers": layers}


def mlp() -> Workload:
    return Workload("mlp_train", 64, (784,), classifier([{"type": "dense", "units": 256}, "relu",
                                                        {"type": "dense", "units": 10}]),
                    lambda: Supervised(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)),
                                       nn.CrossEntropyLoss()),
                    dense_weights({"net.0": "net.0", "net.2": "net.2"}))


def cnn(batch: int, train: bool) -> Workload:
    layers = [{"type": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, "relu", {"type": "maxpool2d", "size": 2},
              {"type": "conv2d", "filters": 32, "kernel": 3, "padding": 1}, "relu", {"type": "maxpool2d", "size": 2},
              "flatten", {"type": "dense", "units": 128}, "relu", {"type": "dense", "units": 10}]
    net = lambda: Supervised(nn.Sequential(  # noqa: E731
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)), nn.CrossEntropyLoss())
    weights = {"net.0.W": ("net.0.weight", False), "net.0.b": ("net.0.bias", False),
               "net.3.W": ("net.3.weight", False), "net.3.b": ("net.3.bias", False),
               **dense_weights({"net.7": "net.7", "net.9": "net.9"})}
    return Workload(f"cnn_{'train' if train else 'eval'}", batch, (1, 28, 28), classifier(layers), net, weights,
                    train=train)


def recurrent(kind: str) -> Workload:
    torch_rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
    weights = {f"net.0.{n}": (f"net.rnn.{n}_l0", False) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    return Workload(f"{kind}_train", 64, (28, 28),
                    classifier([{"type": kind, "units": 128}, {"type": "dense", "units": 10}]),
                    lambda: Supervised(LastStep(torch_rnn(28, 128, batch_first=True), 128, 10), nn.CrossEntropyLoss()),
                    {**weights, **dense_weights({"net.1": "net.fc"})})


def transformer() -> Workload:
    block, t = "net.0.blocks.0", "net"  # a block: attn (qkv, out), drop1, norm1, norm2, ffn (dense, act, drop, dense, drop)
    weights = {f"{block}.norm1.gamma": (f"{t}.norm1.weight", False), f"{block}.norm1.beta": (f"{t}.norm1.bias", False),
               f"{block}.norm2.gamma": (f"{t}.norm2.weight", False), f"{block}.norm2.beta": (f"{t}.norm2.bias", False),
               f"{block}.attn.qkv.W": (f"{t}.self_attn.in_proj_weight", True),
               f"{block}.attn.qkv.b": (f"{t}.self_attn.in_proj_bias", False),
               **dense_weights({f"{block}.attn.out": f"{t}.self_attn.out_proj", f"{block}.ffn.0": f"{t}.linear1",
                                f"{block}.ffn.3": f"{t}.linear2"})}
    return Workload("transformer_train", 64, (32, 64),
                    {"type": "regressor", "layers": [{"type": "transformer_encoder", "heads": 4, "ffn": 128,
                                                      "dropout": 0.0}]},
                    lambda: Supervised(nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True),
                                       nn.MSELoss()),
                    weights, target="same")


def vae() -> Workload:
    model = {"type": "vae", "latent_dim": 20,
             "encoder": [{"type": "dense", "units": 400}, "relu", {"type": "dense", "units": 40}],
             "decoder": [{"type": "dense", "units": 400}, "relu", {"type": "dense", "units": 784}]}
    return Workload("vae_train", 128, (784,), model, lambda: TorchVAE(784, 400, 20),
                    dense_weights({f"{net}.{i}": f"{net}.{i}" for net in ("encoder", "decoder") for i in (0, 2)}),
                    target="none", draws=lambda m, rng, x: (m.noise(len(x), rng),))


def ddpm() -> Workload:
    d = "denoiser.0"  # children: hidden.i, time_proj.i, act.i, out
    weights = dense_weights({f"{d}.hidden.0": "hidden.0", f"{d}.hidden.1": "hidden.1", f"{d}.time_proj.0!": "time_proj.0",
                             f"{d}.time_proj.1!": "time_proj.1", f"{d}.out": "out"})
    return Workload("ddpm_train", 128, (784,),
                    {"type": "ddpm", "denoiser": [{"type": "time_mlp_denoiser", "units": [512, 512], "time_dim": 64}]},
                    lambda: TorchDDPM(784, [512, 512], 64), weights, target="none",
                    draws=lambda m, rng, x: m.draw(x, rng))


WORKLOADS: list[Workload] = [mlp(), cnn(64, True), cnn(256, True), cnn(64, False), cnn(256, False),
                             recurrent("lstm"), recurrent("gru"), transformer(), vae(), ddpm()]


# -- the two engines -----------------------------------------------------------------------------------


class NetcliRunner:
    """The model built as the trainer builds it: the model type from its validated config, then Adam."""

    def __init__(self, w: Workload, x: np.ndarray, y: np.ndarray):
        cls = MODELS.get(w.model["type"])
        self.model = cls(cls.Config(**w.model), None)
        info = SimpleNamespace(input_shape=w.in_shape, target_shape=w.in_shape if w.target == "same" else (),
                               num_classes=10 if w.target == "labels" else None,
                               task="classification" if w.target == "labels" else "regression")
        self.model.setup(info, B.make_rng(0))
        self.optimizer = make_optimizer({"type": "adam", "lr": LR}, self.model.parameters)  # the flat buffers
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
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.x, self.y, self.train = torch.from_numpy(x), torch.from_numpy(y), w.train

    def step(self) -> None:
        if self.train:
            self.optimizer.zero_grad()
            self.net.loss(self.x, self.y).backward()
            self.optimizer.step()
        else:
            with torch.no_grad():
                self.net(self.x)


def batch_data(w: Workload) -> tuple[np.ndarray, np.ndarray]:
    """A fixed input batch in [0, 1) and its targets: class labels, random outputs, or none (generative)."""
    rng = np.random.default_rng(1)
    x = rng.random((w.batch, *w.in_shape), dtype=np.float32)
    if w.target == "labels":
        return x, rng.integers(0, 10, w.batch)
    if w.target == "same":
        return x, rng.standard_normal(x.shape, dtype=np.float32)
    return x, np.zeros(w.batch, dtype=np.int64)


def build(w: Workload) -> tuple[NetcliRunner, TorchRunner]:
    """Both engines on the same batch, the torch model holding a copy of netcli's initial weights."""
    x, y = batch_data(w)
    ours, theirs = NetcliRunner(w, x, y), TorchRunner(w, x, y)
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
    """What the gate compares, in torch's orientation: the loss and every gradient (train) or the eval
    output. Then takes the optimizer step, checked separately: the parameters must move as
    torch.optim.Adam (float64) moves them given netcli's own gradients ("Adam step" in the result)."""
    if not w.train:
        return {"eval output": ours.model.predict(ours.x)}
    out = {"loss": np.array(ours.model.train_batch(ours.x, ours.y)["loss"])}
    params = [(name, p, g, w.weights[name][1]) for name, p, g in ours.model.params()]
    for name, _, g, transpose in params:
        out[f"gradient of {name}"] = g.T if transpose else g
    before = [torch.tensor(p, dtype=torch.float64) for _, p, _, _ in params]
    for t, (_, _, g, _) in zip(before, params):
        t.grad = torch.tensor(g, dtype=torch.float64)
    torch.optim.Adam(before, lr=LR).step()
    out = {k: np.array(v, dtype=np.float64) for k, v in out.items()}  # copies: the step zeroes the gradients
    ours.optimizer.step(LR)
    moved = [float(np.max(np.abs(p - t.detach().numpy()))) for (_, p, _, _), t in zip(params, before)]
    out["Adam step"] = max(moved) / LR
    return out


def torch_results(w: Workload, net: nn.Module, runner: TorchRunner, dtype: torch.dtype,
                  draws: tuple | None) -> dict[str, np.ndarray]:
    """The loss and gradients (or eval output) of a copy of the torch model in ``dtype``, keyed as netcli's."""
    net = copy.deepcopy(net).to(dtype)
    x = runner.x.to(dtype)
    y = runner.y.to(dtype) if runner.y.is_floating_point() else runner.y
    if not w.train:
        with torch.no_grad():
            return {"eval output": net(x).numpy()}
    if draws is not None:  # netcli's noise and timesteps for this step
        net.fixed = tuple(torch.from_numpy(d).to(dtype) if d.dtype.kind == "f" else d for d in draws)
    params = dict(net.named_parameters())
    loss = net.loss(x, y)
    loss.backward()
    return {"loss": loss.detach().numpy(),
            **{f"gradient of {name}": params[t].grad.numpy() for name, (t, _) in w.weights.items()}}


def errors(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """max |got - ref| / max |ref| of each array in ``ref``."""
    out = {}
    for what, r in ref.items():
        g = np.asarray(got[what], dtype=np.float64)
        if g.shape != r.shape:
            raise MismatchError(f"{what}: shape {g.shape} != torch's {r.shape}")
        out[what] = float(np.max(np.abs(g - r))) / max(float(np.max(np.abs(r))), 1e-12)
    return out


def check(w: Workload, ours: NetcliRunner, theirs: TorchRunner) -> tuple[tuple[float, str], tuple[float, str]]:
    """netcli (float32) against torch in float64 with the same weights and random draws: the loss and
    every gradient (or the eval output) within TOLERANCE, the Adam step within ADAM_TOLERANCE * lr.

    Returns the worst (error, array) of netcli and, for comparison, of torch in float32.
    Leaves the netcli model stepped once (the torch model is untouched).
    """
    draws = w.draws(ours.model, copy.deepcopy(ours.model.rng), ours.x) if w.draws else None
    ref = torch_results(w, theirs.net, theirs, torch.float64, draws)
    got = netcli_results(w, ours)
    ours_err = errors(got, ref)
    torch_err = errors(torch_results(w, theirs.net, theirs, torch.float32, draws), ref)
    bad = [f"{what}: {e:.3g}" for what, e in ours_err.items() if not e <= TOLERANCE]
    if w.train and not got["Adam step"] <= ADAM_TOLERANCE:
        bad.append(f"Adam step: max |netcli - torch.optim.Adam| = {got['Adam step']:.3g} lr")
    if bad:
        raise MismatchError("; ".join(bad))
    worst = lambda errs: max((e, what) for what, e in errs.items())  # noqa: E731
    return worst(ours_err), worst(torch_err)


# -- timing ------------------------------------------------------------------------------------------------


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved(ours: Callable, theirs: Callable, repeats: int, warmup: int, block: int = 5) -> tuple[float, float]:
    """Median seconds per step of each engine: ``warmup`` steps each, then blocks of ``block`` timed steps,
    alternating (netcli, torch, netcli, ...), each block after one untimed step.

    Blocks rather than single steps: after its step an engine's idle worker threads spin-wait on the
    cores for a while (torch's OpenMP workers some milliseconds; OpenBLAS's, when netcli let BLAS
    thread, longer), and alternating step by step timed each engine against the other's spinning.
    """
    t_ours, t_theirs = [], []
    for _ in range(warmup):
        timed(ours), timed(theirs)
    while len(t_ours) < repeats:
        k = min(block, repeats - len(t_ours))
        for step, times in ((ours, t_ours), (theirs, t_theirs)):
            step()  # untimed: takes the other engine's spinning threads
            times.extend(timed(step) for _ in range(k))
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
    B.set_threads(1)  # and BLAS on one thread
    x, y = batch_data(w)
    make = (lambda: NetcliRunner(w, x, y)) if engine == "netcli" else (lambda: TorchRunner(w, x, y))
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
    found = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')} kernels, "
             f"{i['filepath'].rsplit('/', 1)[-1]})" for i in threadpool_info() if i["user_api"] == "blas"]
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
    B.tune_allocator()  # as `netcli` does at start-up; both engines share this process, and both gain from it
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"WARNING: {var}={os.environ[var]} is set and changes OpenBLAS's kernels or blocking; "
                  "benchmark with: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"WARNING: load average {load:.1f} before starting: other processes compete for the cores and the "
              "timings (at 2 threads above all: spinning BLAS/OpenMP threads) are not reliable")
    print(f"numpy {np.__version__}, BLAS: {blas_report()}; torch {torch.__version__}")
    print(f"median of {args.repeats} interleaved steps after {args.warmup} warm-up steps; "
          "memory: peak RSS growth over model build + first step, fresh process, 1 thread\n")

    selected = [w for w in WORKLOADS if args.only is None or w.name in args.only]
    rows, failed = [], []
    for w in selected:
        missing = w.needs()
        if missing:
            print(f"{w.name}: skipped, netcli has no {', '.join(missing)} yet")
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
            B.set_threads(threads)  # netcli splits its work over its own threads, BLAS on one thread each
            t_ours, t_theirs = interleaved(ours.step, theirs.step, args.repeats, args.warmup)
            rows.append((w.name, w.batch, threads, t_ours * 1e3, t_theirs * 1e3, mem))

    fmt = lambda m: "-" if m is None else f"{m:.1f}"  # noqa: E731
    print(f"\n{'workload':<18} {'batch':>5} {'threads':>7} {'netcli ms':>10} {'torch ms':>9} {'ratio':>6} "
          f"{'netcli MiB':>10} {'torch MiB':>9}")
    for name, batch, threads, a, b, (ma, mb) in rows:
        print(f"{name:<18} {batch:>5} {threads:>7} {a:>10.2f} {b:>9.2f} {a / b:>6.2f} {fmt(ma):>10} {fmt(mb):>9}")
    if failed:
        sys.exit(f"\nnetcli and torch disagree on: {', '.join(failed)}")


if __name__ == "__main__":
    main()
