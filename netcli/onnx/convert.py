"""Converters from netcli layers and models to ONNX, in registries keyed by their type names.

    @converter("dense")
    def dense(g, layer, x, prefix):            # prefix: the layer's checkpoint path, "net.3."
        return g.op("Add", g.op("MatMul", x, g.param(prefix + "W", layer.params["W"])), ...)

    y = convert(g, layer, x, prefix)           # dispatch on layer.type_name; ExportError when none

    @model_converter("classifier")
    def classifier(g, model, info): ...        # declares the graph's inputs and outputs

A converter gets a built layer in eval mode terms (dropout is the identity,
batch norm uses its running statistics) and returns the value name of its
output; it may read the layer's shapes (``layer.in_shape``, ``layer.out_shape``,
no batch dimension) and ``g.ctx`` for the batch's side inputs. A plugin adds
one for its own layer with the same decorator.
"""
from __future__ import annotations

from typing import Callable

from ..errors import UserError
from ..layers.base import Layer

LayerConverter = Callable[..., str]
CONVERTERS: dict[str, LayerConverter] = {}
MODEL_CONVERTERS: dict[str, Callable] = {}


class ExportError(UserError):
    """A model or layer that ONNX export cannot express; the message names it and where it is."""


def converter(type_name: str):
    """Decorator: ``fn(g, layer, x, prefix) -> output value`` converts layers of ``type_name``."""
    def add(fn):
        CONVERTERS[type_name] = fn
        return fn
    return add


def model_converter(type_name: str):
    """Decorator: ``fn(g, model, info)`` declares the inputs and outputs of models of ``type_name``."""
    def add(fn):
        MODEL_CONVERTERS[type_name] = fn
        return fn
    return add


def convert(g, layer: Layer, x: str, prefix: str) -> str:
    """The ONNX value of ``layer`` applied to ``x``; ``prefix`` is its checkpoint path (``net.2.``)."""
    fn = CONVERTERS.get(layer.type_name)
    if fn is None:
        where = prefix.rstrip(".") or "the model"
        raise ExportError(f"layer '{layer.type_name}' at {where} cannot be exported to ONNX (no converter); "
                          f"exportable layers: {', '.join(sorted(CONVERTERS))}")
    return fn(g, layer, x, prefix)


def convert_model(g, model, info) -> None:
    fn = MODEL_CONVERTERS.get(model.type_name)
    if fn is None:
        raise ExportError(f"a {model.type_name} model cannot be exported to ONNX; exportable model types: "
                          f"{', '.join(sorted(MODEL_CONVERTERS))}")
    fn(g, model, info)


@converter("sequential")
def sequential(g, layer, x, prefix):
    for name, child in layer.children.items():  # "0", "1", ...: in order, as forward runs them
        x = convert(g, child, x, f"{prefix}{name}.")
    return x
