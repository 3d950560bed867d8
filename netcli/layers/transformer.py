"""Transformer encoder: a stack of blocks, each torch.nn.TransformerEncoderLayer(batch_first=True).

Post-norm (``norm_first: false``, the original paper):

    h = norm1(x + drop1(attn(x)))
    y = norm2(h + ffn(h))

Pre-norm (``norm_first: true``):

    h = x + drop1(attn(norm1(x)))
    y = h + ffn(norm2(h))

with ffn(z) = drop2(dense_D(drop(act(dense_ffn(z))))) applied to every token,
and the same dropout rate in all four places (attention probabilities
included). A pre-norm stack usually wants a final ``layernorm`` after it.

The block is built from registered layers with ``child`` (attn, drop1,
norm1, norm2, and ffn: a Sequential of dense, activation, dropout, dense,
dropout); everything but attention sees the tokens as the rows of an
(N*T, D) matrix. The encoder's blocks are a Sequential too, so parameter
keys read ``blocks.0.attn.qkv.W``, ``blocks.0.ffn.3.b``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from .attention import MultiheadAttention
from .base import GradCase, Layer, LayerConfig, register_layer
from .container import Sequential
from .positional import sequence_shape


class EncoderBlock(Layer):
    """One encoder block; built by ``transformer_encoder`` from its config."""

    type_name = "encoder_block"
    uses_context = True

    def build(self, in_shape):
        T, D = in_shape
        cfg = self.config
        self.attn = self.child("attn", MultiheadAttention(heads=cfg.heads, dropout=cfg.dropout, causal=cfg.causal,
                                                          use_padding_mask=cfg.use_padding_mask), in_shape)
        # the rest works token by token, on (N*T, D) rows
        self.drop1 = self.child("drop1", {"type": "dropout", "rate": cfg.dropout}, (D,))
        self.norm1 = self.child("norm1", {"type": "layernorm", "eps": cfg.eps}, (D,))
        self.norm2 = self.child("norm2", {"type": "layernorm", "eps": cfg.eps}, (D,))
        self.ffn = self.child("ffn", {"type": "sequential", "layers": [  # He init before relu/gelu: Sequential's
            {"type": "dense", "units": cfg.ffn}, cfg.activation, {"type": "dropout", "rate": cfg.dropout},
            {"type": "dense", "units": D}, {"type": "dropout", "rate": cfg.dropout}]}, (D,))
        return in_shape

    def _attn_forward(self, z, shape, training, ctx):
        a = self.attn.forward(z.reshape(shape), training, ctx)  # (N, T, D)
        return self.drop1.forward(a.reshape(z.shape), training)  # (N*T, D)

    def _attn_backward(self, dz, shape):
        da = self.drop1.backward(dz).reshape(shape)  # (N, T, D)
        return self.attn.backward(da).reshape(dz.shape)  # (N*T, D)

    def forward(self, x, training, ctx):
        N, T, D = x.shape
        x2 = x.reshape(N * T, D)
        if self.config.norm_first:
            h = x2 + self._attn_forward(self.norm1.forward(x2, training), x.shape, training, ctx)
            y = h + self.ffn.forward(self.norm2.forward(h, training), training)
        else:
            h = self.norm1.forward(x2 + self._attn_forward(x2, x.shape, training, ctx), training)
            y = self.norm2.forward(h + self.ffn.forward(h, training), training)
        return y.reshape(N, T, D)

    def backward(self, dy):
        N, T, D = dy.shape
        dy2 = dy.reshape(N * T, D)
        if self.config.norm_first:
            dh = dy2 + self.norm2.backward(self.ffn.backward(dy2))
            dx = dh + self.norm1.backward(self._attn_backward(dh, dy.shape))
        else:
            dz = self.norm2.backward(dy2)  # dL/d(h + ffn(h))
            dh = self.norm1.backward(dz + self.ffn.backward(dz))  # dL/d(x + attn(x))
            dx = dh + self._attn_backward(dh, dy.shape)
        return dx.reshape(N, T, D)

    def flops(self):
        T, _ = self.in_shape
        return self.attn.flops() + T * self.ffn.flops()


@register_layer("transformer_encoder")
class TransformerEncoder(Layer):
    """``blocks`` encoder blocks in a row over (N, T, D) sequences; output (N, T, D)."""

    class Config(LayerConfig):
        type: Literal["transformer_encoder"] = "transformer_encoder"
        blocks: int = Field(1, gt=0, description="number of stacked encoder blocks")
        heads: int = Field(gt=0, description="attention heads per block; must divide D")
        ffn: int = Field(gt=0, description="hidden width of the position-wise feed-forward network")
        activation: Literal["relu", "gelu"] = Field("relu", description="activation inside the feed-forward network")
        dropout: float = Field(0.1, ge=0, lt=1, description="dropout rate (attention probabilities, both residual "
                                                              "branches and inside the feed-forward network)")
        norm_first: bool = Field(False, description="pre-norm (layernorm before each sub-block) instead of post-norm")
        causal: bool = Field(False, description="position t attends to positions <= t only")
        use_padding_mask: bool = Field(True, description="ignore keys marked in the batch's key padding mask if any")
        eps: float = Field(1e-5, gt=0, description="layernorm epsilon")

    uses_context = True

    def build(self, in_shape):
        sequence_shape("transformer_encoder", in_shape)
        blocks = [EncoderBlock(self.config) for _ in range(self.config.blocks)]
        self.blocks = self.child("blocks", Sequential(of=blocks), in_shape, self.needs_input_grad)
        return in_shape

    def forward(self, x, training, ctx=None):
        return self.blocks.forward(x, training, ctx)

    def backward(self, dy):
        return self.blocks.backward(dy)

    def flops(self):
        return self.blocks.flops()

    @classmethod
    def grad_cases(cls):
        pad = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]], dtype=bool)  # (3, 4) True = padding
        base = {"heads": 2, "ffn": 6, "dropout": 0.0}
        return [
            GradCase({**base}, (4, 4), note="post-norm"),
            GradCase({**base, "norm_first": True, "activation": "gelu"}, (4, 4), note="pre-norm"),
            GradCase({**base, "blocks": 2, "causal": True}, (3, 4), batch=2),
            GradCase({**base, "blocks": 2, "norm_first": True}, (4, 4), extra={"ctx": {"key_padding_mask": pad}}),
            GradCase({**base, "dropout": 0.2}, (4, 4), note="dropout, training"),
            GradCase({**base, "dropout": 0.2, "norm_first": True, "activation": "gelu"}, (4, 4)),
        ]
