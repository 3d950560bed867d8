"""Attention, position encodings, patches and the transformer encoder: values, masks, causality."""
import numpy as np
import pytest

from netcli import backend as B
from netcli.gradcheck import check_arrays
from netcli.layers.attention import MultiheadAttention, attention_backward, attention_forward
from netcli.layers.base import ShapeError
from netcli.layers.context import Context
from netcli.layers.patches import ClassToken, MeanPool, PatchEmbed
from netcli.layers.positional import LearnedPosition, SinusoidalPosition
from netcli.layers.transformer import TransformerEncoder
from netcli.registry import LAYERS


def reference_attention(q, k, v, blocked=None):
    """Plain attention, one (batch, head) at a time; masked scores removed before the softmax."""
    out = np.zeros(q.shape[:-1] + v.shape[-1:])
    for idx in np.ndindex(q.shape[:-2]):
        s = q[idx] @ k[idx].T / np.sqrt(q.shape[-1])
        for i in range(s.shape[0]):
            keep = np.ones(s.shape[1], bool) if blocked is None else ~np.broadcast_to(blocked, q.shape[:-2] + s.shape)[idx][i]
            if keep.any():
                e = np.exp(s[i, keep] - s[i, keep].max())
                out[idx][i] = (e / e.sum()) @ v[idx][keep]
    return out


def qkv(rng, shape=(2, 3, 5, 4)):
    return [rng.standard_normal(shape) for _ in range(3)]


def test_attention_matches_plain_reference(rng):
    q, k, v = qkv(rng)
    blocked = rng.random((2, 1, 5, 5)) < 0.3
    blocked[0, 0, 2] = True  # a query that may attend to nothing
    out, _ = attention_forward(q, k, v, blocked)
    np.testing.assert_allclose(out, reference_attention(q, k, v, blocked), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out[0, :, 2], 0)
    np.testing.assert_allclose(attention_forward(q, k, v)[0], reference_attention(q, k, v), rtol=1e-12)


def test_float_mask_is_added_to_the_scores(rng):
    q, k, v = qkv(rng)
    bias = rng.standard_normal((5, 5))
    blocked = np.triu(np.ones((5, 5), bool), 1)
    additive = np.where(blocked, -np.inf, bias)
    out, (_, _, _, p, *_) = attention_forward(q, k, v, additive)
    s = q @ k.swapaxes(-1, -2) / 2 + additive
    expected = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(p, expected / expected.sum(-1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("mask", ["none", "bool", "float"])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_attention_gradients(rng, mask, dropout):
    q, k, v = qkv(rng, (2, 2, 4, 3))
    masks = {"none": None, "bool": rng.random((2, 1, 4, 4)) < 0.4, "float": rng.standard_normal((4, 4))}
    R = rng.standard_normal((2, 2, 4, 3))

    def loss():
        return float(np.sum(R * attention_forward(q, k, v, masks[mask], dropout, np.random.default_rng(5))[0]))

    def backward():
        _, cache = attention_forward(q, k, v, masks[mask], dropout, np.random.default_rng(5))
        return dict(zip("qkv", attention_backward(R, cache)))

    report = check_arrays(loss, backward, {"q": q, "k": k, "v": v}, rng)
    assert report.ok(1e-7), report


def test_attention_dropout_zeroes_and_rescales_probabilities(rng):
    q, k, v = qkv(rng, (4, 4, 16, 8))
    _, (_, _, _, p, drop, pd) = attention_forward(q, k, v, dropout=0.25, rng=np.random.default_rng(0))
    assert abs((drop == 0).mean() - 0.25) < 0.03
    np.testing.assert_allclose(pd[drop > 0], p[drop > 0] / 0.75)
    assert np.all(pd[drop == 0] == 0)


def mha(rng_seed=1, **options):
    with B.dtype_scope("float64"):
        layer = MultiheadAttention(**{"heads": 2, **options})
        layer.setup((6, 4), np.random.default_rng(rng_seed))
    return layer


def test_masked_keys_get_exactly_zero_attention(rng):
    pad = np.array([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=bool)
    layer = mha(causal=True)
    x = rng.standard_normal((2, 6, 4))
    y = layer.forward(x, True, Context(key_padding_mask=pad))
    p = np.concatenate([cache[3] for cache in layer.caches])  # (N, H, T, T) attention probabilities, all chunks
    blocked = pad[:, None, None, :] | np.triu(np.ones((6, 6), bool), 1)
    assert np.all(p[np.broadcast_to(blocked, p.shape)] == 0)
    np.testing.assert_allclose(p.sum(-1), 1)
    x2 = x.copy()
    x2[0, 4:] = rng.standard_normal((2, 4))  # new padding tokens change nothing the real ones see
    np.testing.assert_array_equal(layer.forward(x2, True, Context(key_padding_mask=pad))[0, :4], y[0, :4])


def test_fully_masked_queries_give_zeros_not_nan(rng):
    pad = np.ones((2, 6), dtype=bool)
    layer = mha()
    y = layer.forward(rng.standard_normal((2, 6, 4)), True, Context(key_padding_mask=pad))
    np.testing.assert_allclose(y, np.broadcast_to(layer.out.params["b"], y.shape))  # only the output bias
    assert np.all(np.isfinite(layer.backward(np.ones_like(y))))


def test_padding_mask_shape_mismatch_is_an_error(rng):
    """The one shape check (Context.padding) names the reader; a mask is never silently dropped."""
    layer = mha()
    with pytest.raises(ValueError, match=r"multihead_attention: key_padding_mask has shape \(3, 6\), the sequence is \(2, 6\)"):
        layer.forward(rng.standard_normal((2, 6, 4)), True, Context(key_padding_mask=np.zeros((3, 6), dtype=bool)))
    with pytest.raises(ValueError, match=r"mean_pool: key_padding_mask has shape \(2, 5\)"):
        pool = MeanPool()
        pool.setup((6, 4), None)
        pool.forward(rng.standard_normal((2, 6, 4)), True, Context(key_padding_mask=np.zeros((2, 5), dtype=bool)))


def assert_causal(layer, rng, shape):
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=False)
    for t in range(1, shape[1] - 1):
        later, earlier = x.copy(), x.copy()
        later[:, t + 1:] += rng.standard_normal(later[:, t + 1:].shape)
        earlier[:, t - 1] += rng.standard_normal(earlier[:, t - 1].shape)
        np.testing.assert_array_equal(layer.forward(later, training=False)[:, : t + 1], y[:, : t + 1])
        changed = np.abs(layer.forward(earlier, training=False) - y).max(axis=-1)  # (N, T)
        assert np.all(changed[:, t - 1:] > 1e-6)  # every position from t-1 on sees the change


def test_causal_attention_only_sees_the_past(rng):
    layer = mha(causal=True)
    assert_causal(layer, rng, (2, 6, 4))
    x = rng.standard_normal((2, 6, 4))  # a prefix alone gives the prefix of the outputs
    np.testing.assert_allclose(layer.forward(x[:, :4], False), layer.forward(x, False)[:, :4], rtol=1e-12)


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_encoder_only_sees_the_past(rng, norm_first):
    with B.dtype_scope("float64"):
        encoder = TransformerEncoder(blocks=2, heads=2, ffn=8, causal=True, norm_first=norm_first)
        encoder.setup((6, 4), np.random.default_rng(0))
    assert_causal(encoder, rng, (2, 6, 4))


def test_encoder_dropout_only_in_training(rng):
    encoder = TransformerEncoder(heads=2, ffn=8, dropout=0.5)
    encoder.setup((6, 4), np.random.default_rng(0))
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(encoder.forward(x, False), encoder.forward(x, False))
    assert not np.allclose(encoder.forward(x, True), encoder.forward(x, False))
    assert encoder.forward(x, True).dtype == np.float32


def test_encoder_flops():
    encoder = TransformerEncoder(blocks=3, heads=2, ffn=8)
    encoder.setup((6, 4), np.random.default_rng(0))
    attention = 2 * 6 * 4 * 4 * 4 + 4 * 6 * 6 * 4
    assert encoder.flops() == 3 * (attention + 6 * 2 * (4 * 8 + 8 * 4))


def test_separate_projections_equal_the_fused_one(rng):
    fused, separate = mha(), mha(fused_qkv=False)
    W, b = fused.proj["qkv"].params["W"], fused.proj["qkv"].params["b"]
    for i, name in enumerate("qkv"):
        separate.proj[name].params["W"][...] = W[:, 4 * i: 4 * i + 4]
        separate.proj[name].params["b"][...] = b[4 * i: 4 * i + 4]
    for key in ("W", "b"):
        separate.out.params[key][...] = fused.out.params[key]
    x, R = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 4))
    np.testing.assert_allclose(separate.forward(x, True), fused.forward(x, True), rtol=1e-12)
    np.testing.assert_allclose(separate.backward(R), fused.backward(R), rtol=1e-12)
    dW = np.concatenate([separate.proj[n].grads["W"] for n in "qkv"], axis=1)
    np.testing.assert_allclose(dW, fused.proj["qkv"].grads["W"], rtol=1e-12)


def test_multihead_attention_options_and_flops():
    layer = mha(dim=8, heads=4)
    assert layer.proj["qkv"].params["W"].shape == (4, 24) and layer.out.params["W"].shape == (8, 4)
    assert layer.flops() == 2 * 6 * 4 * 8 * 4 + 4 * 6 * 6 * 8
    with pytest.raises(ShapeError, match="divisible"):
        mha(heads=3)
    with pytest.raises(ShapeError, match=r"\(T, D\)"):
        MultiheadAttention(heads=1).setup((4,), np.random.default_rng(0))


def test_sinusoidal_table_follows_vaswani():
    layer = SinusoidalPosition()
    layer.setup((50, 7), np.random.default_rng(0))
    t = np.arange(50)
    for i in range(3):
        np.testing.assert_allclose(layer.pe[:, 2 * i], np.sin(t / 10000 ** (2 * i / 7)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.pe[:, 2 * i + 1], np.cos(t / 10000 ** (2 * i / 7)), rtol=1e-5, atol=1e-6)
    x = np.zeros((2, 50, 7), np.float32)
    np.testing.assert_array_equal(layer.forward(x, True), np.broadcast_to(layer.pe, x.shape))


def test_learned_position_table():
    layer = LearnedPosition(max_len=6)
    layer.setup((4, 3), np.random.default_rng(0))
    x = np.ones((2, 4, 3), np.float32)
    np.testing.assert_allclose(layer.forward(x, True), np.broadcast_to(1 + layer.params["P"][:4], x.shape))
    layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(layer.grads["P"], np.r_[np.full((4, 3), 2), np.zeros((2, 3))])
    with pytest.raises(ShapeError, match="max_len"):
        LearnedPosition(max_len=3).setup((4, 3), np.random.default_rng(0))


def test_patch_embed_shapes_and_errors():
    layer = PatchEmbed(patch=4, dim=16)
    assert layer.setup((1, 28, 28), np.random.default_rng(0)) == (49, 16)
    assert layer.flops() == 49 * 2 * 16 * 16 + 0
    with pytest.raises(ShapeError, match="multiples of 5"):
        PatchEmbed(patch=5, dim=8).setup((1, 28, 28), np.random.default_rng(0))


def test_class_token_extends_the_padding_mask_and_pools_respect_it(rng):
    pad = np.array([[0, 0, 1], [0, 0, 0]], dtype=bool)
    ctx = Context(key_padding_mask=pad)
    token, pool = ClassToken(), MeanPool()
    token.setup((3, 2), np.random.default_rng(0))
    pool.setup((4, 2), np.random.default_rng(0))
    x = rng.standard_normal((2, 3, 2))
    y = token.forward(x, True, ctx)
    np.testing.assert_array_equal(y[:, 0], np.broadcast_to(token.params["token"], (2, 2)))
    np.testing.assert_array_equal(ctx.padding(2, 4, "test"), [[0, 0, 0, 1], [0, 0, 0, 0]])
    assert ctx.key_padding_mask is pad  # written once; the token is counted, not written into it
    pooled = pool.forward(y, True, ctx)
    np.testing.assert_allclose(pooled[0], y[0, :3].mean(0))
    np.testing.assert_allclose(pooled[1], y[1].mean(0))


def test_select_token_and_unmasked_mean_pool(rng):
    select, pool = LAYERS.get("select_token")(index=-1), MeanPool()
    select.setup((3, 2), np.random.default_rng(0))
    pool.setup((3, 2), np.random.default_rng(0))
    x = rng.standard_normal((2, 3, 2))
    np.testing.assert_array_equal(select.forward(x, True), x[:, -1])
    np.testing.assert_allclose(pool.forward(x, True), x.mean(1))
    with pytest.raises(ShapeError, match="outside"):
        LAYERS.get("select_token")(index=3).setup((3, 2), np.random.default_rng(0))


def test_padding_changes_nothing_end_to_end():
    """embedding(padding_idx) -> positions -> class token -> encoder -> pools: a padded sequence
    gives the same outputs as the same tokens without the padding."""
    specs = [("embedding", {"vocab_size": 10, "dim": 8, "padding_idx": 0}), ("sinusoidal_position", {}),
             ("class_token", {}), ("transformer_encoder", {"blocks": 2, "heads": 2, "ffn": 16, "dropout": 0.0})]
    with B.dtype_scope("float64"):
        layers, shape = [], (5,)
        for name, options in specs:
            layers.append(LAYERS.get(name)(**options))
            shape = layers[-1].setup(shape, np.random.default_rng(len(layers)))
        pool, first = MeanPool(), LAYERS.get("select_token")()
        pool.setup(shape, None)
        first.setup(shape, None)

    def run(tokens):
        h, ctx = np.array(tokens), Context()  # the embedding writes the mask of this batch
        for layer in layers:
            h = layer.call(h, False, ctx)
        return pool.forward(h, False, ctx), first.forward(h, False)

    pooled, cls = run([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    alone_pooled, alone_cls = run([[3, 4, 5]])
    np.testing.assert_allclose(pooled[0], alone_pooled[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cls[0], alone_cls[0], rtol=1e-10, atol=1e-12)
    assert not np.allclose(pooled[0], pooled[1])
