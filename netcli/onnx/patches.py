"""patch_embed, class_token, mean_pool and select_token (images as token sequences)."""
import numpy as np

from .attention import ints, padding
from .convert import convert, converter


@converter("patch_embed")
def patch_embed(g, layer, x, prefix):
    C, H, W = layer.in_shape
    p = layer.config.patch
    patches = g.op("Reshape", x, g.const(ints(0, C, H // p, p, W // p, p)))
    patches = g.op("Transpose", patches, perm=[0, 2, 4, 1, 3, 5])  # (N, H/p, W/p, C, p, p): row by row
    patches = g.op("Reshape", patches, g.const(ints(0, layer.num_patches, C * p * p)))  # (N, P, C*p*p)
    return convert(g, layer.proj, patches, prefix + "proj.")  # (N, P, D)


@converter("class_token")
def class_token(g, layer, x, prefix):
    D = layer.in_shape[1]
    token = g.op("Reshape", g.param(prefix + "token", layer.params["token"]), g.const(ints(1, 1, D)))
    batch = g.op("Shape", x, start=0, end=1)  # (1,): N
    shape = g.op("Concat", batch, g.const(ints(1, D)), axis=0)  # [N, 1, D]
    g.ctx.prefix += 1  # the padding mask gets an unpadded column in front, as the layer's Context does
    return g.op("Concat", g.op("Expand", token, shape), x, axis=1)  # (N, T+1, D)


@converter("mean_pool")
def mean_pool(g, layer, x, prefix):
    pad = padding(g) if layer.config.use_padding_mask else None
    if pad is None:
        return g.op("ReduceMean", x, axes=[1], keepdims=0)  # (N, D)
    keep = g.op("Cast", g.op("Not", pad), to=g.onnx.TensorProto.FLOAT)  # (N, T)
    count = g.op("Max", g.op("ReduceSum", keep, g.const(ints(1)), keepdims=1), g.const(np.float32(1)))  # (N, 1)
    w = g.op("Unsqueeze", g.op("Div", keep, count), g.const(ints(2)))  # (N, T, 1): all zeros for all padding
    return g.op("ReduceSum", g.op("Mul", x, w), g.const(ints(1)), keepdims=0)  # (N, D)


@converter("select_token")
def select_token(g, layer, x, prefix):
    token = g.op("Gather", x, g.const(ints(layer.config.index)), axis=1)  # (N, 1, D); negative: from the end
    return g.op("Squeeze", token, g.const(ints(1)))  # (N, D)
