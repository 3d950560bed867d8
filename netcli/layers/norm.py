"""Normalisation layers: BatchNorm (statistics over the batch) and LayerNorm (over each sample's features).

Both compute xhat = (x - mean) / sqrt(var + eps) and y = gamma * xhat + beta.
When the mean and variance come from x itself, the input gradient has to
flow through them too (means over the axes the statistics run over):

    dx = 1/sqrt(var + eps) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),   dxhat = dy * gamma
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer


@register_layer("batchnorm")
class BatchNorm(Layer):
    """Normalise each feature over the batch, with PyTorch's running statistics.

    Inputs (N, F) and (N, T, F) are normalised per feature F (the last axis,
    like dense), (N, C, H, W) per channel C over N, H and W. Training uses the
    batch's statistics and updates the running ones; eval uses the running ones.
    """

    class Config(LayerConfig):
        type: Literal["batchnorm"] = "batchnorm"
        momentum: float = Field(0.1, gt=0, le=1, description=(
            "weight of each batch in the running statistics: running = (1 - momentum) * running"
            " + momentum * batch (PyTorch's convention)"))
        eps: float = Field(1e-5, gt=0, description="added to the variance before the square root")
        affine: bool = Field(True, description="learn a per-feature scale gamma and shift beta")

    def build(self, in_shape):
        if len(in_shape) not in (1, 2, 3):
            raise ShapeError(f"batchnorm takes (F,), (T, F) or (C, H, W) inputs, got {in_shape}")
        # Every input is viewed as (M, F, P) and normalised over M and P: (N, C, H*W) for images,
        # (N, F, 1) and (N*T, F, 1) for features on the last axis. The per-feature sums are then
        # einsums over a contiguous array, several times faster than sum(axis=(0, 2, 3)).
        features = in_shape[0] if len(in_shape) == 3 else in_shape[-1]
        self.view = (-1, features, int(np.prod(in_shape[1:])) if len(in_shape) == 3 else 1)
        if self.config.affine:
            self.add_param("gamma", B.ones((features,)))
            self.add_param("beta", B.zeros((features,)))
        self.buffers["running_mean"] = B.zeros((features,))
        self.buffers["running_var"] = B.ones((features,))
        return in_shape

    def forward(self, x, training):
        x3 = x.reshape(self.view)  # (M, F, P)
        if training:
            count = x3.shape[0] * x3.shape[2]
            mean = np.einsum("mfp->f", x3) / count  # (F,)
            xc = x3 - mean[:, None]
            var = np.einsum("mfp,mfp->f", xc, xc) / count
            self._update_running(mean, var, count)
        else:
            xc = x3 - self.buffers["running_mean"][:, None]
            var = self.buffers["running_var"]
        self.training = training
        self.inv_std = 1 / np.sqrt(var + self.config.eps)  # (F,)
        xc *= self.inv_std[:, None]  # in place (xc is a fresh array): these passes are memory-bound
        self.xhat = xc  # (M, F, P)
        if not self.config.affine:
            return self.xhat.reshape(x.shape)
        y = self.xhat * self.params["gamma"][:, None]
        y += self.params["beta"][:, None]
        return y.reshape(x.shape)

    def _update_running(self, mean, var, count):
        m = self.config.momentum
        unbiased = var * (count / max(count - 1, 1))  # the running variance is unbiased, as in PyTorch
        for name, batch in (("running_mean", mean), ("running_var", unbiased)):
            running = self.buffers[name]
            running += m * (batch - running)  # = (1 - m) * running + m * batch, in place

    def backward(self, dy):
        dy3 = dy.reshape(self.view)  # (M, F, P)
        sum_dy = np.einsum("mfp->f", dy3)  # (F,)
        sum_dy_xhat = np.einsum("mfp,mfp->f", dy3, self.xhat)
        if self.config.affine:
            self.grads["gamma"] += sum_dy_xhat
            self.grads["beta"] += sum_dy
        scale = (self.inv_std * self.params["gamma"] if self.config.affine else self.inv_std)[:, None]  # (F, 1)
        if not self.training:  # running statistics are constants
            return (dy3 * scale).reshape(dy.shape)
        # The module docstring's formula with gamma constant over the reduced axes, folded in:
        # dx = gamma / std * (dy - (sum(dy) + xhat * sum(dy * xhat)) / M), in place on one fresh array
        count = dy3.shape[0] * dy3.shape[2]
        dx = self.xhat * (-sum_dy_xhat / count)[:, None]
        dx += dy3
        dx -= (sum_dy / count)[:, None]
        dx *= scale
        return dx.reshape(dy.shape)

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({}, (4,), batch=5),
            GradCase({"affine": False}, (3,), batch=4),
            GradCase({}, (3, 4, 5), batch=2),
            GradCase({}, (3, 4), batch=3, note="sequence: per feature of the last axis"),
            GradCase({}, (4,), batch=5, training=False),
            GradCase({}, (3, 4, 5), batch=2, training=False),
        ]


@register_layer("layernorm")
class LayerNorm(Layer):
    """Normalise each sample over its last ``normalized_dims`` axes, with a per-entry gamma and beta."""

    class Config(LayerConfig):
        type: Literal["layernorm"] = "layernorm"
        normalized_dims: int = Field(1, gt=0, description="how many trailing axes to normalise over")
        eps: float = Field(1e-5, gt=0, description="added to the variance before the square root")
        affine: bool = Field(True, description="learn a scale gamma and shift beta over the normalised axes")

    def build(self, in_shape):
        k = self.config.normalized_dims
        if k > len(in_shape):
            raise ShapeError(f"layernorm over the last {k} axes needs an input with at least {k}, got {in_shape}")
        self.axes = tuple(range(-k, 0))
        if self.config.affine:
            self.add_param("gamma", B.ones(in_shape[-k:]))
            self.add_param("beta", B.zeros(in_shape[-k:]))
        return in_shape

    def forward(self, x, training):
        mean = x.mean(axis=self.axes, keepdims=True)  # (N, ..., 1)
        xc = x - mean
        self.inv_std = 1 / np.sqrt(np.square(xc).mean(axis=self.axes, keepdims=True) + self.config.eps)
        xc *= self.inv_std  # in place: xc is a fresh array
        self.xhat = xc
        if not self.config.affine:
            return self.xhat
        return self.xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, dy):
        xhat = self.xhat
        if self.config.affine:
            lead = tuple(range(dy.ndim - len(self.axes)))  # batch and any other leading axes
            self.grads["gamma"] += (dy * xhat).sum(axis=lead)
            self.grads["beta"] += dy.sum(axis=lead)
            dy = dy * self.params["gamma"]  # now dL/dxhat
        return self.inv_std * (dy - dy.mean(axis=self.axes, keepdims=True)
                               - xhat * (dy * xhat).mean(axis=self.axes, keepdims=True))

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({}, (6,)),
            GradCase({}, (3, 5), batch=2),
            GradCase({"normalized_dims": 2}, (3, 4), batch=2),
            GradCase({"affine": False}, (5,)),
        ]
