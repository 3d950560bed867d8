"""Activations as layers: sigmoid, relu, leaky_relu, tanh, gelu, identity, softmax.

Elementwise activations share one base: ``forward`` caches ``x`` and
``y = f(x)``, ``backward`` multiplies ``dy`` by ``f'(x)``, written from
whichever of ``x`` and ``y`` is cheaper. Softmax couples the entries of its
last axis and has its own backward.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, register_layer

_CASES = [GradCase({}, (7,)), GradCase({}, (2, 3, 4), batch=2)]


class Elementwise(Layer):
    """y = f(x) entry by entry; dL/dx = dL/dy * f'(x).

    Entries are independent: large inputs are cut into parts of the batch, one per engine thread,
    each written in place into the output.
    """

    passes: ClassVar[float] = 4  # work per entry in passes over it (exp, erf, ...): how finely to split

    def f(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write f(x) into ``out`` (x's shape and dtype)."""
        raise NotImplementedError

    def df(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """f'(x), given x and y = f(x)."""
        raise NotImplementedError

    def forward(self, x, training):
        self.x, self.y, self.chunks = x, B.empty(x.shape, dtype=x.dtype), B.batch_chunks(x, self.passes)
        B.parallel(lambda s: self.f(x[s], self.y[s]), self.chunks)
        return self.y

    def backward(self, dy):
        dx = B.empty(dy.shape, dtype=dy.dtype)
        B.parallel(lambda s: np.multiply(dy[s], self.df(self.x[s], self.y[s]), out=dx[s]), self.chunks)
        return dx

    @classmethod
    def grad_cases(cls):
        return _CASES


@register_layer("identity")
class Identity(Layer):
    """y = x, unchanged (a placeholder, e.g. to switch an activation off)."""

    class Config(LayerConfig):
        type: Literal["identity"] = "identity"

    def forward(self, x, training):
        return x

    def backward(self, dy):
        return dy

    @classmethod
    def grad_cases(cls):
        return _CASES


@register_layer("sigmoid")
class Sigmoid(Elementwise):
    """y = 1 / (1 + exp(-x)), entry by entry."""

    class Config(LayerConfig):
        type: Literal["sigmoid"] = "sigmoid"

    def f(self, x, out):
        from scipy import special  # here, not at the top: scipy.special takes half a second to import

        special.expit(x, out=out)  # 1 / (1 + exp(-x)) without overflow for large |x|

    def df(self, x, y):
        return y * (1 - y)


@register_layer("tanh")
class Tanh(Elementwise):
    """y = tanh(x), entry by entry."""

    class Config(LayerConfig):
        type: Literal["tanh"] = "tanh"

    def f(self, x, out):
        np.tanh(x, out=out)

    def df(self, x, y):
        return 1 - y * y


@register_layer("relu")
class ReLU(Elementwise):
    """y = max(x, 0), entry by entry."""

    class Config(LayerConfig):
        type: Literal["relu"] = "relu"

    passes = 1  # the hottest elementwise pass of a CNN, and the cheapest

    def f(self, x, out):
        np.maximum(x, 0, out=out)

    def df(self, x, y):
        return x > 0


@register_layer("leaky_relu")
class LeakyReLU(Elementwise):
    """y = x for x >= 0, negative_slope * x below, entry by entry."""

    class Config(LayerConfig):
        type: Literal["leaky_relu"] = "leaky_relu"
        negative_slope: float = Field(0.01, ge=0, description="slope for x < 0 (PyTorch's default 0.01)")

    def f(self, x, out):
        out[...] = np.where(x > 0, x, x * self.config.negative_slope)

    def df(self, x, y):
        return np.where(x > 0, 1.0, self.config.negative_slope).astype(x.dtype)

    @classmethod
    def grad_cases(cls):
        return [*_CASES, GradCase({"negative_slope": 0.2}, (5,))]


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


@register_layer("gelu")
class GELU(Elementwise):
    """x * Phi(x) with Phi the standard normal CDF; ``approximate: tanh`` as in PyTorch."""

    class Config(LayerConfig):
        type: Literal["gelu"] = "gelu"
        approximate: Literal["none", "tanh"] = Field(
            "none", description="none: exact erf form; tanh: the tanh approximation (as torch.nn.GELU)")

    # f and df keep no state (chunks of a batch run on several threads): df recomputes Phi or the tanh
    def f(self, x, out):
        if self.config.approximate == "tanh":
            np.multiply(0.5 * x, 1 + self._tanh(x), out=out)
        else:
            np.multiply(x, self._cdf(x), out=out)

    def df(self, x, y):
        if self.config.approximate == "tanh":
            t = self._tanh(x)
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # phi(x)
        return self._cdf(x) + x * pdf

    @staticmethod
    def _tanh(x):
        return np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))

    @staticmethod
    def _cdf(x):
        from scipy import special

        return 0.5 * (1 + special.erf(x / math.sqrt(2)))  # Phi(x)

    @classmethod
    def grad_cases(cls):
        return [*_CASES, GradCase({"approximate": "tanh"}, (7,)), GradCase({"approximate": "tanh"}, (3, 4))]


@register_layer("softmax")
class Softmax(Layer):
    """Softmax over the last axis."""

    class Config(LayerConfig):
        type: Literal["softmax"] = "softmax"

    def forward(self, x, training):
        e = np.exp(x - x.max(axis=-1, keepdims=True))  # shifted so exp cannot overflow
        self.y = e / e.sum(axis=-1, keepdims=True)
        return self.y

    def backward(self, dy):
        # dx = J^T dy with J = diag(y) - y y^T, without forming J
        y = self.y
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (6,)), GradCase({}, (3, 5), batch=2)]
