"""Transformer family against PyTorch in float64: outputs and every gradient, masks included."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from netcli import backend as B  # noqa: E402
from netcli.layers.attention import MultiheadAttention  # noqa: E402
from netcli.layers.base import named_params  # noqa: E402
from netcli.layers.context import Context  # noqa: E402
from netcli.layers.patches import PatchEmbed  # noqa: E402
from netcli.layers.transformer import TransformerEncoder  # noqa: E402

TOL = dict(rtol=1e-6, atol=1e-8)
N, T, D, H = 3, 5, 8, 2
PAD = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]], dtype=bool)  # (N, T) True = padding


def t(a):
    return torch.tensor(np.ascontiguousarray(a))


def run(layer, x, R, ctx=None):
    """Our forward (training, no dropout) and backward with dL/dy = R; returns y, dx, grads by name."""
    for _, _, g in named_params(layer):
        g[...] = 0
    y = layer.call(x.copy(), True, ctx or Context())
    dx = layer.backward(R.copy())
    return y, dx, {name: g for name, _, g in named_params(layer)}


def run_torch(module, x, R, *args, **kwargs):
    xt = t(x).requires_grad_()
    y = module(xt, *args, **kwargs)
    y = y[0] if isinstance(y, tuple) else y
    y.backward(t(R))
    return y.detach().numpy(), xt.grad.numpy()


def mha_pairs(ours: MultiheadAttention, attn, prefix: str = "") -> dict[str, "torch.Tensor"]:
    """Our param name -> the torch parameter holding it (transposed, for weights)."""
    return {f"{prefix}qkv.W": attn.in_proj_weight, f"{prefix}qkv.b": attn.in_proj_bias,
            f"{prefix}out.W": attn.out_proj.weight, f"{prefix}out.b": attn.out_proj.bias}


def block_pairs(i: int, layer: "torch.nn.TransformerEncoderLayer") -> dict[str, "torch.Tensor"]:
    """Block i of a transformer_encoder: attn, drop1, norm1, norm2, ffn (dense, act, drop, dense, drop)."""
    b = f"blocks.{i}."
    return {f"{b}norm1.gamma": layer.norm1.weight, f"{b}norm1.beta": layer.norm1.bias,
            **mha_pairs(None, layer.self_attn, f"{b}attn."),
            f"{b}norm2.gamma": layer.norm2.weight, f"{b}norm2.beta": layer.norm2.bias,
            f"{b}ffn.0.W": layer.linear1.weight, f"{b}ffn.0.b": layer.linear1.bias,
            f"{b}ffn.3.W": layer.linear2.weight, f"{b}ffn.3.b": layer.linear2.bias}


def copy_params(ours, pairs: dict):
    with torch.no_grad():
        for name, p, _ in named_params(ours):
            pairs[name].copy_(t(p.T))


def assert_grads_match(ours: dict, theirs: dict):
    assert ours.keys() == theirs.keys()
    for name, g in ours.items():
        np.testing.assert_allclose(g, theirs[name].grad.numpy().T, **TOL, err_msg=name)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_multihead_attention_matches_torch(causal, padded):
    rng = np.random.default_rng(0)
    with B.dtype_scope("float64"):
        ctx = Context(key_padding_mask=PAD if padded else None)
        ours = MultiheadAttention(heads=H, causal=causal)
        ours.setup((T, D), np.random.default_rng(1))
        x, R = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, D))
        y, dx, grads = run(ours, x, R, ctx)

    attn = torch.nn.MultiheadAttention(D, H, batch_first=True, dtype=torch.float64)
    pairs = mha_pairs(ours, attn)
    copy_params(ours, pairs)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    ty, tdx = run_torch(lambda z: attn(z, z, z, key_padding_mask=t(PAD) if padded else None, attn_mask=mask,
                                       need_weights=False), x, R)
    np.testing.assert_allclose(y, ty, **TOL)
    np.testing.assert_allclose(dx, tdx, **TOL)
    assert_grads_match(grads, pairs)


@pytest.mark.parametrize("bias", [True, False])
def test_patch_embed_matches_torch_strided_conv(bias):
    rng = np.random.default_rng(0)
    with B.dtype_scope("float64"):
        ours = PatchEmbed(patch=2, dim=5, bias=bias)
        ours.setup((3, 4, 6), np.random.default_rng(1))
        x, R = rng.standard_normal((2, 3, 4, 6)), rng.standard_normal((2, 6, 5))
        y, dx, grads = run(ours, x, R)

    conv = torch.nn.Conv2d(3, 5, kernel_size=2, stride=2, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(t(ours.proj.params["W"].T.reshape(5, 3, 2, 2)))
        if bias:
            conv.bias.copy_(t(ours.proj.params["b"]))
    ty, tdx = run_torch(lambda z: conv(z).flatten(2).transpose(1, 2), x, R)  # (N, patches, D), ViT order
    np.testing.assert_allclose(y, ty, **TOL)
    np.testing.assert_allclose(dx, tdx, **TOL)
    np.testing.assert_allclose(grads["proj.W"], conv.weight.grad.numpy().reshape(5, -1).T, **TOL)
    if bias:
        np.testing.assert_allclose(grads["proj.b"], conv.bias.grad.numpy(), **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masked", [False, True])
def test_transformer_encoder_matches_torch(norm_first, activation, masked):
    """Two stacked blocks against two torch.nn.TransformerEncoderLayer(batch_first=True) in a row."""
    rng = np.random.default_rng(0)
    with B.dtype_scope("float64"):
        ours = TransformerEncoder(blocks=2, heads=H, ffn=12, activation=activation, dropout=0.0,
                                  norm_first=norm_first, causal=masked)
        ours.setup((T, D), np.random.default_rng(1))
        x, R = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, D))
        y, dx, grads = run(ours, x, R, Context(key_padding_mask=PAD if masked else None))

    layers = [torch.nn.TransformerEncoderLayer(D, H, 12, dropout=0.0, activation=activation, batch_first=True,
                                               norm_first=norm_first, dtype=torch.float64) for _ in range(2)]
    pairs = {k: v for i, layer in enumerate(layers) for k, v in block_pairs(i, layer).items()}
    copy_params(ours, pairs)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if masked else None
    pad = t(PAD) if masked else None

    def encoder(z):
        for layer in layers:
            z = layer(z, src_mask=mask, src_key_padding_mask=pad)
        return z

    ty, tdx = run_torch(encoder, x, R)
    np.testing.assert_allclose(y, ty, **TOL)
    np.testing.assert_allclose(dx, tdx, **TOL)
    assert_grads_match(grads, pairs)
