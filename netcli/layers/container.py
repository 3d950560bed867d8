"""Sequential: a list of layers applied in order; the builder's unit of composition."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import GradCase, Layer, LayerConfig, ShapeError, has_params, register_layer
from .context import Context


def build_layers(specs: list[LayerConfig]) -> list[Layer]:
    """Instantiate layers from their validated configs through the registry."""
    from ..registry import LAYERS

    return [LAYERS.get(spec.type)(spec) for spec in specs]


@register_layer("sequential")
class Sequential(Layer):
    """Its layers applied in order (a block inside a layer list, e.g. to repeat or nest one)."""

    class Config(LayerConfig):
        type: Literal["sequential"] = "sequential"
        layers: list["LayerSpec"] = Field(min_length=1, description="layers applied in order")  # noqa: F821

    is_list = True
    uses_context = True

    def __init__(self, config=None, *, of: list[Layer] | None = None, **options):
        """From a config (the YAML's list), or ``of``: layers a composite made itself (``Sequential(of=blocks)``)."""
        if of is not None:
            config = self.Config.model_construct(type="sequential", layers=[])
        super().__init__(config, **options)
        self.layers = of if of is not None else build_layers(self.config.layers)

    def build(self, in_shape):
        shape = in_shape
        needs_grad = self.needs_input_grad  # a layer needs dL/dx if anything before it learns
        for i, layer in enumerate(self.layers):
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if layer.reads_next_layer:
                layer.next_layer = nxt.type_name if nxt is not None else None
            try:
                shape = self.child(str(i), layer, shape, needs_input_grad=needs_grad).out_shape
            except ShapeError as e:
                if not e.path:
                    e.message = f"{layer.type_name} on input shape {shape}: {e.message}"
                e.path[:0] = ["layers", i]
                raise
            needs_grad = needs_grad or has_params(layer)
        return shape

    def forward(self, x, training, ctx=None):
        """``ctx``: the batch's Context (a fresh empty one when the caller has none)."""
        ctx = Context() if ctx is None else ctx
        for layer in self.layers:
            x = layer.call(x, training, ctx)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
            if dy is None:  # nothing before this layer learns
                break
        return dy

    def describe(self):
        return ""  # its layers are rows of their own

    def flops(self):
        return sum(layer.flops() for layer in self.layers)

    @classmethod
    def grad_cases(cls):
        return [GradCase({"layers": [{"type": "dense", "units": 4}, {"type": "dense", "units": 2}]}, (3,))]
