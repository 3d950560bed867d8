"""Dense (fully connected) layer over the last axis: y = x W + b."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from . import init as I
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer


@register_layer("dense")
class Dense(Layer):
    """Fully connected: y = x W + b over the last axis, (..., F) -> (..., units)."""

    class Config(LayerConfig):
        type: Literal["dense"] = "dense"
        units: int = Field(gt=0, description="output features")
        bias: bool = Field(True, description="learn an additive bias")
        init: Literal[I.INITS] = Field(  # type: ignore[valid-type]
            "auto", description="weight init; auto = He before relu/leaky_relu/gelu, else Glorot uniform")

    reads_next_layer = True
    next_layer: str | None = None  # set by the container: the type of the following layer (for init: auto)

    def build(self, in_shape):
        if len(in_shape) < 1:
            raise ShapeError("dense needs at least one feature axis")
        fan_in, units = in_shape[-1], self.config.units
        init = I.resolve(self.config.init, self.next_layer)
        self.add_param("W", I.initialise(init, (fan_in, units), fan_in, units, self.rng))  # (F, U)
        if self.config.bias:
            self.add_param("b", B.zeros((units,)))  # (U,)
        return (*in_shape[:-1], units)

    def forward(self, x, training):
        self.x = x  # (N, ..., F)
        F, U = self.params["W"].shape
        x2, y = x.reshape(-1, F), B.empty((*x.shape[:-1], U), dtype=x.dtype)
        y2 = y.reshape(-1, U)  # (M, U)

        def chunk(s):  # rows s of y, on one engine thread
            np.matmul(x2[s], self.params["W"], out=y2[s])
            if self.config.bias:
                y2[s] += self.params["b"]

        B.parallel(chunk, B.batch_chunks(x2, U / 32))
        return y

    def backward(self, dy):
        F, U = self.params["W"].shape
        x2, dy2 = self.x.reshape(-1, F), dy.reshape(-1, U)  # (M, F), (M, U)
        dx = B.empty(self.x.shape, dtype=dy.dtype) if self.needs_input_grad else None
        dW = self.grads["W"]

        def chunk(part):  # rows f of dW (every sample: no partial sums) and rows s of dx
            f, s = part
            dW[f] += x2[:, f].T @ dy2  # (F_part, U)
            if dx is not None:
                np.matmul(dy2[s], self.params["W"].T, out=dx.reshape(-1, F)[s])

        rows = B.batch_chunks(x2, U / 32 * (2 if dx is not None else 1))  # one or two matmuls
        B.parallel(chunk, list(zip(B.even_slices(F, len(rows)), rows)))
        if self.config.bias:
            self.grads["b"] += dy2.sum(axis=0)
        return dx  # (N, ..., F)

    def flops(self):
        lead = int(np.prod(self.in_shape[:-1])) if len(self.in_shape) > 1 else 1
        return 2 * lead * self.params["W"].size

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"units": 4}, (5,)),
            GradCase({"units": 3, "bias": False}, (6,)),
            GradCase({"units": 2}, (3, 4), note="applied over the last axis of a sequence"),
        ]
