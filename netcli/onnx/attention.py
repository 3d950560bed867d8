"""multihead_attention written out in MatMul, Softmax and Where (ONNX has no attention op before opset 23).

    q, k, v = heads of the projections          # each (N, H, T, dh)
    S = (q / sqrt(dh)) k^T                      # (N, H, T, T)
    P = softmax(where(blocked, -inf, S))        # blocked: causal and/or key padding, (N or 1, 1, T, T)
    P = where(blocked, 0, P)                    # a query whose keys are all blocked attends to nothing
    out = out_proj(heads of P v side by side)   # (N, T, D)

The second ``where`` is the layer's rule for fully masked rows (a zero row,
a zero output; softmax alone gives NaN there); elsewhere it changes nothing,
as the blocked entries are already exactly zero. The key padding mask is the
graph context's (an embedding with ``padding_idx`` writes it, or a graph
input), with an unpadded column for each token prepended after it was written.
"""
import math

import numpy as np

from .convert import convert, converter


def ints(*values):
    """An int64 vector (ONNX's shapes, axes, pads)."""
    return np.array(values, np.int64)


def padding(g):
    """The context's key padding mask (N, T) bool, prepended tokens unpadded; None if the batch has none."""
    pad = g.ctx.key_padding_mask
    if pad is None or not g.ctx.prefix:
        return pad
    # (N, L) -> (N, prefix + L): Pad in float (onnxruntime pads no bool tensors), then back to bool
    padded = g.op("Pad", g.op("Cast", pad, to=g.onnx.TensorProto.FLOAT), g.const(ints(0, g.ctx.prefix, 0, 0)))
    return g.op("Cast", padded, to=g.onnx.TensorProto.BOOL)


def blocked(g, layer, T: int):
    """Where attention is not allowed, broadcastable to (N, H, T, T), bool; None if nowhere."""
    mask = g.const(np.triu(np.ones((T, T), dtype=bool), k=1)) if layer.config.causal else None  # (T, T)
    pad = padding(g) if layer.config.use_padding_mask else None
    if pad is not None:
        pad = g.op("Unsqueeze", pad, g.const(ints(1, 2)))  # (N, 1, 1, T)
        mask = pad if mask is None else g.op("Or", pad, mask)  # (N, 1, T, T)
    return mask


def heads(g, proj, shape, perm):
    """(N, T, ...) projections reshaped to (N, T, *shape) and transposed by ``perm``: their heads."""
    return g.op("Transpose", g.op("Reshape", proj, g.const(ints(0, 0, *shape))), perm=perm)


@converter("multihead_attention")
def multihead_attention(g, layer, x, prefix):
    T = layer.in_shape[0]
    H = layer.config.heads
    dh = layer.dim // H
    if layer.config.fused_qkv:
        qkv = convert(g, layer.proj["qkv"], x, prefix + "qkv.")  # (N, T, 3*dim)
        qkv = heads(g, qkv, (3, H, dh), [2, 0, 3, 1, 4])  # (3, N, H, T, dh)
        q, k, v = (g.op("Squeeze", a, g.const(ints(0))) for a in g.op("Split", qkv, axis=0, n_out=3))  # (N, H, T, dh)
    else:
        q, k, v = (heads(g, convert(g, layer.proj[n], x, f"{prefix}{n}."), (H, dh), [0, 2, 1, 3]) for n in "qkv")
    qs = g.op("Mul", q, g.const(np.float32(1 / math.sqrt(dh))))
    s = g.op("MatMul", qs, g.op("Transpose", k, perm=[0, 1, 3, 2]))  # (N, H, T, T)
    mask = blocked(g, layer, T)
    if mask is not None:
        s = g.op("Where", mask, g.const(np.float32(-np.inf)), s)
    p = g.op("Softmax", s, axis=-1)
    if mask is not None:
        p = g.op("Where", mask, g.const(np.float32(0)), p)
    o = g.op("Transpose", g.op("MatMul", p, v), perm=[0, 2, 1, 3])  # (N, T, H, dh)
    o = g.op("Reshape", o, g.const(ints(0, 0, layer.dim)))  # (N, T, dim) heads side by side
    return convert(g, layer.out, o, prefix + "out.")  # (N, T, D)
