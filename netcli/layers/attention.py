"""Scaled dot-product attention (pure functions) and the multi-head self-attention layer.

    S = q k^T / sqrt(dh) + mask        # (..., Tq, Tk) scores; masked entries are -inf
    P = softmax(S)                     # over the keys (last axis)
    out = dropout(P) v                 # (..., Tq, dv); dropout on the probabilities, like torch

Masked keys get exactly zero probability (exp(-inf) = 0). A query whose keys
are all masked attends to nothing: its row of P is all zeros and its output
is zero (torch returns NaN there).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .. import distributed as D
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer
from .context import Context
from .dense import Dense


def additive_mask(blocked: np.ndarray, dtype) -> np.ndarray:
    """A boolean mask (True = may not attend) as 0 / -inf scores to add."""
    return np.where(blocked, -np.inf, 0).astype(dtype)


def causal_mask(T: int, dtype) -> np.ndarray:
    """(T, T) additive mask: query t may attend to keys 0..t only."""
    return additive_mask(np.triu(np.ones((T, T), dtype=bool), k=1), dtype)


def softmax_(s: np.ndarray, masked: bool) -> np.ndarray:
    """Softmax over the last axis, in place. ``masked``: ``s`` may hold -inf, even whole rows of it."""
    m = s.max(axis=-1, keepdims=True)  # (..., 1) shift so exp cannot overflow
    if masked:
        m[m == -np.inf] = 0  # a fully masked row: keep exp(-inf - m) = 0, not NaN
    s -= m
    np.exp(s, out=s)
    # row sums as a product with a column of ones: a BLAS call instead of numpy's slow short-axis reduce
    total = np.matmul(s, np.ones((s.shape[-1], 1), dtype=s.dtype))  # (..., 1)
    if masked:
        total[total == 0] = 1  # the fully masked rows stay all zeros
    s /= total
    return s


def attention_forward(q, k, v, mask=None, dropout: float = 0.0, rng: np.random.Generator | None = None,
                      out: np.ndarray | None = None):
    """softmax(q k^T / sqrt(dh) + mask) v over the last two axes; returns (out, cache).

    q (..., Tq, dh), k (..., Tk, dh), v (..., Tk, dv). ``mask`` broadcasts to
    (..., Tq, Tk): boolean (True = blocked) or float, added to the scores.
    ``dropout`` zeroes probabilities with that rate (mask drawn from ``rng``)
    and scales the rest by 1 / (1 - rate). ``out``: where to write the result.
    """
    qs = q * q.dtype.type(1 / math.sqrt(q.shape[-1]))  # (..., Tq, dh) scaled here: smaller than the scores
    s = np.matmul(qs, k.swapaxes(-1, -2))  # (..., Tq, Tk)
    if mask is not None:
        s += additive_mask(mask, s.dtype) if mask.dtype == bool else mask
    p = softmax_(s, masked=mask is not None)  # (..., Tq, Tk)
    drop = None
    if dropout > 0:
        keep = D.draw(lambda shape: rng.random(shape, dtype=p.dtype), p.shape) >= dropout  # the global batch's, under MPI
        drop = keep * p.dtype.type(1 / (1 - dropout))
        pd = p * drop  # (..., Tq, Tk) the probabilities actually used
    else:
        pd = p
    out = np.matmul(pd, v, out=out)  # (..., Tq, dv)
    return out, (qs, k, v, p, drop, pd)


def attention_backward(dout, cache, out: tuple | None = None):
    """Gradients (dq, dk, dv) of ``attention_forward`` given dL/dout (..., Tq, dv).

    ``out``: three arrays to write dq, dk, dv into.
    """
    qs, k, v, p, drop, pd = cache
    dq, dk, dv = out or (None, None, None)
    dv = np.matmul(pd.swapaxes(-1, -2), dout, out=dv)  # (..., Tk, dv)
    ds = np.matmul(dout, v.swapaxes(-1, -2))  # (..., Tq, Tk) dL/d(dropped P)
    if drop is not None:
        ds *= drop  # dL/dP
    # softmax backward without its Jacobian: dS = P * (dP - sum_k P dP), in place
    ds -= np.einsum("...ij,...ij->...i", p, ds)[..., None]
    ds *= p
    dk = np.matmul(ds.swapaxes(-1, -2), qs, out=dk)  # (..., Tk, dh)
    dq = np.matmul(ds, k, out=dq)  # (..., Tq, dh) dL/dqs, then by the chain rule through the scaling:
    dq *= dq.dtype.type(1 / math.sqrt(qs.shape[-1]))
    return dq, dk, dv


@register_layer("multihead_attention")
class MultiheadAttention(Layer):
    """Multi-head self-attention over (N, T, D), as torch.nn.MultiheadAttention(batch_first=True).

    Heads split the projected width ``dim`` into ``heads`` slices of dh = dim / heads;
    the output projection maps ``dim`` back to D. The projections are dense
    layers applied to every token (the rows of an (N*T, D) matrix).
    """

    class Config(LayerConfig):
        type: Literal["multihead_attention"] = "multihead_attention"
        heads: int = Field(gt=0, description="number of attention heads; must divide dim")
        dim: int | None = Field(None, gt=0, description="width of queries, keys and values; default: input features")
        fused_qkv: bool = Field(True, description="one (D, 3*dim) projection for q, k, v instead of three")
        bias: bool = Field(True, description="learn biases in the q/k/v and output projections")
        dropout: float = Field(0.0, ge=0, lt=1, description="dropout rate on the attention probabilities (training)")
        causal: bool = Field(False, description="position t attends to positions <= t only")
        use_padding_mask: bool = Field(
            True, description="ignore keys marked in the batch's key padding mask ((N, T) bool, True = padding) if any")

    uses_context = True

    def build(self, in_shape):
        if len(in_shape) != 2:
            raise ShapeError(f"multihead_attention needs (T, D) sequences, got {in_shape}")
        T, D = in_shape
        cfg = self.config
        self.dim = cfg.dim or D
        if self.dim % cfg.heads:
            raise ShapeError(f"attention width {self.dim} is not divisible by heads {cfg.heads}")
        names = ["qkv"] if cfg.fused_qkv else ["q", "k", "v"]
        units = 3 * self.dim if cfg.fused_qkv else self.dim
        self.proj = {n: self.child(n, Dense(units=units, bias=cfg.bias), (D,)) for n in names}
        self.out = self.child("out", Dense(units=D, bias=cfg.bias), (self.dim,))
        self._causal = causal_mask(T, B.float_dtype()) if cfg.causal else None
        return in_shape

    def mask(self, N: int, T: int, dtype, ctx: Context) -> np.ndarray | None:
        """The additive mask for this batch: (N or 1, 1, T, T), or None."""
        mask = None if self._causal is None else self._causal[:T, :T].astype(dtype, copy=False)  # (T, T)
        pad = ctx.padding(N, T, self.type_name) if self.config.use_padding_mask else None
        if pad is not None:
            pad = additive_mask(pad, dtype)[:, None, None, :]  # (N, 1, 1, T)
            mask = pad if mask is None else pad + mask
        return mask

    def forward(self, x, training, ctx=None):
        ctx = Context() if ctx is None else ctx
        N, T, D = x.shape
        H = self.config.heads
        dh = self.dim // H
        x2 = x.reshape(N * T, D)
        if self.config.fused_qkv:
            qkv = self.proj["qkv"].forward(x2, training).reshape(N, T, 3, H, dh)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (N, H, T, dh)
        else:
            q, k, v = (self.proj[n].forward(x2, training).reshape(N, T, H, dh).transpose(0, 2, 1, 3)
                       for n in "qkv")
        rate = self.config.dropout if training else 0.0
        o = B.empty((N, T, H, dh), dtype=x.dtype)  # heads side by side per token
        oh, mask = o.transpose(0, 2, 1, 3), self.mask(N, T, x.dtype, ctx)  # (N, H, T, dh), (N or 1, 1, T, T)

        def chunk(s):  # samples s; a mask without a batch axis, or with one row, serves them all
            m = mask[s] if mask is not None and mask.ndim == 4 and len(mask) > 1 else mask
            return attention_forward(q[s], k[s], v[s], m, rate, self.rng, out=oh[s])[1]

        # samples are independent: split over the engine's threads, except where dropout draws its
        # masks (one stream of random numbers, drawn in order)
        self.chunks = B.batch_chunks(q, T / 8) if rate == 0 else [slice(None)]
        self.caches = B.parallel(chunk, self.chunks)
        return self.out.forward(o.reshape(N * T, self.dim), training).reshape(N, T, D)

    def backward(self, dy):
        N, T, D = dy.shape
        H = self.config.heads
        dh = self.dim // H
        do = self.out.backward(dy.reshape(N * T, D)).reshape(N, T, H, dh).transpose(0, 2, 1, 3)
        dqkv = B.empty((N, T, 3, H, dh), dtype=dy.dtype)  # written in the projections' layout
        dq, dk, dv = dqkv.transpose(2, 0, 3, 1, 4)  # each (N, H, T, dh)
        B.parallel(lambda sc: attention_backward(do[sc[0]], sc[1], out=(dq[sc[0]], dk[sc[0]], dv[sc[0]])),
                   list(zip(self.chunks, self.caches)))
        if self.config.fused_qkv:
            dx = self.proj["qkv"].backward(dqkv.reshape(N * T, 3 * self.dim))
        else:
            dx = sum(self.proj[n].backward(dqkv[:, :, i].reshape(N * T, self.dim)) for i, n in enumerate("qkv"))
        return dx.reshape(N, T, D)

    def flops(self):
        T, D = self.in_shape
        projections = 2 * T * D * self.dim * 4  # q, k, v and the output
        return projections + 2 * 2 * T * T * self.dim  # plus q k^T and P v

    @classmethod
    def grad_cases(cls):
        pad = np.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)  # (3, 4) True = padding
        return [
            GradCase({"heads": 2}, (4, 6)),
            GradCase({"heads": 3, "dim": 6, "fused_qkv": False, "bias": False, "causal": True}, (4, 4),
                     note="separate q/k/v; alone, the key bias has an exactly zero gradient (softmax shift)"),
            GradCase({"heads": 2, "causal": True}, (5, 4)),
            GradCase({"heads": 2}, (4, 4), extra={"ctx": {"key_padding_mask": pad}}, note="key padding"),
            GradCase({"heads": 2, "causal": True}, (4, 4), extra={"ctx": {"key_padding_mask": pad[:, ::-1].copy()}},
                     note="causal + padding in front: some queries see only padding"),
            GradCase({"heads": 2, "dropout": 0.3}, (4, 4), note="attention dropout, training"),
            GradCase({"heads": 2, "dropout": 0.3}, (4, 4), training=False, note="eval: no dropout"),
        ]
