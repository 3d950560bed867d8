"""Embedding: integer token ids (N, ...) -> rows of a learned table (N, ..., D).

The param ``weight`` (vocab_size, dim) is torch.nn.Embedding's ``weight``.
With ``padding_idx`` set, that row starts at zero and never gets a gradient
(as in torch), and forward writes the batch context's key padding mask
(tokens == padding_idx), (N, T) bool, for attention layers to read
(layers/context.py).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from .. import backend as B
from .base import GradCase, Layer, LayerConfig, register_layer


@register_layer("embedding")
class Embedding(Layer):
    """Integer token ids (T,) -> learned vectors (T, dim); ids equal to padding_idx (if set) are masked for attention."""

    class Config(LayerConfig):
        type: Literal["embedding"] = "embedding"
        vocab_size: int = Field(gt=0, description="number of token ids (ids run from 0 to vocab_size - 1)")
        dim: int = Field(gt=0, description="embedding size D")
        padding_idx: int | None = Field(
            None, ge=0, description="token id of padding: its row stays zero, gets no gradient, and "
                                    "marks the batch's key padding mask for attention")

        @model_validator(mode="after")
        def _padding_in_vocab(self):
            if self.padding_idx is not None and self.padding_idx >= self.vocab_size:
                raise ValueError(f"padding_idx {self.padding_idx} is outside the vocabulary "
                                 f"(vocab_size {self.vocab_size})")
            return self

    def build(self, in_shape):
        c = self.config
        weight = B.asarray(self.rng.standard_normal((c.vocab_size, c.dim)))  # (V, D), N(0, 1) like torch
        if c.padding_idx is not None:
            weight[c.padding_idx] = 0
        self.add_param("weight", weight)
        return (*in_shape, c.dim)

    uses_context = True

    def forward(self, x, training, ctx=None):
        tokens = np.asarray(x).astype(np.intp, copy=False)  # (N, ...); float ids are truncated
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), "
                             f"got [{tokens.min()}, {tokens.max()}]")
        self.tokens = tokens
        if self.config.padding_idx is not None and ctx is not None:
            ctx.set_padding(tokens == self.config.padding_idx, self.type_name)  # (N, T) bool
        return self.params["weight"][tokens]  # (N, ..., D)

    def backward(self, dy):
        """Scatter-adds dy into the rows looked up; returns zeros for dx.

        The output is piecewise constant in the (integer) ids, so dL/dx = 0.
        """
        ids = self.tokens.reshape(-1)  # (M,)
        dy2 = dy.reshape(len(ids), -1)  # (M, D)
        if self.config.padding_idx is not None:
            keep = ids != self.config.padding_idx
            ids, dy2 = ids[keep], dy2[keep]
        np.add.at(self.grads["weight"], ids, dy2)
        return B.zeros(self.tokens.shape, dtype=dy.dtype)

    @classmethod
    def grad_cases(cls):
        return [
            GradCase({"vocab_size": 7, "dim": 4}, (5,), int_high=7),
            # The padding row is frozen (zero gradient by definition, not by derivative), so ids
            # here avoid it; tests/test_recurrent.py checks its gradient stays zero.
            GradCase({"vocab_size": 5, "dim": 3, "padding_idx": 4}, (6,), int_high=4),
            GradCase({"vocab_size": 6, "dim": 2}, (2, 3), int_high=6, note="ids of any shape"),
        ]
