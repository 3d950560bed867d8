"""classifier and regressor: one input (N, *input_shape), the network, its logits (and probabilities) or values."""
from .convert import convert, model_converter


def input_dtype(info) -> str:
    """float32 for real-valued inputs (whatever the run trained in), the run's integer type for token ids."""
    return info.input_dtype if info.input_dtype.startswith(("int", "uint")) else "float32"


def network_input(g, info) -> str:
    return g.input("input", (None, *info.input_shape), input_dtype(info))


@model_converter("classifier")
def classifier(g, model, info):
    logits = convert(g, model.net, network_input(g, info), "net.")  # (N, [T,] C)
    shape = (None, *info.target_shape, info.num_classes)
    g.output(logits, "logits", shape)
    g.output(g.op("Softmax", logits, axis=-1), "probabilities", shape)


@model_converter("regressor")
def regressor(g, model, info):
    g.output(convert(g, model.net, network_input(g, info), "net."), "output", (None, *info.target_shape))
