"""Float64 parity with PyTorch for the core layers: forward output, input gradient and every parameter gradient."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from netcli import backend as B  # noqa: E402
from netcli.gradcheck import make_layer  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8


def build(layer_type, config, in_shape, seed=0):
    with B.dtype_scope("float64"):
        layer = make_layer(layer_type, config)
        layer.setup(in_shape, np.random.default_rng(seed))
    return layer


def close(a, b):
    np.testing.assert_allclose(a, b.detach().numpy() if isinstance(b, torch.Tensor) else b, rtol=RTOL, atol=ATOL)


def check_parity(layer, module, x, params=(), training=True, seed=1):
    """Run both on ``x`` with the same upstream gradient; compare y, dx and the named param grads.

    ``params`` pairs a netcli param name with the torch parameter it was copied into.
    """
    for name, tp in params:
        with torch.no_grad():
            tp.copy_(torch.from_numpy(layer.params[name]))
    module.train(training)
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    y = layer.forward(x, training)
    close(y, yt)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    close(layer.backward(dy), xt.grad)
    for name, tp in params:
        close(layer.grads[name], tp.grad)


def randomise(layer, rng):
    """Non-trivial values for every param (biases and norm scales start at 0 and 1)."""
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)


# -- convolution --------------------------------------------------------------

CONV_CASES = [  # (netcli config, input shape (C, H, W), torch.nn.Conv2d keyword arguments)
    ({"filters": 4, "kernel": 3}, (3, 7, 6), {"kernel_size": 3}),
    ({"filters": 5, "kernel": 3, "stride": 2, "padding": 1}, (2, 9, 8), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ({"filters": 3, "kernel": [2, 4], "stride": [1, 2], "padding": [1, 0]}, (2, 6, 9),
     {"kernel_size": (2, 4), "stride": (1, 2), "padding": (1, 0)}),
    ({"filters": 2, "kernel": 4, "padding": "same"}, (3, 6, 5), {"kernel_size": 4, "padding": "same"}),
    ({"filters": 6, "kernel": 1, "bias": False}, (4, 3, 3), {"kernel_size": 1, "bias": False}),
    ({"filters": 8, "kernel": 3, "padding": 1}, (1, 28, 28), {"kernel_size": 3, "padding": 1}),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("config,in_shape,kwargs", CONV_CASES)
def test_conv2d_matches_torch(config, in_shape, kwargs):
    rng = np.random.default_rng(0)
    layer = build("conv2d", config, in_shape)
    randomise(layer, rng)
    conv = torch.nn.Conv2d(in_shape[0], config["filters"], **kwargs).double()
    params = [("W", conv.weight)] + ([("b", conv.bias)] if config.get("bias", True) else [])
    check_parity(layer, conv, rng.standard_normal((3, *in_shape)), params)


# -- pooling ------------------------------------------------------------------

def tie_heavy(rng, shape):
    """ReLU'd normals rounded to one decimal: many exact zeros and repeated values, like MNIST."""
    return np.round(np.maximum(rng.standard_normal(shape), 0), 1)


POOL_CASES = [  # (netcli config, input shape, torch keyword arguments)
    ({"size": 2}, (3, 8, 6), {"kernel_size": 2}),
    ({"size": 2}, (2, 7, 5), {"kernel_size": 2}),
    ({"size": [2, 3], "stride": [1, 2]}, (2, 6, 9), {"kernel_size": (2, 3), "stride": (1, 2)}),
    ({"size": 3, "stride": 1}, (2, 6, 6), {"kernel_size": 3, "stride": 1}),
    ({"size": 3, "stride": 2, "padding": 1}, (2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
]


@pytest.mark.parametrize("config,in_shape,kwargs", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_matches_torch(config, in_shape, kwargs, ties):
    rng = np.random.default_rng(0)
    x = tie_heavy(rng, (4, *in_shape)) if ties else rng.standard_normal((4, *in_shape))
    if ties:
        assert (x == 0).mean() > 0.4
    check_parity(build("maxpool2d", config, in_shape), torch.nn.MaxPool2d(**kwargs), x)


def test_maxpool_routes_a_tied_gradient_to_the_first_maximum():
    layer = build("maxpool2d", {"size": 2}, (1, 2, 2))
    layer.forward(np.zeros((1, 1, 2, 2)), True)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("config,in_shape,kwargs", POOL_CASES)
def test_avgpool_matches_torch(config, in_shape, kwargs):
    x = np.random.default_rng(0).standard_normal((4, *in_shape))
    check_parity(build("avgpool2d", config, in_shape), torch.nn.AvgPool2d(**kwargs), x)


def test_global_avg_pool_matches_torch():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    check_parity(build("global_avg_pool", {}, (4, 5, 6)), module, x)


# -- normalisation ------------------------------------------------------------

class ChannelsLast(torch.nn.Module):
    """BatchNorm1d over the last axis of (N, T, F), the way netcli's batchnorm treats sequences."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


BN_CASES = [  # (input shape, torch module)
    ((5,), lambda: torch.nn.BatchNorm1d(5)),
    ((3, 4, 5), lambda: torch.nn.BatchNorm2d(3)),
    ((6, 4), lambda: ChannelsLast(torch.nn.BatchNorm1d(4))),
]


@pytest.mark.parametrize("in_shape,make", BN_CASES)
def test_batchnorm_matches_torch_in_train_and_eval_with_running_stats(in_shape, make):
    rng = np.random.default_rng(0)
    layer = build("batchnorm", {"momentum": 0.2}, in_shape)
    randomise(layer, rng)
    module = make().double()
    bn = module.bn if isinstance(module, ChannelsLast) else module
    bn.momentum = 0.2
    params = [("gamma", bn.weight), ("beta", bn.bias)]
    for step in range(4):  # batches with a shifted, scaled distribution
        x = 3 + 2 * rng.standard_normal((6, *in_shape))
        for _, tp in params:
            tp.grad = None
        for g in layer.grads.values():
            g[...] = 0
        check_parity(layer, module, x, params, training=True, seed=step)
    close(layer.buffers["running_mean"], bn.running_mean)
    close(layer.buffers["running_var"], bn.running_var)
    for _, tp in params:
        tp.grad = None
    for g in layer.grads.values():
        g[...] = 0
    check_parity(layer, module, 3 + 2 * rng.standard_normal((6, *in_shape)), params, training=False)


def test_batchnorm_without_affine_matches_torch():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5))
    check_parity(build("batchnorm", {"affine": False}, (3, 5, 5)), torch.nn.BatchNorm2d(3, affine=False).double(), x)


@pytest.mark.parametrize("in_shape,dims", [((7,), 1), ((4, 6), 1), ((3, 4, 5), 2)])
def test_layernorm_matches_torch(in_shape, dims):
    rng = np.random.default_rng(0)
    layer = build("layernorm", {"normalized_dims": dims}, in_shape)
    randomise(layer, rng)
    module = torch.nn.LayerNorm(in_shape[-dims:]).double()
    check_parity(layer, module, 1 + 3 * rng.standard_normal((5, *in_shape)),
                 [("gamma", module.weight), ("beta", module.bias)])


# -- activations --------------------------------------------------------------

ACTIVATIONS = [
    ("sigmoid", {}, torch.nn.Sigmoid()),
    ("tanh", {}, torch.nn.Tanh()),
    ("relu", {}, torch.nn.ReLU()),
    ("leaky_relu", {}, torch.nn.LeakyReLU()),
    ("leaky_relu", {"negative_slope": 0.2}, torch.nn.LeakyReLU(0.2)),
    ("gelu", {}, torch.nn.GELU()),
    ("gelu", {"approximate": "tanh"}, torch.nn.GELU(approximate="tanh")),
    ("softmax", {}, torch.nn.Softmax(dim=-1)),
    ("identity", {}, torch.nn.Identity()),
]


@pytest.mark.parametrize("name,config,module", ACTIVATIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_activation_matches_torch(name, config, module):
    x = 3 * np.random.default_rng(0).standard_normal((4, 3, 6))
    x[0, 0, :3] = [-800, 800, 0.5]  # far tails must not overflow
    check_parity(build(name, config, (3, 6)), module, x)


# -- dropout ------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_scales_like_torch_and_keeps_the_mean(rate):
    x = np.random.default_rng(0).standard_normal((4, 25))
    layer = build("dropout", {"rate": rate}, (25,), seed=3)
    ys = np.stack([layer.forward(x, True) for _ in range(4000)])  # (draws, 4, 25)
    kept = ys != 0
    np.testing.assert_allclose(ys[kept], np.broadcast_to(x / (1 - rate), ys.shape)[kept], rtol=1e-12)
    assert abs(kept.mean() - (1 - rate)) < 0.01
    sem = np.abs(x) * np.sqrt(rate / (1 - rate) / len(ys))  # standard error of the mean over draws
    assert np.all(np.abs(ys.mean(axis=0) - x) < 5 * sem + 1e-12)

    yt = torch.nn.functional.dropout(torch.from_numpy(x), p=rate, training=True).numpy()
    np.testing.assert_allclose(yt[yt != 0], (x / (1 - rate))[yt != 0], rtol=1e-12)  # torch scales the same way
