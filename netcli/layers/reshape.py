"""Shape-only layers: flatten and reshape. The batch axis is never touched."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from .base import GradCase, Layer, LayerConfig, ShapeError, register_layer


@register_layer("flatten")
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    class Config(LayerConfig):
        type: Literal["flatten"] = "flatten"

    def build(self, in_shape):
        return (math.prod(in_shape),)

    def forward(self, x, training):
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape(len(dy), *self.in_shape)

    @classmethod
    def grad_cases(cls):
        return [GradCase({}, (2, 3, 4)), GradCase({}, (5,))]


@register_layer("reshape")
class Reshape(Layer):
    """(N, *in_shape) -> (N, *shape); one entry of ``shape`` may be -1 (inferred)."""

    class Config(LayerConfig):
        type: Literal["reshape"] = "reshape"
        shape: list[int] = Field(min_length=1, description="target shape without the batch axis; one -1 is inferred")

        @field_validator("shape")
        @classmethod
        def _one_unknown(cls, shape: list[int]) -> list[int]:
            if shape.count(-1) > 1 or any(d == 0 or d < -1 for d in shape):
                raise ValueError("entries must be positive, with at most one -1")
            return shape

    def build(self, in_shape):
        size, shape = math.prod(in_shape), list(self.config.shape)
        known = math.prod(d for d in shape if d != -1)
        if -1 in shape:
            if size % known:
                raise ShapeError(f"reshape: cannot infer -1 in {shape} from {size} entries (input {in_shape})")
            shape[shape.index(-1)] = size // known
        elif known != size:
            raise ShapeError(f"reshape: input {in_shape} has {size} entries, target {shape} has {known}")
        return tuple(shape)

    def forward(self, x, training):
        return x.reshape(len(x), *self.out_shape)

    def backward(self, dy):
        return dy.reshape(len(dy), *self.in_shape)

    @classmethod
    def grad_cases(cls):
        return [GradCase({"shape": [3, 8]}, (4, 6)), GradCase({"shape": [-1, 2]}, (2, 3, 2))]
