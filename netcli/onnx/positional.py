"""sinusoidal_position and learned_position: x + the first T rows of a table."""
import numpy as np

from .convert import converter


@converter("sinusoidal_position")
def sinusoidal_position(g, layer, x, prefix):
    return g.op("Add", x, g.const(layer.pe))  # (N, T, D) + (T, D), the fixed table built for T


@converter("learned_position")
def learned_position(g, layer, x, prefix):
    T = layer.in_shape[0]
    rows = g.op("Slice", g.param(prefix + "P", layer.params["P"]), g.const(np.array([0], np.int64)),
                g.const(np.array([T], np.int64)), g.const(np.array([0], np.int64)))  # (T, D) of (max_len, D)
    return g.op("Add", x, rows)
