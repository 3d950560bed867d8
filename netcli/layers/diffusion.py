"""Denoisers for diffusion models: layers conditioned on the timesteps of their batch.

The DDPM model passes the integer timesteps of a batch (N,) in the batch's
Context (``Context(t=t)``, layers/context.py) to each forward pass. Every time-conditioned
layer turns them into a fixed sinusoidal embedding (nothing learned) and
learns its own projection of it:

    emb = [sin(t * f_k), cos(t * f_k)],  f_k = 10000^(-k / (E/2)),  k < E/2     # (N, E)

- ``time_mlp_denoiser``: an MLP on flat inputs; each hidden layer adds a
  projection of the embedding before its activation.
- ``time_res_block``: a residual block of two 3x3 convolutions with the
  projected embedding added per channel between them (pre-activation, no norm).
- ``unet``: a small U-Net of ``time_res_block``s: stride-2 convolutions down,
  nearest-neighbour upsampling up, each level's output concatenated onto the
  way up (skip connections).

They are built with ``child`` from the registry's conv2d, dense and
activation layers, which do the math of their forward and backward passes;
parameter keys name the part (``hidden.0.W``, ``conv1.W``, ``down.1.0.time_proj.W``,
``up.0.1.skip.W``: a U-Net level's blocks are a Sequential).
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field, field_validator

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer
from .container import Sequential
from .context import Context
from .conv import Conv2D
from .dense import Dense

Activation = Literal["relu", "leaky_relu", "gelu", "tanh"]


def timestep_embedding(t: np.ndarray, dim: int, max_period: float = 10000.0) -> np.ndarray:
    """(N,) integer timesteps -> (N, dim) sinusoids, sines in the first half and cosines in the second."""
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / half)  # (E/2,) from 1 down to ~1/max_period
    angles = np.asarray(t, dtype=np.float64)[:, None] * freqs  # (N, E/2)
    return B.asarray(np.concatenate([np.sin(angles), np.cos(angles)], axis=1))  # (N, E)


def upsample2x(x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upsampling (N, C, H, W) -> (N, C, 2H, 2W)."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


def upsample2x_backward(dy: np.ndarray) -> np.ndarray:
    """Each input pixel fed a 2x2 block of outputs: sum their gradients. (N, C, 2H, 2W) -> (N, C, H, W)."""
    n, c, h2, w2 = dy.shape
    return dy.reshape(n, c, h2 // 2, 2, w2 // 2, 2).sum(axis=(3, 5))


def conv(filters: int, kernel: int, stride: int = 1, init: str = "auto", next_layer: str | None = None) -> Conv2D:
    layer = Conv2D(Conv2D.Config(filters=filters, kernel=kernel, stride=stride, padding=kernel // 2, init=init))
    layer.next_layer = next_layer
    return layer


def _even(v: int) -> int:
    if v % 2:
        raise ValueError("must be even (half sines, half cosines)")
    return v


EvenInt = Annotated[int, AfterValidator(_even)]


class TimeConditioned(Layer):
    """A layer that reads the timesteps of its batch from the context: forward(x, training, ctx)."""

    uses_context = True

    def time_embedding(self, n: int, ctx: Context | None) -> np.ndarray:
        ctx = Context() if ctx is None else ctx
        return timestep_embedding(ctx.timesteps(n, self.type_name), self.config.time_dim)  # (N, E)


@register_layer("time_mlp_denoiser")
class TimeMLPDenoiser(TimeConditioned):
    """(N, D) -> (N, D): h_i = act(h_{i-1} W_i + emb T_i + b_i), output h_L W_out + b_out."""

    class Config(LayerConfig):
        type: Literal["time_mlp_denoiser"] = "time_mlp_denoiser"
        units: list[int] = Field([512, 512], min_length=1, description="widths of the hidden layers")
        time_dim: EvenInt = Field(64, gt=0, description="size of the sinusoidal timestep embedding (even)")
        activation: Activation = Field("relu", description="activation after each hidden layer")

        @field_validator("units")
        @classmethod
        def _positive(cls, units):
            if any(u <= 0 for u in units):
                raise ValueError("every hidden width must be > 0")
            return units

    def build(self, in_shape):
        if len(in_shape) != 1:
            raise ShapeError(f"time_mlp_denoiser needs flat (D,) inputs, got {in_shape} (use data flatten: true)")
        cfg = self.config
        self.hidden, self.time_proj, self.acts = [], [], []
        width = in_shape[0]
        for i, units in enumerate(cfg.units):
            dense = Dense(Dense.Config(units=units))
            dense.next_layer = cfg.activation
            self.hidden.append(self.child(f"hidden.{i}", dense, (width,), self.needs_input_grad or i > 0))
            self.time_proj.append(self.child(f"time_proj.{i}", Dense(Dense.Config(units=units, bias=False)),
                                             (cfg.time_dim,), needs_input_grad=False))  # the embedding is fixed
            self.acts.append(self.child(f"act.{i}", cfg.activation, (units,)))
            width = units
        self.out = self.child("out", Dense(Dense.Config(units=in_shape[0])), (width,))
        return in_shape

    def forward(self, x, training, ctx=None):
        emb = self.time_embedding(len(x), ctx)  # (N, E)
        h = x  # (N, D)
        for dense, proj, act in zip(self.hidden, self.time_proj, self.acts):
            h = act.forward(dense.forward(h, training) + proj.forward(emb, training), training)  # (N, U)
        return self.out.forward(h, training)  # (N, D)

    def backward(self, dy):
        dh = self.out.backward(dy)
        for dense, proj, act in zip(reversed(self.hidden), reversed(self.time_proj), reversed(self.acts)):
            dz = act.backward(dh)
            proj.backward(dz)  # the embedding is fixed: its gradient is not needed
            dh = dense.backward(dz)
        return dh

    def flops(self):
        return sum(layer.flops() for layer in self.children.values())

    @classmethod
    def grad_cases(cls):
        t = {"ctx": {"t": np.array([0, 7, 999])}}
        return [
            GradCase({"units": [6], "time_dim": 4}, (5,), extra=t),
            GradCase({"units": [5, 4], "time_dim": 8, "activation": "gelu"}, (3,), extra=t),
        ]


@register_layer("time_res_block")
class TimeResBlock(TimeConditioned):
    """(N, C, H, W) -> (N, F, H, W): y = skip(x) + conv2(act(conv1(act(x)) + emb T + b_t)).

    skip is the identity when C == F, else a 1x1 convolution.
    """

    class Config(LayerConfig):
        type: Literal["time_res_block"] = "time_res_block"
        filters: int = Field(gt=0, description="output channels")
        time_dim: EvenInt = Field(32, gt=0, description="size of the sinusoidal timestep embedding (even)")
        activation: Activation = Field("relu", description="activation before each convolution")
        zero_init: bool = Field(True, description="start the second convolution at zero, so that the block "
                                                  "begins as its skip path (as in DDPM)")

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ShapeError(f"time_res_block needs (C, H, W) inputs, got {in_shape}")
        cfg = self.config
        c, h, w = in_shape
        f = cfg.filters
        self.act1 = self.child("act1", cfg.activation, in_shape)
        self.conv1 = self.child("conv1", conv(f, 3, next_layer=cfg.activation), in_shape)
        self.time_proj = self.child("time_proj", Dense(Dense.Config(units=f)), (cfg.time_dim,),
                                    needs_input_grad=False)  # the time embedding is fixed
        self.act2 = self.child("act2", cfg.activation, (f, h, w))
        self.conv2 = self.child("conv2", conv(f, 3, init="zeros" if cfg.zero_init else "auto"), (f, h, w))
        self.skip = self.child("skip", conv(f, 1), in_shape) if c != f else None
        return f, h, w

    def forward(self, x, training, ctx=None):
        emb = self.time_embedding(len(x), ctx)  # (N, E)
        h = self.conv1.forward(self.act1.forward(x, training), training)  # (N, F, H, W)
        h = h + self.time_proj.forward(emb, training)[:, :, None, None]  # one shift per sample and channel
        h = self.conv2.forward(self.act2.forward(h, training), training)  # (N, F, H, W)
        return h + (x if self.skip is None else self.skip.forward(x, training))

    def backward(self, dy):
        dh = self.act2.backward(self.conv2.backward(dy))  # (N, F, H, W)
        self.time_proj.backward(dh.sum(axis=(2, 3)))  # (N, F); the fixed embedding needs no gradient
        dx = self.act1.backward(self.conv1.backward(dh))  # (N, C, H, W)
        return dx + (dy if self.skip is None else self.skip.backward(dy))

    def flops(self):
        return sum(layer.flops() for layer in self.children.values())

    @classmethod
    def grad_cases(cls):
        t = {"ctx": {"t": np.array([0, 500])}}
        return [
            GradCase({"filters": 3, "time_dim": 4, "zero_init": False}, (2, 4, 5), batch=2, extra=t,
                     note="1x1 conv on the skip path"),
            GradCase({"filters": 2, "time_dim": 6, "zero_init": False, "activation": "gelu"}, (2, 3, 3),
                     batch=2, extra=t, note="identity skip"),
            GradCase({"filters": 2, "time_dim": 4}, (2, 3, 3), batch=2, extra=t, note="zero-initialised conv2"),
        ]


@register_layer("unet")
class UNet(Layer):
    """A U-Net over (C, H, W) images predicting a (out_channels, H, W) map, conditioned on the context's t.

        stem 3x3 conv -> per level: blocks x time_res_block, keep the output, stride-2 conv (not after the last)
        -> mid_blocks x time_res_block
        -> per level, deepest first: upsample 2x (not at the deepest), concatenate the kept output,
           blocks x time_res_block
        -> act -> 3x3 conv
    """

    uses_context = True  # passes it on to its blocks

    class Config(LayerConfig):
        type: Literal["unet"] = "unet"
        base_channels: int = Field(16, gt=0, description="channels of the first level")
        channel_mults: list[int] = Field([1, 2, 4], min_length=1,
                                         description="channels of each level as multiples of base_channels; "
                                                     "each level after the first halves H and W")
        blocks: int = Field(1, gt=0, description="residual blocks per level, on the way down and on the way up")
        mid_blocks: int = Field(1, ge=0, description="residual blocks at the lowest resolution")
        time_dim: EvenInt = Field(32, gt=0, description="size of the sinusoidal timestep embedding (even)")
        activation: Activation = Field("relu", description="activation of the residual blocks and the output")
        out_channels: int | None = Field(None, gt=0, description="output channels; default: the input's")
        zero_init: bool = Field(True, description="start the last conv of every block and the output conv at zero")

        @field_validator("channel_mults")
        @classmethod
        def _positive(cls, mults):
            if any(m <= 0 for m in mults):
                raise ValueError("every channel multiplier must be > 0")
            return mults

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ShapeError(f"unet needs (C, H, W) inputs, got {in_shape}")
        cfg = self.config
        c, h, w = in_shape
        levels = len(cfg.channel_mults)
        scale = 2 ** (levels - 1)
        if h % scale or w % scale:
            raise ShapeError(f"unet with {levels} levels needs H and W divisible by {scale}, got {h}x{w}")

        def block(filters):
            return TimeResBlock(TimeResBlock.Config(filters=filters, time_dim=cfg.time_dim,
                                                    activation=cfg.activation, zero_init=cfg.zero_init))

        def blocks(name, filters, n, shape):  # n residual blocks in a row, one child
            return self.child(name, Sequential(of=[block(filters) for _ in range(n)]), shape)

        self.stem = self.child("stem", conv(cfg.base_channels, 3), in_shape, self.needs_input_grad)
        shape = self.stem.out_shape
        self.down, self.downsample, kept = [], [], []
        for level, mult in enumerate(cfg.channel_mults):
            self.down.append(blocks(f"down.{level}", cfg.base_channels * mult, cfg.blocks, shape))
            shape = self.down[-1].out_shape
            kept.append(shape)
            if level < levels - 1:
                self.downsample.append(self.child(f"downsample.{level}", conv(shape[0], 3, stride=2), shape))
                shape = self.downsample[-1].out_shape
        self.mid = blocks("mid", shape[0], cfg.mid_blocks, shape) if cfg.mid_blocks else None
        self.up, self.split = [None] * levels, [0] * levels
        for level in reversed(range(levels)):
            if level < levels - 1:
                shape = (shape[0], 2 * shape[1], 2 * shape[2])
            self.split[level] = shape[0]  # channels coming from below; the kept ones follow
            shape = (shape[0] + kept[level][0], *shape[1:])
            self.up[level] = blocks(f"up.{level}", cfg.base_channels * cfg.channel_mults[level], cfg.blocks, shape)
            shape = self.up[level].out_shape
        self.out_act = self.child("out_act", cfg.activation, shape)
        self.out_conv = self.child("out_conv", conv(cfg.out_channels or c, 3, init="zeros" if cfg.zero_init else "auto"),
                                   shape)
        return self.out_conv.out_shape

    def forward(self, x, training, ctx=None):
        h = self.stem.forward(x, training)  # (N, base, H, W)
        kept = []
        for level, down in enumerate(self.down):
            h = down.forward(h, training, ctx)
            kept.append(h)
            if level < len(self.downsample):
                h = self.downsample[level].forward(h, training)  # (N, C, H/2, W/2)
        if self.mid is not None:
            h = self.mid.forward(h, training, ctx)
        for level in reversed(range(len(self.up))):
            if level < len(self.downsample):
                h = upsample2x(h)
            h = np.concatenate([h, kept[level]], axis=1)  # (N, C_below + C_level, H_l, W_l)
            h = self.up[level].forward(h, training, ctx)
        return self.out_conv.forward(self.out_act.forward(h, training), training)

    def backward(self, dy):
        dh = self.out_act.backward(self.out_conv.backward(dy))
        dkept = [None] * len(self.up)
        for level in range(len(self.up)):
            dh = self.up[level].backward(dh)
            dh, dkept[level] = dh[:, :self.split[level]], dh[:, self.split[level]:]
            if level < len(self.downsample):
                dh = upsample2x_backward(dh)
        if self.mid is not None:
            dh = self.mid.backward(dh)
        for level in reversed(range(len(self.down))):
            if level < len(self.downsample):
                dh = self.downsample[level].backward(dh)
            dh = self.down[level].backward(dh + dkept[level])
        return self.stem.backward(dh)

    def flops(self):
        return sum(layer.flops() for layer in self.children.values())

    @classmethod
    def grad_cases(cls):
        t = {"ctx": {"t": np.array([3, 250])}}
        return [
            GradCase({"base_channels": 1, "channel_mults": [1, 2, 1], "time_dim": 2, "out_channels": 2,
                      "zero_init": False, "activation": "tanh"}, (1, 4, 4), batch=2, extra=t),
            GradCase({"base_channels": 1, "channel_mults": [1, 2], "blocks": 2, "mid_blocks": 0, "time_dim": 2,
                      "zero_init": False}, (1, 2, 2), batch=2, extra=t, note="two blocks per level, no middle"),
        ]
