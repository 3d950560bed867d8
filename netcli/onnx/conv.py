"""conv2d: ONNX Conv is the same NCHW cross-correlation with (O, C, kh, kw) weights."""
from .convert import converter


@converter("conv2d")
def conv2d(g, layer, x, prefix):
    kh, kw, sh, sw, _, _ = layer.geometry
    (pt, pb), (pl, pr) = layer.pads  # "same" with an even kernel: the extra row/column after, as in the layer
    inputs = [x, g.param(prefix + "W", layer.params["W"])]
    if layer.config.bias:
        inputs.append(g.param(prefix + "b", layer.params["b"]))
    return g.op("Conv", *inputs, kernel_shape=[kh, kw], strides=[sh, sw], pads=[pt, pl, pb, pr])  # (N, O, OH, OW)
