"""One owner of a model's parameters and gradients: views into one flat buffer per dtype (netcli/params.py)."""
import numpy as np
import pytest

import netcli.layers  # noqa: F401  (registers the layers)
import netcli.models  # noqa: F401
from netcli import backend as B
from netcli.layers.base import named_params
from netcli.layers.container import Sequential
from netcli.optim import make_optimizer
from netcli.params import SPARE, ParamGroup, pack
from netcli.registry import MODELS

LAYERS = [{"type": "conv2d", "filters": 3, "kernel": 3}, {"type": "batchnorm"}, {"type": "relu"},
          {"type": "flatten"}, {"type": "dense", "units": 5}, {"type": "dense", "units": 3}]


def built(seed=0):
    net = Sequential(Sequential.Config(layers=LAYERS))
    net.setup((2, 6, 6), np.random.default_rng(seed))
    return net


def test_pack_moves_every_array_into_one_buffer_and_keeps_the_values():
    net = built()
    before = {n: p.copy() for n, p, _ in named_params(net, "net.")}
    group = pack([("net", net)])
    assert len(group.segments) == 1  # one dtype, one buffer
    seg = group.segments[0]
    for name, p, g in named_params(net, "net."):
        assert np.shares_memory(p, seg.data) and np.shares_memory(g, seg.grad), name
        assert p.ctypes.data % 64 == 0, f"{name} is not aligned"
        np.testing.assert_array_equal(p, before[name])
    assert [n for n, _, _ in group.named()] == list(before)
    assert group.num_params() == sum(p.size for p in before.values())


def test_zero_grad_and_clipping_act_on_every_layer_through_the_buffer():
    net = built()
    group = pack([("net", net)])
    x = np.random.default_rng(1).standard_normal((4, 2, 6, 6)).astype(np.float32)
    net.backward(np.ones_like(net.forward(x, training=True)))
    grads = [g.copy() for _, _, g in named_params(net)]
    norm = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)))
    assert norm > 0
    assert group.clip_grad_norm(norm / 2) == pytest.approx(norm, rel=1e-5)
    for (_, _, g), g0 in zip(named_params(net), grads):  # the layers see the scaled gradients
        np.testing.assert_allclose(g, g0 * (norm / 2) / (norm + 1e-6), rtol=1e-5)
    group.clip_grad_value(1e-3)
    assert max(np.abs(g).max() for _, _, g in named_params(net)) <= 1e-3
    group.zero_grad()
    assert not any(g.any() for _, _, g in named_params(net))


@pytest.mark.parametrize("spec", [{"type": "adam", "weight_decay": 0.1}, {"type": "sgd", "momentum": 0.9},
                                  {"type": "rmsprop", "centered": True}, {"type": "adamw"}])
def test_a_step_over_the_buffer_equals_steps_over_separate_arrays(threads, spec, monkeypatch):
    monkeypatch.setattr("netcli.optim.BLOCK", 7)  # many blocks, parts cut inside parameters
    threads(2)
    with B.dtype_scope("float64"):
        flat, apart = built(), built()
        group = pack([("net", flat)])
        opt_flat = make_optimizer(spec, group)
        opt_apart = make_optimizer(spec, named_params(apart, "net."))
        rng = np.random.default_rng(2)
        for _ in range(3):
            for (_, _, g1), (_, _, g2) in zip(named_params(flat), named_params(apart)):
                g1[...] = g2[...] = rng.standard_normal(g1.shape)
            opt_flat.step(0.01)
            opt_apart.step(0.01)
        for (name, p1, g1), (_, p2, _) in zip(named_params(flat), named_params(apart)):
            np.testing.assert_allclose(p1, p2, rtol=1e-13, atol=1e-15, err_msg=name)
            assert not g1.any()
        state_flat, state_apart = opt_flat.state_dict(), opt_apart.state_dict()
        assert state_flat.keys() == state_apart.keys()
        for k in state_flat:
            np.testing.assert_allclose(state_flat[k], state_apart[k], rtol=1e-13, atol=1e-15, err_msg=k)
    assert not any(seg.data[-1:].size == 0 for seg in group.segments)


def test_subset_is_the_chosen_networks_as_views_of_the_same_buffers():
    a, b = built(0), built(1)
    group = pack([("gen", a), ("disc", b)])
    gen = group.subset(["gen."])
    assert [n for n, _, _ in gen.named()] == [n for n, _, _ in group.named() if n.startswith("gen.")]
    assert len(gen.segments) == 1 and np.shares_memory(gen.segments[0].data, group.segments[0].data)
    for _, _, g in named_params(b):
        g[...] = 1
    gen.zero_grad()
    assert all(g.all() for _, _, g in named_params(b))  # the other network's gradients are untouched


def test_reduction_carries_gradients_and_scalars_in_one_array_without_copies():
    """What a data-parallel step all-reduces: the gradient buffer and, in the spare room past it, its scalars."""
    a, b = built(0), built(1)
    group = pack([("gen", a), ("disc", b)])
    grad = group.segments[0].grad
    grad[...] = np.arange(len(grad))
    (whole,), slots = group.reduction(3)
    assert len(whole) == len(grad) + 3 and whole.ctypes.data == grad.ctypes.data  # the same memory, 3 past it
    slots[:] = [7, 8, 9]
    np.testing.assert_array_equal(whole, [*np.arange(len(grad)), 7, 8, 9])
    assert slots.dtype == grad.dtype
    assert group.subset(["disc."]).reduction(3)[0][0].base is whole.base  # the last network ends the buffer
    # what has no room past it sends its scalars apart: the first of two networks, arrays wrapped by of,
    # more scalars than the room holds
    for part, k in ((group.subset(["gen."]), 3), (ParamGroup.of([("p", np.ones(3), np.ones(3))]), 3),
                    (group, SPARE + 1)):
        buffers, slots = part.reduction(k)
        assert len(buffers) == 2 and buffers[-1] is slots and slots.shape == (k,)
        assert np.shares_memory(buffers[0], part.segments[0].grad) and len(buffers[0]) == len(part.segments[0].grad)


def test_of_wraps_arrays_without_copying_and_counts_a_shared_array_once():
    p, g = np.ones(3), np.ones(3)
    group = ParamGroup.of([("a", p, g), ("b", p, g)])
    assert len(group) == 1
    group.zero_grad()
    assert not g.any()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_type_owns_its_parameters_in_buffers(name):
    from test_models import built_model

    model = built_model(name)
    assert model.parameters.num_params() == model.num_params() > 0
    for pname, p, g in model.params():
        assert any(np.shares_memory(p, s.data) for s in model.parameters.segments), pname
        assert any(np.shares_memory(g, s.grad) for s in model.parameters.segments), pname


def test_parameter_keys_are_attribute_paths_of_the_composites():
    """Checkpoint keys name what a parameter belongs to; only a config's own layer lists are numbered."""
    net = Sequential(Sequential.Config(layers=[
        {"type": "transformer_encoder", "blocks": 2, "heads": 2, "ffn": 8, "dropout": 0.0},
        {"type": "unet", "base_channels": 2, "channel_mults": [1, 2], "time_dim": 4}]))
    enc = net.layers[0]
    enc.setup((3, 4), np.random.default_rng(0))
    names = {n for n, _, _ in named_params(enc)}
    assert {"blocks.1.attn.qkv.W", "blocks.1.attn.out.b", "blocks.0.norm1.gamma", "blocks.0.ffn.0.W",
            "blocks.0.ffn.3.b"} <= names, sorted(names)
    unet = net.layers[1]
    unet.setup((1, 4, 4), np.random.default_rng(0))
    names = {n for n, _, _ in named_params(unet)}
    assert {"stem.W", "down.0.0.conv1.W", "down.1.0.time_proj.W", "downsample.0.W", "mid.0.conv2.W",
            "up.0.0.skip.W", "out_conv.W"} <= names, sorted(names)
