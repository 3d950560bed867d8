"""Optimizers follow torch.optim's trajectories exactly; state round-trips; clipping matches torch."""
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from netcli.optim import make_optimizer  # noqa: E402
from netcli.params import ParamGroup  # noqa: E402
from netcli.registry import OPTIMIZERS, UnknownNameError  # noqa: E402

STEPS = 20


class Problem:
    """Least log-cosh regression: L = mean(log cosh(X W + b - Y)), gradients written out by hand."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.X, self.Y = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
        self.W, self.b = rng.standard_normal((4, 3)), rng.standard_normal(3)
        self.grads = {"W": np.zeros((4, 3)), "b": np.zeros(3)}

    def params(self):
        return [("m.W", self.W, self.grads["W"]), ("m.b", self.b, self.grads["b"])]

    def backward(self):
        dr = np.tanh(self.X @ self.W + self.b - self.Y) / self.Y.size
        self.grads["W"] += self.X.T @ dr
        self.grads["b"] += dr.sum(axis=0)


def _lr(k):
    """A varying learning rate, so step(lr) is exercised like a schedule would."""
    return 0.05 * (1 + 0.5 * np.sin(k))


def _torch_trajectory(config, prob):
    X, Y = torch.tensor(prob.X), torch.tensor(prob.Y)
    W = torch.tensor(prob.W, requires_grad=True)
    b = torch.tensor(prob.b, requires_grad=True)
    kwargs = {k: v for k, v in config.items() if k not in ("type", "beta1", "beta2")}
    if "beta1" in config:
        kwargs["betas"] = (config["beta1"], config["beta2"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "rmsprop": torch.optim.RMSprop}[config["type"]]
    opt = cls([W, b], lr=1.0, foreach=False, **kwargs)
    out = []
    for k in range(STEPS):
        opt.param_groups[0]["lr"] = _lr(k)
        opt.zero_grad()
        torch.log(torch.cosh(X @ W + b - Y)).mean().backward()
        opt.step()
        out.append((W.detach().numpy().copy(), b.detach().numpy().copy()))
    return out


CONFIGS = [
    {"type": "sgd"},
    {"type": "sgd", "weight_decay": 0.1},
    {"type": "sgd", "momentum": 0.9},
    {"type": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
    {"type": "sgd", "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.01},
    {"type": "adam"},
    {"type": "adam", "weight_decay": 0.05, "beta1": 0.8, "beta2": 0.99, "eps": 1e-3},
    {"type": "adamw"},
    {"type": "adamw", "weight_decay": 0.3, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6},
    {"type": "rmsprop"},
    {"type": "rmsprop", "momentum": 0.9, "weight_decay": 0.02},
    {"type": "rmsprop", "centered": True, "alpha": 0.9, "eps": 1e-4},
    {"type": "rmsprop", "centered": True, "momentum": 0.5, "weight_decay": 0.01},
]


def test_every_optimizer_is_covered():
    assert {c["type"] for c in CONFIGS} == set(OPTIMIZERS.names())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_trajectory_matches_torch(config):
    prob = Problem()
    expected = _torch_trajectory(config, prob)
    opt = make_optimizer(config, prob.params())
    for k in range(STEPS):
        prob.backward()
        opt.step(_lr(k))
        assert not prob.grads["W"].any() and not prob.grads["b"].any(), "grads are zeroed after a step"
        np.testing.assert_allclose(prob.W, expected[k][0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(prob.b, expected[k][1], rtol=0, atol=1e-10)
    assert int(opt.state_dict()["step"]) == STEPS


@pytest.mark.parametrize("config", CONFIGS[2::2], ids=lambda c: c["type"])
def test_state_dict_round_trip_continues_identically(config):
    a, b = Problem(), Problem()
    opt_a = make_optimizer(config, a.params())
    for k in range(5):
        a.backward()
        opt_a.step(_lr(k))
    state = opt_a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values()) and state["step"].shape == ()
    b.W[...], b.b[...] = a.W, a.b
    opt_b = make_optimizer(config, b.params())
    opt_b.load_state_dict(state)
    for k in range(5, 10):
        a.backward()
        b.backward()
        opt_a.step(_lr(k))
        opt_b.step(_lr(k))
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.b, b.b)


def test_state_dict_is_a_copy_and_names_its_arrays():
    prob = Problem()
    opt = make_optimizer("adam", prob.params())
    prob.backward()
    opt.step(0.1)
    state = opt.state_dict()
    assert sorted(state) == ["m.m.W", "m.m.b", "step", "v.m.W", "v.m.b"]
    state["m.m.W"][...] = 7
    assert not (opt.state_dict()["m.m.W"] == 7).any()


def test_load_state_dict_rejects_a_mismatch():
    prob = Problem()
    opt = make_optimizer("adam", prob.params())
    good = opt.state_dict()
    with pytest.raises(ValueError, match="wrong shapes"):
        opt.load_state_dict({**good, "m.m.W": np.zeros((3, 4))})
    with pytest.raises(ValueError, match=r"missing \['v.m.b'\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "v.m.b"})
    with pytest.raises(ValueError, match="unexpected"):
        make_optimizer("sgd", prob.params()).load_state_dict(good)


def test_a_shared_array_is_updated_once():
    p, g = np.ones(3), np.ones(3)
    opt = make_optimizer({"type": "sgd", "lr": 0.1}, [("a.W", p, g), ("b.W", p, g)])
    opt.step(0.5)
    np.testing.assert_array_equal(p, 0.5)


def test_float32_stays_float32_and_a_step_allocates_nothing_large():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(100_000).astype(np.float32)
    g = np.zeros_like(p)
    ref, ref_g = p.astype(np.float64), np.zeros(p.shape)
    opt = make_optimizer({"type": "adamw", "weight_decay": 0.1}, [("p", p, g)])
    opt_ref = make_optimizer({"type": "adamw", "weight_decay": 0.1}, [("p", ref, ref_g)])
    for k in range(3):
        g[...] = ref_g[...] = np.sin(ref + k)
        tracemalloc.start()
        opt.step(1e-2)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        opt_ref.step(1e-2)
        assert peak < p.nbytes / 20, f"a step allocated {peak} bytes"
    assert p.dtype == np.float32 and all(s.dtype == np.float32 for s in opt.state_dict().values() if s.ndim)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)


def test_config_validation_and_unknown_names():
    with pytest.raises(ValueError, match="greater than 0"):
        make_optimizer({"type": "adam", "lr": 0}, [])
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer({"type": "sgd", "nesterov": True}, [])
    with pytest.raises(ValueError, match="extra"):
        make_optimizer({"type": "adam", "betas": [0.9, 0.99]}, [])
    with pytest.raises(UnknownNameError, match="did you mean 'adamw'"):
        make_optimizer("admw", [])
    assert make_optimizer("adamw", []).config.weight_decay == 0.01
    assert make_optimizer("rmsprop", []).config.lr == 1e-2


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5), rng.standard_normal((2, 2, 2))]
    tensors = [torch.tensor(g, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    expected = torch.nn.utils.clip_grad_norm_(tensors, max_norm).item()
    total = ParamGroup.of((str(i), np.zeros_like(g), g) for i, g in enumerate(grads)).clip_grad_norm(max_norm)
    assert total == pytest.approx(expected, rel=1e-12)
    for t, g in zip(tensors, grads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12, atol=0)
    if max_norm < total:
        assert np.sqrt(sum((g**2).sum() for g in grads)) == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_value_matches_torch():
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal((4, 3)) * 2, rng.standard_normal(6)]
    tensors = [torch.tensor(g, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_(tensors, 0.7)
    ParamGroup.of((str(i), np.zeros_like(g), g) for i, g in enumerate(grads)).clip_grad_value(0.7)
    for t, g in zip(tensors, grads):
        np.testing.assert_array_equal(g, t.grad.numpy())
