"""Pooling over NCHW inputs: max and average over sliding windows, and global average.

Max pooling sends each window's gradient to its FIRST maximum in row-major
window order, as PyTorch does, so inputs with exact ties (MNIST's zero
background) get the same, well-defined gradient in both.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer
from .conv import NonNegPair, PosPair, out_size, pair


class PoolConfig(LayerConfig):
    size: PosPair = Field(2, description="window: k or [kh, kw]")
    stride: PosPair | None = Field(None, description="step between windows: s or [sh, sw]; default: the window size")
    padding: NonNegPair = Field(0, description="implicit padding on each side: p or [ph, pw], at most half the window")


class Pool2D(Layer):
    """Window geometry and padding shared by max and average pooling."""

    pad_value = 0.0

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ShapeError(f"{self.type_name} needs (C, H, W) inputs, got {in_shape}")
        c, h, w = in_shape
        cfg = self.config
        (kh, kw), (ph, pw) = pair(cfg.size), pair(cfg.padding)
        sh, sw = pair(cfg.stride or cfg.size)
        if 2 * ph > kh or 2 * pw > kw:
            raise ShapeError(f"{self.type_name} padding {(ph, pw)} is more than half the window {(kh, kw)}")
        if kh > h + 2 * ph or kw > w + 2 * pw:
            raise ShapeError(f"{self.type_name} window {(kh, kw)} is larger than the padded input "
                             f"{(h + 2 * ph, w + 2 * pw)} (input {in_shape})")
        self.pads = ph, pw
        self.geometry = kh, kw, sh, sw, out_size(h + 2 * ph, kh, sh), out_size(w + 2 * pw, kw, sw)
        return c, self.geometry[4], self.geometry[5]

    def pad(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N, C, H + 2ph, W + 2pw), filled with ``pad_value``; x itself when no padding."""
        ph, pw = self.pads
        if ph == pw == 0:
            return x
        n, c, h, w = x.shape
        xp = B.full((n, c, h + 2 * ph, w + 2 * pw), self.pad_value, dtype=x.dtype)
        xp[:, :, ph:ph + h, pw:pw + w] = x
        return xp

    def unpad(self, dxp: np.ndarray) -> np.ndarray:
        ph, pw = self.pads
        return dxp[:, :, ph:dxp.shape[2] - ph, pw:dxp.shape[3] - pw]

    def offsets(self):
        """Yield (k, slice of the padded input read at window offset k) for k = 0 .. kh*kw-1, row-major."""
        kh, kw, sh, sw, oh, ow = self.geometry
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, (slice(None), slice(None), slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw))


@register_layer("maxpool2d")
class MaxPool2D(Pool2D):
    """Maximum over each window of (C, H, W) images; ties send the gradient to the first maximum, as in PyTorch."""

    class Config(PoolConfig):
        type: Literal["maxpool2d"] = "maxpool2d"

    pad_value = -np.inf
    use_fast_path = True  # tests turn it off to compare the two paths

    def forward(self, x, training):
        kh, kw, sh, sw, oh, ow = self.geometry
        self.x_shape = x.shape
        self.fast = (self.use_fast_path and (kh, kw, sh, sw, *self.pads) == (2, 2, 2, 2, 0, 0)
                     and x.shape[2] % 2 == x.shape[3] % 2 == 0)
        if self.fast:
            return self._forward_2x2(x)
        xp = self.pad(x)  # (N, C, Hp, Wp)
        offsets = self.offsets()
        _, first = next(offsets)
        y = xp[first].copy()  # (N, C, OH, OW) running maximum over the window offsets seen so far
        self.argmax = np.zeros(y.shape, dtype=np.int32)  # (N, C, OH, OW) offset k = i*kw + j of the maximum
        for k, window_slice in offsets:
            v = xp[window_slice]
            larger = v > y  # strictly: a tie keeps the earlier maximum (first in row-major order)
            np.copyto(y, v, where=larger)
            np.copyto(self.argmax, k, where=larger)
        return y

    def backward(self, dy):
        if self.fast:
            return self._backward_2x2(dy)
        n, c, h, w = self.x_shape
        ph, pw = self.pads
        dxp = B.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
        for k, window_slice in self.offsets():  # windows overlap when stride < size, hence +=
            dxp[window_slice] += np.where(self.argmax == k, dy, 0)
        return self.unpad(dxp)

    # Fast path for the common 2x2 / stride 2 / even H, W case: a reshape splits each window into
    # its four entries a b / c d, and pairwise maxima replace the running maximum and argmax of the
    # general path (4-10x faster here). tests/test_layers.py checks it against the general path.
    def _forward_2x2(self, x):
        n, c, h, w = x.shape
        self.x6 = x.reshape(n, c, h // 2, 2, w // 2, 2)  # (N, C, OH, 2, OW, 2)
        y = self.y = B.empty((n, c, h // 2, w // 2), dtype=x.dtype)  # (N, C, OH, OW)

        def chunk(s):  # pairwise maxima, written into y[s]
            x6 = self.x6[s]
            np.maximum(x6[:, :, :, 0, :, 0], x6[:, :, :, 0, :, 1], out=y[s])
            np.maximum(y[s], x6[:, :, :, 1, :, 0], out=y[s])
            np.maximum(y[s], x6[:, :, :, 1, :, 1], out=y[s])

        B.parallel(chunk, B.batch_chunks(x))
        return y

    def _backward_2x2(self, dy):
        dx6 = B.empty(self.x6.shape, dtype=dy.dtype)  # (N, C, OH, 2, OW, 2)

        def chunk(s):
            x6, y, dys, free = self.x6[s], self.y[s], dy[s], np.ones(dy[s].shape, dtype=bool)  # free: not yet routed
            for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # row-major: the first maximum takes it
                hit = x6[:, :, :, i, :, j] == y
                hit &= free
                np.multiply(dys, hit, out=dx6[s][:, :, :, i, :, j])
                free ^= hit  # in-place ops: these loops are short and strided

        B.parallel(chunk, B.batch_chunks(dx6))
        return dx6.reshape(self.x_shape)

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"size": 2}, (2, 4, 6), batch=2, note="fast 2x2 path"),
            GradCase({"size": 2}, (2, 5, 5), batch=2, note="odd size: general path"),
            GradCase({"size": [2, 3], "stride": [1, 2]}, (2, 5, 7), batch=2),
            GradCase({"size": 3, "stride": 2, "padding": 1}, (1, 6, 5), batch=2),
        ]


@register_layer("avgpool2d")
class AvgPool2D(Pool2D):
    """Mean over each window; zero padding counts towards the mean (PyTorch's default)."""

    class Config(PoolConfig):
        type: Literal["avgpool2d"] = "avgpool2d"

    def forward(self, x, training):
        kh, kw = self.geometry[:2]
        xp = self.pad(x)  # (N, C, Hp, Wp)
        self.padded_shape = xp.shape
        y = sum(xp[window_slice] for _, window_slice in self.offsets())  # (N, C, OH, OW)
        return y / (kh * kw)

    def backward(self, dy):
        kh, kw = self.geometry[:2]
        dxp = B.zeros(self.padded_shape, dtype=dy.dtype)
        share = dy / (kh * kw)  # (N, C, OH, OW)
        for _, window_slice in self.offsets():
            dxp[window_slice] += share
        return self.unpad(dxp)

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"size": 2}, (2, 4, 6), batch=2),
            GradCase({"size": [3, 2], "stride": [2, 1]}, (2, 7, 5), batch=2),
            GradCase({"size": 3, "stride": 2, "padding": 1}, (1, 6, 5), batch=2),
        ]


@register_layer("global_avg_pool")
class GlobalAvgPool(Layer):
    """(N, C, H, W) -> (N, C): the mean of each channel."""

    class Config(LayerConfig):
        type: Literal["global_avg_pool"] = "global_avg_pool"

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ShapeError(f"global_avg_pool needs (C, H, W) inputs, got {in_shape}")
        return in_shape[:1]

    def forward(self, x, training):
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        _, h, w = self.in_shape
        return np.broadcast_to((dy / (h * w))[:, :, None, None], (len(dy), *self.in_shape)).copy()

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (3, 4, 5), batch=2)]
