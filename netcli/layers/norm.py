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
from .. import distributed as D
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer


@register_layer("batchnorm")
class BatchNorm(Layer):
    """Normalise each feature over the batch, with PyTorch's running statistics.

    Inputs (N, F) and (N, T, F) are normalised per feature F (the last axis,
    like dense), (N, C, H, W) per channel C over N, H and W. Training uses the
    batch's statistics and updates the running ones; eval uses the running ones.
    Under MPI the statistics are those of the global batch: each rank's sums are
    summed over the ranks (distributed.batch_sums), so N ranks equal one process.
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
        per_sample = self.view[2] if len(in_shape) == 3 else (in_shape[0] if len(in_shape) == 2 else 1)
        self.min_train_batch = 2 if per_sample == 1 else 1  # one value per feature has no variance
        if self.config.affine:
            self.add_param("gamma", B.ones((features,)))
            self.add_param("beta", B.zeros((features,)))
        self.buffers["running_mean"] = B.zeros((features,))
        self.buffers["running_var"] = B.ones((features,))
        return in_shape

    def forward(self, x, training):
        x3 = x.reshape(self.view)  # (M, F, P)
        chunks = B.batch_chunks(x3)  # each pass over x runs on the engine's threads, in parts of M
        xc = B.empty(x3.shape, dtype=x.dtype)
        if training:
            count = D.global_rows(x3.shape[0]) * x3.shape[2]
            if count < 2:  # the output would be beta, the input gradient 0, the running variance shrunk
                raise ValueError(f"batchnorm: a training batch needs more than one value per feature, got "
                                 f"input {x.shape} (set data.drop_last: true)")
            mean = D.batch_sums(sum(B.parallel(lambda s: np.einsum("mfp->f", x3[s]), chunks))) / count  # (F,)

            def center(s):  # xc = x - mean, and its share of the sum of squares
                np.subtract(x3[s], mean[:, None], out=xc[s])
                return np.einsum("mfp,mfp->f", xc[s], xc[s])

            var = D.batch_sums(sum(B.parallel(center, chunks))) / count
            self._update_running(mean, var, count)
        else:
            var = self.buffers["running_var"]
            B.parallel(lambda s: np.subtract(x3[s], self.buffers["running_mean"][:, None], out=xc[s]), chunks)
        self.training = training
        self.inv_std = 1 / np.sqrt(var + self.config.eps)  # (F,)
        self.xhat = xc  # (M, F, P), normalised in place below: these passes are memory-bound
        y = xc if not self.config.affine else B.empty(x3.shape, dtype=x.dtype)

        def normalise(s):
            xc[s] *= self.inv_std[:, None]
            if self.config.affine:
                np.multiply(xc[s], self.params["gamma"][:, None], out=y[s])
                y[s] += self.params["beta"][:, None]

        B.parallel(normalise, chunks)
        return y.reshape(x.shape)

    def _update_running(self, mean, var, count):
        m = self.config.momentum
        unbiased = var * (count / max(count - 1, 1))  # the running variance is unbiased, as in PyTorch
        for name, batch in (("running_mean", mean), ("running_var", unbiased)):
            running = self.buffers[name]
            running += m * (batch - running)  # = (1 - m) * running + m * batch, in place

    def backward(self, dy):
        dy3 = dy.reshape(self.view)  # (M, F, P)
        chunks = B.batch_chunks(dy3)
        parts = B.parallel(lambda s: (np.einsum("mfp->f", dy3[s]), np.einsum("mfp,mfp->f", dy3[s], self.xhat[s])),
                           chunks)
        sum_dy, sum_dy_xhat = sum(p[0] for p in parts), sum(p[1] for p in parts)  # (F,), (F,)
        if self.config.affine:
            self.grads["gamma"] += sum_dy_xhat
            self.grads["beta"] += sum_dy
        scale = (self.inv_std * self.params["gamma"] if self.config.affine else self.inv_std)[:, None]  # (F, 1)
        dx = B.empty(dy3.shape, dtype=dy.dtype)
        if not self.training:  # running statistics are constants
            B.parallel(lambda s: np.multiply(dy3[s], scale, out=dx[s]), chunks)
            return dx.reshape(dy.shape)
        # The module docstring's formula with gamma constant over the reduced axes, folded in:
        # dx = gamma / std * (dy - (sum(dy) + xhat * sum(dy * xhat)) / M), in place on one fresh array
        # (sums and M over the global batch under MPI; gamma and beta above keep this rank's share)
        count = D.global_rows(dy3.shape[0]) * dy3.shape[2]
        sum_dy, sum_dy_xhat = D.batch_sums(np.stack([sum_dy, sum_dy_xhat]), gradient=True)

        def chunk(s):
            np.multiply(self.xhat[s], (-sum_dy_xhat / count)[:, None], out=dx[s])
            dx[s] += dy3[s]
            dx[s] -= (sum_dy / count)[:, None]
            dx[s] *= scale

        B.parallel(chunk, chunks)
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

    # Samples are independent: each pass runs on the engine's threads, over parts of the batch.
    def forward(self, x, training):
        self.xhat = B.empty(x.shape, dtype=x.dtype)
        self.inv_std = B.empty((*x.shape[:-len(self.axes)], *(1,) * len(self.axes)), dtype=x.dtype)  # (N, ..., 1)
        y = self.xhat if not self.config.affine else B.empty(x.shape, dtype=x.dtype)

        def chunk(s):
            xc = np.subtract(x[s], x[s].mean(axis=self.axes, keepdims=True), out=self.xhat[s])
            self.inv_std[s] = 1 / np.sqrt(np.square(xc).mean(axis=self.axes, keepdims=True) + self.config.eps)
            xc *= self.inv_std[s]  # now xhat
            if self.config.affine:
                np.multiply(xc, self.params["gamma"], out=y[s])
                y[s] += self.params["beta"]

        B.parallel(chunk, B.batch_chunks(x, 8))
        return y

    def backward(self, dy):
        dx = B.empty(dy.shape, dtype=dy.dtype)
        lead = tuple(range(dy.ndim - len(self.axes)))  # batch and any other leading axes

        def chunk(s):
            xhat, g, grads = self.xhat[s], dy[s], None
            if self.config.affine:
                grads = (g * xhat).sum(axis=lead), g.sum(axis=lead)  # this part's dgamma, dbeta
                g = g * self.params["gamma"]  # now dL/dxhat
            dx[s] = self.inv_std[s] * (g - g.mean(axis=self.axes, keepdims=True)
                                       - xhat * (g * xhat).mean(axis=self.axes, keepdims=True))
            return grads

        parts = B.parallel(chunk, B.batch_chunks(dy, 8))
        if self.config.affine:
            self.grads["gamma"] += sum(p[0] for p in parts)
            self.grads["beta"] += sum(p[1] for p in parts)
        return dx

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({}, (6,)),
            GradCase({}, (3, 5), batch=2),
            GradCase({"normalized_dims": 2}, (3, 4), batch=2),
            GradCase({"affine": False}, (5,)),
        ]
