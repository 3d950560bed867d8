"""Inverted dropout: zero each entry with probability ``rate`` and scale the rest by 1/(1 - rate).

Scaling at train time keeps the expected output equal to the input, so eval
mode is the identity. The mask is drawn from the layer's generator (for the
global batch under MPI, each rank keeping its rows: see distributed.draw).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import distributed as D
from .base import GradCase, Layer, LayerConfig, register_layer


@register_layer("dropout")
class Dropout(Layer):
    """Zero each entry with probability rate while training and scale the rest by 1 / (1 - rate); identity in eval."""

    class Config(LayerConfig):
        type: Literal["dropout"] = "dropout"
        rate: float = Field(0.5, ge=0, lt=1, description="probability of zeroing an entry during training")

    mask: np.ndarray | None = None  # (N, ...) scaled keep-mask of the last training forward, None in eval

    def forward(self, x, training):
        rate = self.config.rate
        if not training or rate == 0:
            self.mask = None
            return x
        keep = D.draw(lambda shape: self.rng.random(shape, dtype=x.dtype), x.shape) >= rate  # (N, ...) True w.p. 1 - rate
        self.mask = keep * x.dtype.type(1 / (1 - rate))
        return x * self.mask

    def backward(self, dy):
        return dy if self.mask is None else dy * self.mask

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"rate": 0.3}, (10,)),
            GradCase({"rate": 0.5}, (3, 4, 4), batch=2),
            GradCase({"rate": 0.5}, (10,), training=False, note="eval: identity"),
        ]
