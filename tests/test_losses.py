"""Losses: finite-difference gradients of every registered loss, PyTorch parity, stability, errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from netcli.gradcheck import check_arrays, check_loss, loss_contract  # noqa: E402
from netcli.losses import CrossEntropy, LossCase, make_loss  # noqa: E402
from netcli.registry import LOSSES, UnknownNameError  # noqa: E402
from registry_cases import registry_cases  # noqa: E402


@pytest.mark.parametrize("name,case", list(registry_cases(LOSSES)))
def test_loss_gradients(name, case):
    assert case is not None, f"loss '{name}' is registered without gradient-check cases"
    report = check_loss(name, case)
    assert report.ok(1e-6), f"{name} {case}: {report}"
    assert all(loss_contract(name, case).values()), f"{name} {case} changed its prediction or target"


def test_gradcheck_catches_a_wrong_loss_gradient(monkeypatch):
    class Halved(CrossEntropy):
        def backward(self):
            return super().backward() / 2

    rng = np.random.default_rng(0)
    pred, target = LossCase({}, (4, 5), "labels").sample(rng)
    loss = Halved()

    def backward():
        loss.forward(pred, target)
        return {"pred": loss.backward()}

    assert not check_arrays(lambda: loss.forward(pred, target), backward, {"pred": pred}, rng).ok(1e-6)


def _torch_value_and_grad(fn, pred, *args, **kwargs):
    t = torch.tensor(pred, requires_grad=True)
    out = fn(t, *args, **kwargs)
    out.backward()
    return out.item(), t.grad.numpy()


def _assert_parity(spec, pred, target, fn, *args, **kwargs):
    loss = make_loss(spec)
    value = loss.forward(pred, target)
    grad = loss.backward()
    t_value, t_grad = _torch_value_and_grad(fn, pred, *args, **kwargs)
    np.testing.assert_allclose(value, t_value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-10, atol=1e-14)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype


def test_mse_matches_torch(rng):
    pred, target = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    _assert_parity("mse", pred, target, F.mse_loss, torch.tensor(target))


def test_mae_and_huber_match_torch(rng):
    pred, target = rng.standard_normal((5, 4)) * 2, rng.standard_normal((5, 4))
    _assert_parity("mae", pred, target, F.l1_loss, torch.tensor(target))
    _assert_parity({"type": "huber", "delta": 0.7}, pred, target, F.huber_loss, torch.tensor(target), delta=0.7)


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_with_labels_matches_torch(rng, smoothing):
    logits, labels = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
    _assert_parity({"type": "cross_entropy", "label_smoothing": smoothing}, logits, labels,
                   F.cross_entropy, torch.tensor(labels), label_smoothing=smoothing)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_with_soft_targets_matches_torch(rng, smoothing):
    logits, probs = rng.standard_normal((6, 5)), rng.dirichlet(np.ones(5), 6)
    _assert_parity({"type": "cross_entropy", "label_smoothing": smoothing}, logits, probs,
                   F.cross_entropy, torch.tensor(probs), label_smoothing=smoothing)


def test_cross_entropy_per_token_matches_torch(rng):
    # torch wants the class axis second: (N, C, T); netcli keeps it last: (N, T, C)
    logits, labels = rng.standard_normal((2, 7, 4)), rng.integers(0, 4, (2, 7))
    _assert_parity("cross_entropy", logits, labels,
                   lambda t, y: F.cross_entropy(t.transpose(1, 2), y), torch.tensor(labels))
    probs = rng.dirichlet(np.ones(4), (2, 7))
    _assert_parity("cross_entropy", logits, probs,
                   lambda t, y: F.cross_entropy(t.transpose(1, 2), y), torch.tensor(probs).transpose(1, 2))


def test_cross_entropy_ignore_index_matches_torch(rng):
    logits, labels = rng.standard_normal((3, 6, 4)), rng.integers(0, 4, (3, 6))
    labels[0, :3] = -100
    _assert_parity({"type": "cross_entropy", "ignore_index": -100, "label_smoothing": 0.1}, logits, labels,
                   lambda t, y: F.cross_entropy(t.transpose(1, 2), y, ignore_index=-100, label_smoothing=0.1),
                   torch.tensor(labels))


def test_binary_cross_entropy_matches_torch(rng):
    logits, target = rng.standard_normal((5, 3)) * 4, rng.uniform(0, 1, (5, 3))
    _assert_parity("binary_cross_entropy", logits, target,
                   F.binary_cross_entropy_with_logits, torch.tensor(target))


def test_huge_logits_stay_finite():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    ce = make_loss("cross_entropy")
    assert ce.forward(logits, np.array([1, 2])) == pytest.approx(2e4 / 2)  # -log p = 2e4, then 0
    assert np.isfinite(ce.backward()).all()
    bce = make_loss("binary_cross_entropy")
    value = bce.forward(logits, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]))
    assert value == pytest.approx((1e4 + np.log(2) + 1e4) / 6)
    np.testing.assert_allclose(bce.backward() * 6, [[1, 0, -0.5], [-1, 0, 0]], atol=1e-12)


def test_float32_in_float32_out(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    for name, target in [("cross_entropy", np.array([0, 1, 2, 0])), ("cross_entropy", np.eye(3)[[0, 1, 2, 0]]),
                         ("mse", np.zeros((4, 3))), ("mae", np.zeros((4, 3))), ("huber", np.zeros((4, 3))),
                         ("binary_cross_entropy", np.ones((4, 3)))]:  # float64 targets
        loss = make_loss(name)
        loss.forward(logits, target)
        assert loss.backward().dtype == np.float32, name


def test_unknown_loss_name_suggests_the_closest():
    with pytest.raises(UnknownNameError) as err:
        make_loss("cross_entropi")
    assert err.value.suggestion == "cross_entropy"
    assert "did you mean 'cross_entropy'" in str(err.value)
    with pytest.raises(UnknownNameError):
        make_loss({"type": "mes"})


def test_bad_options_and_targets_are_errors(rng):
    with pytest.raises(ValueError, match="label_smoothing"):
        make_loss({"type": "cross_entropy", "label_smoothing": 1.5})
    with pytest.raises(ValueError, match="extra"):
        make_loss({"type": "mse", "reduction": "sum"})
    ce = make_loss("cross_entropy")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ce.forward(rng.standard_normal((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels of shape"):
        ce.forward(rng.standard_normal((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="differs"):
        make_loss("mse").forward(np.zeros((2, 3)), np.zeros((3, 2)))


def test_make_loss_accepts_a_config_object():
    config = CrossEntropy.Config(label_smoothing=0.1)
    loss = make_loss(config)
    assert isinstance(loss, CrossEntropy) and loss.config is config


def test_every_loss_says_which_targets_it_takes_and_its_grad_cases_use_those():
    """`targets` drives the model's loss check (a classifier refuses mse); the gradient cases must agree."""
    from netcli.losses import TARGET_TEXT

    for name, cls in LOSSES.items():
        assert cls.targets and set(cls.targets) <= set(TARGET_TEXT), name
        assert {case.target for case in cls.grad_cases()} <= set(cls.targets), name


def test_accuracy_counts_only_the_positions_the_loss_counts():
    """ignore_index: positions left out of the loss are left out of accuracy and sequence_accuracy too."""
    from netcli.models.sequential import Classifier
    from netcli.registry import MODELS

    model = MODELS.get("classifier")(Classifier.Config(layers=["flatten"]), {"type": "cross_entropy",
                                                                              "ignore_index": -100})
    model.loss = make_loss(model.loss_spec)
    y = np.array([[1, 0, -100, -100], [2, -100, -100, -100]])  # padded sequences
    logits = np.full((2, 4, 3), -5.0)
    logits[0, 0, 1] = logits[0, 1, 0] = logits[1, 0, 2] = 5.0  # every counted position right
    assert model.metrics(logits, y) == {"accuracy": 1.0, "sequence_accuracy": 1.0}  # were 0.5 and 0.0
    logits[0, 1] = [-5.0, 5.0, -5.0]  # one counted position wrong: 2 of 3, and 1 of 2 sequences
    assert model.metrics(logits, y) == {"accuracy": 2 / 3, "sequence_accuracy": 0.5}
    without = MODELS.get("classifier")(Classifier.Config(layers=["flatten"]))
    without.loss = make_loss("cross_entropy")
    assert without.metrics(logits, np.where(y < 0, 0, y))["accuracy"] == 7 / 8  # no ignore_index: all 8 count
