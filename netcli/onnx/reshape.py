"""flatten and reshape: the batch axis stays dynamic (Flatten from axis 1; Reshape's 0 copies it)."""
import numpy as np

from .convert import converter


@converter("flatten")
def flatten(g, layer, x, prefix):
    return g.op("Flatten", x, axis=1)  # (N, d1, d2, ...) -> (N, d1*d2*...)


@converter("reshape")
def reshape(g, layer, x, prefix):
    return g.op("Reshape", x, g.const(np.array([0, *layer.out_shape], np.int64)))
