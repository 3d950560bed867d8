"""2-D convolution (cross-correlation, as in every framework) via im2col and one matmul.

The interface is NCHW with weights (O, C, kh, kw), as in PyTorch. Inside,
the padded input is laid out channel-last (NHWC): each patch of the im2col
matrix is then ``kh`` runs of ``kw * C`` contiguous numbers, which makes
building it several times faster than gathering (C, kh, kw) patches from NCHW.

    forward:  cols (N*OH*OW, kh*kw*C) @ Wmat (kh*kw*C, O) -> y (N*OH*OW, O)
    backward: dWmat = cols^T @ dy2,  dx = col2im(dy2 @ Wmat^T), one kernel offset at a time

Outputs and input gradients are returned as contiguous NCHW arrays: the
transposing copy is cheap next to the matmul, and it spares every later
elementwise op from mixing memory layouts (several times slower).

The patch matrix is kh*kw times the input: at batch 256 it outgrows the
cache, and every pass over it (build, matmul, and the weight gradient in
backward) goes to memory. So the batch is taken in micro-batches whose
patches stay under ``micro_batch_bytes`` (about 20% faster at batch 256),
at least one per engine thread: the micro-batches run in parallel, each with
its own share of the weight gradient, summed at the end.

With few input channels (an image's 1 or 3) those runs are a few numbers
long and the copy crawls. Then the layer uses Caffe's channel-first layout,
built by one block copy per kernel offset, and needs no transposes at all
(2.5-3x faster for MNIST's first conv; slower from about 8 channels):

    forward:  Wmat (O, C*kh*kw) @ cols (N, C*kh*kw, OH*OW) -> y (N, O, OH*OW), already NCHW
    backward: dWmat = sum_n dy_n @ cols_n^T,  dx = col2im(Wmat^T @ dy)

tests/test_layers.py checks both layouts against a naive loop.
"""
from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided
from pydantic import Field, model_validator

from .. import backend as B
from . import init as I
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosPair = PosInt | Annotated[list[PosInt], Field(min_length=2, max_length=2)]  # k or [kh, kw]
NonNegPair = NonNegInt | Annotated[list[NonNegInt], Field(min_length=2, max_length=2)]


def pair(v: int | list[int]) -> tuple[int, int]:
    """An int or a pair -> a (height, width) pair."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def out_size(size: int, kernel: int, stride: int) -> int:
    """Output length of a window of ``kernel`` sliding by ``stride`` over ``size`` (padding included)."""
    return (size - kernel) // stride + 1


def im2col(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> np.ndarray:
    """Padded NHWC input (N, Hp, Wp, C) -> patches (N*OH*OW, kh*kw*C), each in (kh, kw, C) order."""
    n, _, _, c = xp.shape
    s_n, s_h, s_w, s_c = xp.strides
    windows = as_strided(xp, (n, oh, ow, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h, s_w, s_c), writeable=False)
    return windows.reshape(n * oh * ow, kh * kw * c)  # the one copy


def col2im_matmul(dy2: np.ndarray, w: np.ndarray, padded_shape: tuple[int, ...], sh: int, sw: int,
                  oh: int, ow: int) -> np.ndarray:
    """col2im(dy2 @ Wmat^T): the gradient of the padded input (N, Hp, Wp, C).

    dy2 is (N*OH*OW, O) and w is (O, C, kh, kw). Rather than build the large
    (N*OH*OW, kh*kw*C) patch gradient and scatter it, take one kernel offset
    at a time: the patch entries read at offset (i, j) get dy2 @ w[:, :, i, j],
    added back to the input positions they were read from.
    """
    n, _, _, c = padded_shape
    _, _, kh, kw = w.shape
    dxp = B.zeros(padded_shape, dtype=dy2.dtype)
    for i in range(kh):  # windows overlap when stride < kernel, hence +=
        for j in range(kw):
            dxp[:, i:i + sh * oh:sh, j:j + sw * ow:sw] += (dy2 @ w[:, :, i, j]).reshape(n, oh, ow, c)
    return dxp


def im2col_channel_first(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> np.ndarray:
    """Padded NCHW input (N, C, Hp, Wp) -> patches (N, C*kh*kw, OH*OW), one block copy per kernel offset."""
    n, c = xp.shape[:2]
    cols = B.empty((n, c, kh, kw, oh, ow), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im_channel_first(dcols: np.ndarray, padded_shape: tuple[int, ...], kh: int, kw: int, sh: int, sw: int,
                         oh: int, ow: int) -> np.ndarray:
    """Patch gradients (N, C*kh*kw, OH*OW) -> the gradient of the padded input (N, C, Hp, Wp)."""
    n, c = padded_shape[:2]
    dcols = dcols.reshape(n, c, kh, kw, oh, ow)
    dxp = B.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(kh):  # windows overlap when stride < kernel, hence +=
        for j in range(kw):
            dxp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += dcols[:, :, i, j]
    return dxp


@register_layer("conv2d")
class Conv2D(Layer):
    """2-D convolution over (C, H, W) images: (C, H, W) -> (filters, OH, OW), weights (filters, C, kh, kw)."""

    class Config(LayerConfig):
        type: Literal["conv2d"] = "conv2d"
        filters: int = Field(gt=0, description="output channels")
        kernel: PosPair = Field(description="kernel size: k or [kh, kw]")
        stride: PosPair = Field(1, description="step between windows: s or [sh, sw]")
        padding: NonNegPair | Literal["same"] = Field(
            0, description="zeros added on each side: p or [ph, pw]; same keeps H and W (stride 1 only)")
        bias: bool = Field(True, description="learn a per-filter bias")
        init: Literal[I.INITS] = Field(  # type: ignore[valid-type]
            "auto", description="weight init; auto = He before relu/leaky_relu/gelu, else Glorot uniform")

        @model_validator(mode="after")
        def _same_needs_stride_one(self):
            if self.padding == "same" and pair(self.stride) != (1, 1):
                raise ValueError("padding 'same' needs stride 1")
            return self

    reads_next_layer = True
    next_layer: str | None = None  # set by the container: the type of the following layer (for init: auto)
    channel_first_below = 8  # input channels under which im2col uses the channel-first layout (tests move it)
    micro_batch_bytes = 8 << 20  # channel-last: build and use the patches of this many bytes at a time (see below)

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ShapeError(f"conv2d needs (C, H, W) inputs, got {in_shape}")
        c, h, w = in_shape
        cfg = self.config
        (kh, kw), (sh, sw) = pair(cfg.kernel), pair(cfg.stride)
        if cfg.padding == "same":  # as PyTorch: an odd total pad puts the extra row/column after
            self.pads = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
        else:
            ph, pw = pair(cfg.padding)
            self.pads = (ph, ph), (pw, pw)
        hp, wp = h + sum(self.pads[0]), w + sum(self.pads[1])
        if kh > hp or kw > wp:
            raise ShapeError(f"conv2d kernel {(kh, kw)} is larger than the padded input {(hp, wp)} (input {in_shape})")
        self.geometry = kh, kw, sh, sw, out_size(hp, kh, sh), out_size(wp, kw, sw)
        fan_in, fan_out = c * kh * kw, cfg.filters * kh * kw
        init = I.resolve(cfg.init, self.next_layer)
        self.add_param("W", I.initialise(init, (cfg.filters, c, kh, kw), fan_in, fan_out, self.rng))  # (O, C, kh, kw)
        if cfg.bias:
            self.add_param("b", B.zeros((cfg.filters,)))  # (O,)
        return cfg.filters, self.geometry[4], self.geometry[5]

    def forward(self, x, training):
        self.channel_first = x.shape[1] < self.channel_first_below
        if self.channel_first:
            return self._forward_channel_first(x)
        n, c, h, w = x.shape
        (pt, pb), (pl, pr) = self.pads
        kh, kw, sh, sw, oh, ow = self.geometry
        wmat = self._wmat()  # (kh*kw*C, O)
        y = B.empty((n, self.config.filters, oh, ow), dtype=x.dtype)

        def chunk(s):  # one micro-batch: its patch matrix is kept for backward
            xp = B.zeros((len(x[s]), h + pt + pb, w + pl + pr, c), dtype=x.dtype)  # (M, Hp, Wp, C)
            xp[:, pt:pt + h, pl:pl + w] = x[s].transpose(0, 2, 3, 1)
            cols = im2col(xp, kh, kw, sh, sw, oh, ow)  # (M*OH*OW, kh*kw*C)
            ym = cols @ wmat  # (M*OH*OW, O)
            if self.config.bias:
                ym += self.params["b"]
            y[s] = ym.reshape(len(xp), oh, ow, -1).transpose(0, 3, 1, 2)  # (M, O, OH, OW)
            return cols

        self.slices = self._micro_batches(n, x.itemsize)
        self.cols = B.parallel(chunk, self.slices)  # one patch matrix per micro-batch
        return y

    def backward(self, dy):
        if self.channel_first:
            return self._backward_channel_first(dy)
        n, o = dy.shape[:2]
        kh, kw, sh, sw, oh, ow = self.geometry
        (pt, pb), (pl, pr) = self.pads
        _, h, w = self.in_shape
        dx = B.empty((n, *self.in_shape), dtype=dy.dtype) if self.needs_input_grad else None

        def chunk(s_cols):  # one micro-batch: its share of dWmat and db; its rows of dx
            s, cols = s_cols
            m = len(dy[s])
            dy2 = dy[s].transpose(0, 2, 3, 1).reshape(m * oh * ow, o)  # (M*OH*OW, O)
            if dx is not None:
                padded = (m, h + pt + pb, w + pl + pr, self.in_shape[0])
                dxp = col2im_matmul(dy2, self.params["W"], padded, sh, sw, oh, ow)  # (M, Hp, Wp, C)
                dx[s] = dxp[:, pt:pt + h, pl:pl + w].transpose(0, 3, 1, 2)  # (M, C, H, W)
            return cols.T @ dy2, dy2.sum(axis=0)  # (kh*kw*C, O), (O,)

        parts = B.parallel(chunk, list(zip(self.slices, self.cols)))
        self.grads["W"] += sum(dw for dw, _ in parts).reshape(kh, kw, -1, o).transpose(3, 2, 0, 1)
        if self.config.bias:
            self.grads["b"] += sum(db for _, db in parts)
        return dx

    def _micro_batches(self, n: int, itemsize: int) -> list[slice]:
        """Equal slices of the batch, patch matrices within ``micro_batch_bytes``, as many per engine thread."""
        kh, kw, _, _, oh, ow = self.geometry
        k, per_sample = B.threads(), oh * ow * kh * kw * self.in_shape[0] * itemsize
        need = -(-n * per_sample // self.micro_batch_bytes)  # micro-batches the byte limit asks for
        count = min(n, -(-need // k) * k)  # rounded up to a multiple of the thread count
        return B.even_slices(n, count)

    def _forward_channel_first(self, x):
        n, c, h, w = x.shape
        (pt, pb), (pl, pr) = self.pads
        kh, kw, sh, sw, oh, ow = self.geometry
        y = B.empty((n, self.config.filters, oh * ow), dtype=x.dtype)  # (N, O, OH*OW)

        def chunk(s):
            xp = B.zeros((len(x[s]), c, h + pt + pb, w + pl + pr), dtype=x.dtype)  # (M, C, Hp, Wp)
            xp[:, :, pt:pt + h, pl:pl + w] = x[s]
            cols = im2col_channel_first(xp, kh, kw, sh, sw, oh, ow)  # (M, C*kh*kw, OH*OW)
            np.matmul(self.params["W"].reshape(self.config.filters, -1), cols, out=y[s])
            if self.config.bias:
                y[s] += self.params["b"][:, None]
            return cols

        self.slices = self._micro_batches(n, x.itemsize)
        self.cols = B.parallel(chunk, self.slices)
        return y.reshape(n, -1, oh, ow)

    def _backward_channel_first(self, dy):
        n, o = dy.shape[:2]
        kh, kw, sh, sw, oh, ow = self.geometry
        (pt, pb), (pl, pr) = self.pads
        c, h, w = self.in_shape
        dy3 = dy.reshape(n, o, oh * ow)  # (N, O, OH*OW)
        dx = B.empty((n, c, h, w), dtype=dy.dtype) if self.needs_input_grad else None

        def chunk(s_cols):
            s, cols = s_cols
            if dx is not None:
                dcols = self.params["W"].reshape(o, -1).T @ dy3[s]  # (M, C*kh*kw, OH*OW)
                padded = (len(cols), c, h + pt + pb, w + pl + pr)
                dxp = col2im_channel_first(dcols, padded, kh, kw, sh, sw, oh, ow)  # (M, C, Hp, Wp)
                dx[s] = dxp[:, :, pt:pt + h, pl:pl + w]
            return (dy3[s] @ cols.transpose(0, 2, 1)).sum(axis=0), dy3[s].sum(axis=(0, 2))  # (O, C*kh*kw), (O,)

        parts = B.parallel(chunk, list(zip(self.slices, self.cols)))
        self.grads["W"] += sum(dw for dw, _ in parts).reshape(self.params["W"].shape)
        if self.config.bias:
            self.grads["b"] += sum(db for _, db in parts)
        return dx

    def _wmat(self) -> np.ndarray:
        """Weights as a matrix whose rows follow the (kh, kw, C) order of im2col: (kh*kw*C, O)."""
        return self.params["W"].transpose(2, 3, 1, 0).reshape(-1, self.config.filters)

    def flops(self):
        kh, kw, _, _, oh, ow = self.geometry
        return 2 * oh * ow * self.config.filters * self.in_shape[0] * kh * kw

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"filters": 3, "kernel": 3}, (2, 5, 5), batch=2),
            GradCase({"filters": 2, "kernel": 3, "stride": 2, "padding": 1}, (3, 7, 6), batch=2),
            GradCase({"filters": 4, "kernel": [2, 3], "padding": [1, 0], "bias": False}, (2, 4, 5), batch=2),
            GradCase({"filters": 2, "kernel": [3, 2], "padding": "same"}, (1, 5, 6), batch=2),
            GradCase({"filters": 2, "kernel": [2, 3], "stride": [2, 1]}, (2, 6, 5), batch=2),
            GradCase({"filters": 2, "kernel": 4, "padding": "same"}, (2, 5, 5), batch=2, note="even kernel: asymmetric pad"),
            GradCase({"filters": 3, "kernel": 1}, (4, 3, 3), batch=2),
            GradCase({"filters": 3, "kernel": 3, "padding": 1}, (8, 4, 4), batch=2, note="channel-last im2col"),
            GradCase({"filters": 2, "kernel": [3, 2], "stride": [1, 2], "padding": [1, 0]}, (9, 5, 6), batch=2,
                     note="channel-last im2col"),
        ]
