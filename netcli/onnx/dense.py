"""dense: y = x W + b over the last axis (MatMul broadcasts over any leading axes)."""
from .convert import converter


@converter("dense")
def dense(g, layer, x, prefix):
    y = g.op("MatMul", x, g.param(prefix + "W", layer.params["W"]))  # (N, ..., F) @ (F, U) -> (N, ..., U)
    if layer.config.bias:
        y = g.op("Add", y, g.param(prefix + "b", layer.params["b"]))
    return y
