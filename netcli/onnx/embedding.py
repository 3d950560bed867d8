"""embedding: a Gather of the table's rows; with padding_idx it also writes the key padding mask."""
import numpy as np

from .convert import ExportError, converter


@converter("embedding")
def embedding(g, layer, x, prefix):
    ids = g.op("Cast", x, to=g.onnx.TensorProto.INT64)  # float ids are truncated, as the layer's astype
    if layer.config.padding_idx is not None:
        if g.ctx.key_padding_mask is not None:
            raise ExportError(f"{prefix.rstrip('.')}: the batch already has a key padding mask (one writer per batch)")
        g.ctx.key_padding_mask = g.op("Equal", ids, g.const(np.array(layer.config.padding_idx, np.int64)))
        g.ctx.prefix = 0
    return g.op("Gather", g.param(prefix + "weight", layer.params["weight"]), ids, axis=0)  # (N, ..., D)
