"""Position encodings added to a (N, T, D) sequence: fixed sinusoids or a learned table."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer


def sinusoids(T: int, D: int, base: float = 10000.0) -> np.ndarray:
    """(T, D) table of Vaswani et al.: PE[t, 2i] = sin(t / base^(2i/D)), PE[t, 2i+1] = cos(same)."""
    t = np.arange(T)[:, None]  # (T, 1)
    angle = t / base ** (np.arange(0, D, 2) / D)  # (T, ceil(D/2))
    pe = np.empty((T, D))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : D // 2])
    return pe


def sequence_shape(name: str, in_shape) -> tuple[int, int]:
    """(T, D) of a sequence input shape, or a ShapeError naming the layer."""
    if len(in_shape) != 2:
        raise ShapeError(f"{name} needs (T, D) sequences, got {in_shape}")
    return in_shape


@register_layer("sinusoidal_position")
class SinusoidalPosition(Layer):
    """y = x + PE[:T], the fixed sinusoidal encoding (nothing learned)."""

    class Config(LayerConfig):
        type: Literal["sinusoidal_position"] = "sinusoidal_position"
        base: float = Field(10000.0, gt=1, description="wavelengths run from 2*pi to base*2*pi")

    def build(self, in_shape):
        T, D = sequence_shape("sinusoidal_position", in_shape)
        self.pe = B.asarray(sinusoids(T, D, self.config.base))  # (T, D)
        return in_shape

    def forward(self, x, training):
        return x + self.pe[: x.shape[1]].astype(x.dtype, copy=False)

    def backward(self, dy):
        return dy

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (5, 6)), GradCase({"base": 100.0}, (3, 5))]


@register_layer("learned_position")
class LearnedPosition(Layer):
    """y = x + P[:T] with P a learned (max_len, D) table."""

    class Config(LayerConfig):
        type: Literal["learned_position"] = "learned_position"
        max_len: int | None = Field(None, gt=0, description="rows of the table; default: the input length T")

    def build(self, in_shape):
        T, D = sequence_shape("learned_position", in_shape)
        max_len = self.config.max_len or T
        if max_len < T:
            raise ShapeError(f"sequence length {T} exceeds max_len {max_len}")
        self.add_param("P", B.asarray(0.02 * self.rng.standard_normal((max_len, D))))  # (max_len, D)
        return in_shape

    def forward(self, x, training):
        self.T = x.shape[1]
        return x + self.params["P"][: self.T]

    def backward(self, dy):
        self.grads["P"][: self.T] += dy.sum(axis=0)  # rows past T get no gradient
        return dy

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (4, 3)), GradCase({"max_len": 7}, (5, 2), note="table longer than the sequence")]
