"""Images as token sequences (ViT): patch embedding, a class token, and sequence pooling heads.

    patch_embed:   (N, C, H, W) -> (N, H/p * W/p, D)   each p x p patch, flattened, through one dense layer
    class_token:   (N, T, D)    -> (N, T+1, D)         a learned token in front
    mean_pool:     (N, T, D)    -> (N, D)              mean over the (unpadded) tokens
    select_token:  (N, T, D)    -> (N, D)              one token, e.g. the class token at 0
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer
from .dense import Dense
from .positional import sequence_shape


@register_layer("patch_embed")
class PatchEmbed(Layer):
    """Non-overlapping p x p patches, each a dense projection of its C*p*p pixels.

    This is a conv2d with kernel = stride = p; the weight's rows follow torch's
    conv weight (D, C, p, p) flattened, and patches are numbered row by row.
    """

    class Config(LayerConfig):
        type: Literal["patch_embed"] = "patch_embed"
        patch: int = Field(gt=0, description="patch side p; H and W must be multiples of p")
        dim: int = Field(gt=0, description="features D of each patch token")
        bias: bool = Field(True, description="learn an additive bias")

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ShapeError(f"patch_embed needs (C, H, W) images, got {in_shape}")
        C, H, W = in_shape
        p = self.config.patch
        if H % p or W % p:
            raise ShapeError(f"image {H}x{W} does not split into {p}x{p} patches (H and W must be multiples of {p})")
        self.proj = self.child("proj", Dense(units=self.config.dim, bias=self.config.bias), (C * p * p,))
        self.num_patches = (H // p) * (W // p)
        return (self.num_patches, self.config.dim)

    def forward(self, x, training):
        N, C, H, W = x.shape
        p = self.config.patch
        patches = x.reshape(N, C, H // p, p, W // p, p).transpose(0, 2, 4, 1, 3, 5)  # (N, H/p, W/p, C, p, p)
        y = self.proj.forward(patches.reshape(N * self.num_patches, C * p * p), training)  # (N*P, D)
        return y.reshape(N, self.num_patches, -1)

    def backward(self, dy):
        N, P, D = dy.shape
        C, H, W = self.in_shape
        p = self.config.patch
        dpatches = self.proj.backward(dy.reshape(N * P, D)).reshape(N, H // p, W // p, C, p, p)
        return dpatches.transpose(0, 3, 1, 4, 2, 5).reshape(N, C, H, W)

    def flops(self):
        return self.num_patches * self.proj.flops()

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"patch": 2, "dim": 3}, (2, 4, 6)),
            GradCase({"patch": 3, "dim": 4, "bias": False}, (1, 3, 6), batch=2),
        ]


@register_layer("class_token")
class ClassToken(Layer):
    """Prepend one learned token: (N, T, D) -> (N, T+1, D).

    The batch's key padding mask gets an unpadded column in front (the
    context's ``prefix``), so attention after this layer still lines up with it.
    """

    class Config(LayerConfig):
        type: Literal["class_token"] = "class_token"

    uses_context = True

    def build(self, in_shape):
        T, D = sequence_shape("class_token", in_shape)
        self.add_param("token", B.asarray(0.02 * self.rng.standard_normal(D)))  # (D,)
        return (T + 1, D)

    def forward(self, x, training, ctx=None):
        N, T, D = x.shape
        if ctx is not None:
            ctx.prefix += 1
        y = B.empty((N, T + 1, D), dtype=x.dtype)
        y[:, 0] = self.params["token"]
        y[:, 1:] = x
        return y

    def backward(self, dy):
        self.grads["token"] += dy[:, 0].sum(axis=0)
        return dy[:, 1:]

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (3, 4))]


@register_layer("mean_pool")
class MeanPool(Layer):
    """Mean over the sequence axis: (N, T, D) -> (N, D); padded tokens are left out."""

    class Config(LayerConfig):
        type: Literal["mean_pool"] = "mean_pool"
        use_padding_mask: bool = Field(
            True, description="average only tokens not marked in the batch's key padding mask ((N, T) bool) if any")

    uses_context = True

    def build(self, in_shape):
        T, D = sequence_shape("mean_pool", in_shape)
        return (D,)

    def forward(self, x, training, ctx=None):
        N, T, D = x.shape
        pad = ctx.padding(N, T, self.type_name) if ctx is not None and self.config.use_padding_mask else None
        if pad is None:
            self.w = B.full((1, T, 1), 1 / T, dtype=x.dtype)  # (1, T, 1) equal weights
        else:
            keep = ~pad
            self.w = (keep / np.maximum(keep.sum(axis=1, keepdims=True), 1)).astype(x.dtype)[:, :, None]  # (N, T, 1)
        return (x * self.w).sum(axis=1)  # (N, D)

    def backward(self, dy):
        return dy[:, None, :] * self.w  # (N, T, D)

    @classmethod
    def grad_cases(cls):
        pad = np.array([[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=bool)  # last sample: all padding
        return [GradCase({}, (4, 3)), GradCase({}, (4, 3), extra={"ctx": {"key_padding_mask": pad}}, note="padding")]


@register_layer("select_token")
class SelectToken(Layer):
    """One position of the sequence: (N, T, D) -> (N, D), e.g. the class token at index 0."""

    class Config(LayerConfig):
        type: Literal["select_token"] = "select_token"
        index: int = Field(0, description="position to take; negative counts from the end")

    def build(self, in_shape):
        T, D = sequence_shape("select_token", in_shape)
        if not -T <= self.config.index < T:
            raise ShapeError(f"index {self.config.index} is outside a sequence of length {T}")
        return (D,)

    def forward(self, x, training):
        self.x_shape = x.shape
        return x[:, self.config.index].copy()

    def backward(self, dy):
        dx = B.zeros(self.x_shape, dtype=dy.dtype)
        dx[:, self.config.index] = dy
        return dx

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (4, 3)), GradCase({"index": -1}, (3, 2))]
