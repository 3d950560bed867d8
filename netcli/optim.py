"""Optimizers that update parameters in place from their gradients, with PyTorch's formulas.

    opt = make_optimizer({"type": "adam", "lr": 1e-3}, model.parameters)   # a ParamGroup, or (name, p, g) triples
    opt.step(lr)                   # lr from the schedule; updates params in place, then zeroes the grads
    state = opt.state_dict()       # plain arrays: {"step": 0-d, "m.net.layers.0.W": ..., ...}

An optimizer works on the flat buffers of its ParamGroup (netcli/params.py):
a model's parameters are one buffer per dtype, so a step is one pass over
each buffer, cut into one part per engine thread and, within a part, into
blocks of BLOCK entries whose parameter, gradient, state and scratch stay in
the cache across the update's passes. Each update is a short chain of
in-place ufuncs (``out=``) into a scratch block, so a step allocates nothing.
The gradients are zeroed after the step anyway, so an update may also
overwrite them (weight decay is added into the gradient in place).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, ClassVar, Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import backend as B
from .params import Param, ParamGroup
from .registry import OPTIMIZERS, register_optimizer

BLOCK = 1 << 14  # entries updated at once (64 KiB of float32 per array: the ~5 arrays of an Adam block fit in L2)


class OptimizerConfig(BaseModel):
    """Base of every optimizer's Config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    type: str
    lr: float = Field(1e-3, gt=0, description="base learning rate; the schedule scales it per step")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient (AdamW: decoupled decay)")


class Optimizer:
    Config: ClassVar[type[OptimizerConfig]]
    type_name: ClassVar[str]

    def __init__(self, config: OptimizerConfig, params: ParamGroup | Iterable[Param]):
        self.config = config
        self.group = params if isinstance(params, ParamGroup) else ParamGroup.of(params)
        self.t = 0  # steps taken
        self.state = {slot: [np.zeros_like(seg.data) for seg in self.group.segments] for slot in self.slots()}
        self._scratch: dict[np.dtype, list[np.ndarray]] = {}
        self._scratch_for(B.threads())

    def slots(self) -> tuple[str, ...]:
        """Names of the per-parameter state arrays (moments, momentum buffers)."""
        return ()

    def update(self, lr: float, p: np.ndarray, g: np.ndarray, tmp: np.ndarray, st: dict[str, np.ndarray]) -> None:
        """Update ``p`` in place from its gradient ``g``, entry by entry; ``tmp`` is scratch of p's shape.

        ``step`` passes 1-D contiguous blocks of a buffer, with the same blocks of g, tmp and the
        state, and may update the blocks of one buffer on separate threads.
        """
        raise NotImplementedError

    def _scratch_for(self, threads: int) -> dict[np.dtype, list[np.ndarray]]:
        """One scratch block per engine thread and dtype (made again only when the thread count changes)."""
        if not self._scratch or len(next(iter(self._scratch.values()))) != threads:
            sizes: dict[np.dtype, int] = {}
            for seg in self.group.segments:
                sizes[seg.data.dtype] = max(sizes.get(seg.data.dtype, 0), min(BLOCK, seg.data.size))
            self._scratch = {dtype: [np.empty(n, dtype) for _ in range(threads)] for dtype, n in sizes.items()}
        return self._scratch

    def step(self, lr: float) -> None:
        """Update every parameter in place with learning rate ``lr``, then zero the gradients."""
        self.t += 1
        scratch = self._scratch_for(B.threads())
        for i, seg in enumerate(self.group.segments):
            arrays = [seg.data, seg.grad, *(state[i] for state in self.state.values())]
            tmps = scratch[seg.data.dtype]

            def part(job, arrays=arrays, tmps=tmps):
                j, s = job
                for lo in range(s.start, s.stop, BLOCK):
                    p, g, *st = (a[lo:min(lo + BLOCK, s.stop)] for a in arrays)
                    self.update(lr, p, g, tmps[j][:len(p)], dict(zip(self.state, st)))

            B.parallel(part, list(enumerate(B.batch_chunks(seg.data, 2))))  # an Adam step: about two passes
        self.group.zero_grad()

    def _state_views(self) -> dict[str, np.ndarray]:
        """``slot.name`` -> the state of that parameter (a view into the slot's buffer)."""
        views = {}
        for slot, buffers in self.state.items():
            for seg, buf in zip(self.group.segments, buffers):
                for e in seg.entries:
                    views[f"{slot}.{e.name}"] = buf[e.offset:e.offset + e.size].reshape(e.shape)
        return views

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"step": np.array(self.t, dtype=np.int64)} | {k: v.copy() for k, v in self._state_views().items()}

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        """Restore the state from ``state_dict()``'s output; any missing, extra or misshapen key is an error."""
        views = self._state_views()
        expected = {"step": ()} | {k: v.shape for k, v in views.items()}
        missing = sorted(expected.keys() - d.keys())
        extra = sorted(d.keys() - expected.keys())
        shapes = [f"{k}: {np.shape(d[k])} != {s}" for k, s in expected.items() if k in d and np.shape(d[k]) != s]
        if missing or extra or shapes:
            raise ValueError(f"{self.type_name} optimizer state does not fit these parameters: "
                             f"missing {missing}, unexpected {extra}, wrong shapes {shapes}")
        self.t = int(d["step"])
        for k, v in views.items():
            np.copyto(v, d[k])


@functools.cache
def _blas(dtype: np.dtype) -> tuple[Callable, Callable]:
    """BLAS scal and axpy for dtype (9 passes over the arrays for an Adam step instead of 12: about 30% faster)."""
    return tuple(B.blas_funcs(("scal", "axpy"), dtype))


make_optimizer = OPTIMIZERS.build  # (spec: name | dict | Config, params) -> Optimizer


def _add_weight_decay(g: np.ndarray, p: np.ndarray, wd: float, tmp: np.ndarray) -> None:
    """g += wd * p (L2 regularisation folded into the gradient)."""
    if wd:
        np.multiply(p, wd, out=tmp)
        g += tmp


@register_optimizer("sgd")
class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum, as torch.optim.SGD:

        g += wd p;  buf = momentum buf + (1 - dampening) g  (buf = g on the first step)
        d = g + momentum buf if nesterov else buf;  p -= lr d
    """

    class Config(OptimizerConfig):
        type: Literal["sgd"] = "sgd"
        momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor (0: plain SGD)")
        dampening: float = Field(0.0, ge=0, le=1, description="scales the gradient added to the momentum buffer")
        nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0 and dampening 0)")

        @model_validator(mode="after")
        def _nesterov_needs_momentum(self):
            if self.nesterov and (self.momentum == 0 or self.dampening != 0):
                raise ValueError("nesterov needs momentum > 0 and dampening 0")
            return self

    def slots(self):
        return ("buf",) if self.config.momentum else ()

    def update(self, lr, p, g, tmp, st):
        c = self.config
        _add_weight_decay(g, p, c.weight_decay, tmp)
        d = g
        if c.momentum:
            buf = st["buf"]
            if self.t == 1:
                np.copyto(buf, g)
            else:
                buf *= c.momentum
                np.multiply(g, 1 - c.dampening, out=tmp)
                buf += tmp
            if c.nesterov:
                np.multiply(buf, c.momentum, out=tmp)
                g += tmp
            else:
                d = buf
        np.multiply(d, lr, out=tmp)
        p -= tmp


class _AdamConfig(OptimizerConfig):
    beta1: float = Field(0.9, ge=0, lt=1, description="decay of the running mean of gradients")
    beta2: float = Field(0.999, ge=0, lt=1, description="decay of the running mean of squared gradients")
    eps: float = Field(1e-8, gt=0, description="added to the root of the second moment")


class _AdamBase(Optimizer):
    """Adam's moment updates and bias-corrected step, shared by adam and adamw."""

    def __init__(self, config, params):
        super().__init__(config, params)
        for seg in self.group.segments:  # look BLAS up now (it imports scipy), not inside the first step
            _blas(seg.data.dtype)

    def slots(self):
        return ("m", "v")

    def adam_step(self, lr, p, g, tmp, m, v):
        c = self.config
        scal, axpy = _blas(p.dtype)  # x *= a and y += a x in one pass each, in place on 1-D arrays
        scal(c.beta1, m)  # m = beta1 m + (1 - beta1) g
        axpy(g, m, a=1 - c.beta1)
        scal(c.beta2, v)  # v = beta2 v + (1 - beta2) g^2
        np.multiply(g, g, out=tmp)
        axpy(tmp, v, a=1 - c.beta2)
        # torch: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). Multiplying top and bottom by
        # sqrt(bc2) gives the same value with one pass over the arrays fewer:
        #        p -= (lr sqrt(bc2)/bc1) * m / (sqrt(v) + eps sqrt(bc2))
        root_bc2 = math.sqrt(1 - c.beta2**self.t)
        np.sqrt(v, out=tmp)
        tmp += c.eps * root_bc2
        np.divide(m, tmp, out=tmp)
        axpy(tmp, p, a=-lr * root_bc2 / (1 - c.beta1**self.t))


@register_optimizer("adam")
class Adam(_AdamBase):
    """Adam with bias correction and L2 weight decay added to the gradient, as torch.optim.Adam."""

    class Config(_AdamConfig):
        type: Literal["adam"] = "adam"

    def update(self, lr, p, g, tmp, st):
        _add_weight_decay(g, p, self.config.weight_decay, tmp)
        self.adam_step(lr, p, g, tmp, st["m"], st["v"])


@register_optimizer("adamw")
class AdamW(_AdamBase):
    """Adam with decoupled weight decay, p *= 1 - lr wd before the Adam step, as torch.optim.AdamW."""

    class Config(_AdamConfig):
        type: Literal["adamw"] = "adamw"
        weight_decay: float = Field(0.01, ge=0, description="decoupled decay: p *= 1 - lr * weight_decay per step")

    def update(self, lr, p, g, tmp, st):
        if self.config.weight_decay:
            p *= 1 - lr * self.config.weight_decay
        self.adam_step(lr, p, g, tmp, st["m"], st["v"])


@register_optimizer("rmsprop")
class RMSprop(Optimizer):
    """RMSprop as torch.optim.RMSprop:

        g += wd p;  s = alpha s + (1 - alpha) g^2;  a = sqrt(s - gbar^2) (centered) or sqrt(s)
        p -= lr g / (a + eps), or with momentum buf = momentum buf + g / (a + eps);  p -= lr buf
    """

    class Config(OptimizerConfig):
        type: Literal["rmsprop"] = "rmsprop"
        lr: float = Field(1e-2, gt=0, description="base learning rate; the schedule scales it per step")
        alpha: float = Field(0.99, ge=0, lt=1, description="decay of the running mean of squared gradients")
        eps: float = Field(1e-8, gt=0, description="added to the root of the second moment")
        momentum: float = Field(0.0, ge=0, lt=1, description="momentum factor (0: none)")
        centered: bool = Field(False, description="divide by the gradient's variance estimate, not its raw second moment")

    def slots(self):
        c = self.config
        return ("sq",) + (("avg",) if c.centered else ()) + (("buf",) if c.momentum else ())

    def update(self, lr, p, g, tmp, st):
        c = self.config
        _add_weight_decay(g, p, c.weight_decay, tmp)
        sq = st["sq"]
        sq *= c.alpha  # s = alpha s + (1 - alpha) g^2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - c.alpha
        sq += tmp
        if c.centered:
            avg = st["avg"]
            avg *= c.alpha  # gbar = alpha gbar + (1 - alpha) g
            np.multiply(g, 1 - c.alpha, out=tmp)
            avg += tmp
            np.multiply(avg, avg, out=tmp)
            np.subtract(sq, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(sq, out=tmp)
        tmp += c.eps
        np.divide(g, tmp, out=tmp)  # g / (a + eps)
        if c.momentum:
            buf = st["buf"]
            buf *= c.momentum
            buf += tmp
            np.multiply(buf, lr, out=tmp)
        else:
            tmp *= lr
        p -= tmp
