"""maxpool2d, avgpool2d (zero padding counted in the mean) and global_avg_pool over NCHW inputs."""
from .convert import converter


def _window(layer):
    kh, kw, sh, sw, _, _ = layer.geometry
    ph, pw = layer.pads
    return {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": [ph, pw, ph, pw]}


@converter("maxpool2d")
def maxpool2d(g, layer, x, prefix):
    return g.op("MaxPool", x, **_window(layer))  # padding never wins a maximum, as the layer's -inf


@converter("avgpool2d")
def avgpool2d(g, layer, x, prefix):
    return g.op("AveragePool", x, count_include_pad=1, **_window(layer))


@converter("global_avg_pool")
def global_avg_pool(g, layer, x, prefix):
    return g.op("ReduceMean", x, axes=[2, 3], keepdims=0)  # (N, C, H, W) -> (N, C)
