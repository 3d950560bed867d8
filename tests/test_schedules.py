"""Schedules reproduce torch.optim.lr_scheduler's sequences and are pure functions of the step."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as S  # noqa: E402

from netcli.registry import SCHEDULES, UnknownNameError  # noqa: E402
from netcli.schedules import Cosine, make_schedule  # noqa: E402

BASE, TOTAL = 0.1, 100


def _torch_lrs(make, steps=TOTAL, base=BASE):
    """The lr torch's scheduler gives at steps 0..steps-1 (optimizer.step then scheduler.step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


def _ours(spec, steps=TOTAL, base=BASE, total=TOTAL):
    schedule = make_schedule(spec, base, total)
    return np.array([schedule(k) for k in range(steps)])


def _warmup_then(make, warmup, start):
    return lambda opt: S.SequentialLR(
        opt, [S.LinearLR(opt, start_factor=start, total_iters=warmup), make(opt)], milestones=[warmup])


CASES = {
    "constant-warmup": ({"type": "constant", "warmup_steps": 10, "warmup_start_factor": 0.1},
                        lambda opt: S.LinearLR(opt, start_factor=0.1, total_iters=10)),
    "step": ({"type": "step", "step_size": 7, "gamma": 0.5}, lambda opt: S.StepLR(opt, 7, gamma=0.5)),
    "exponential": ({"type": "exponential", "gamma": 0.97}, lambda opt: S.ExponentialLR(opt, 0.97)),
    "linear": ({"type": "linear", "end_factor": 0.05},
               lambda opt: S.LinearLR(opt, start_factor=1.0, end_factor=0.05, total_iters=TOTAL)),
    "cosine": ({"type": "cosine", "min_lr": 0.01}, lambda opt: S.CosineAnnealingLR(opt, TOTAL, eta_min=0.01)),
    "cosine-t_max": ({"type": "cosine", "t_max": 60}, lambda opt: S.CosineAnnealingLR(opt, 60)),
    "cosine-warmup": ({"type": "cosine", "min_lr": 1e-3, "warmup_steps": 15, "warmup_start_factor": 0.2},
                      _warmup_then(lambda opt: S.CosineAnnealingLR(opt, TOTAL - 15, eta_min=1e-3), 15, 0.2)),
    "exponential-warmup": ({"type": "exponential", "gamma": 0.95, "warmup_steps": 5, "warmup_start_factor": 0.5},
                           _warmup_then(lambda opt: S.ExponentialLR(opt, 0.95), 5, 0.5)),
    "cyclic": ({"type": "cyclic", "max_lr": 0.5, "step_size_up": 12},
               lambda opt: S.CyclicLR(opt, BASE, 0.5, step_size_up=12, cycle_momentum=False)),
    "cyclic-asymmetric-triangular2": (
        {"type": "cyclic", "max_lr": 0.4, "step_size_up": 5, "step_size_down": 13, "mode": "triangular2"},
        lambda opt: S.CyclicLR(opt, BASE, 0.4, step_size_up=5, step_size_down=13, mode="triangular2",
                               cycle_momentum=False)),
    "cyclic-exp_range": (
        {"type": "cyclic", "max_lr": 0.3, "step_size_up": 9, "mode": "exp_range", "gamma": 0.98},
        lambda opt: S.CyclicLR(opt, BASE, 0.3, step_size_up=9, mode="exp_range", gamma=0.98,
                               cycle_momentum=False)),
    "one_cycle": ({"type": "one_cycle", "max_lr": 0.8},
                  lambda opt: S.OneCycleLR(opt, 0.8, total_steps=TOTAL, cycle_momentum=False)),
    "one_cycle-linear": (
        {"type": "one_cycle", "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100,
         "anneal_strategy": "linear"},
        lambda opt: S.OneCycleLR(opt, BASE, total_steps=TOTAL, pct_start=0.25, div_factor=10,
                                 final_div_factor=100, anneal_strategy="linear", cycle_momentum=False)),
}


def test_every_schedule_is_covered():
    assert {spec["type"] for spec, _ in CASES.values()} == set(SCHEDULES.names())


@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name):
    spec, make = CASES[name]
    steps = spec.get("t_max", TOTAL - 1) + 1  # torch's cosine climbs again after T_max; netcli stays at the floor
    np.testing.assert_allclose(_ours(spec, steps), _torch_lrs(make, steps), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_pure_function_of_the_step(name):
    schedule = make_schedule(CASES[name][0], BASE, TOTAL)
    forward = [schedule(k) for k in range(TOTAL)]
    order = np.random.default_rng(0).permutation(TOTAL)
    shuffled = {int(k): schedule(int(k)) for k in order}
    assert [shuffled[k] for k in range(TOTAL)] == forward
    assert make_schedule(CASES[name][0], BASE, TOTAL)(57) == forward[57]  # a fresh one resumes anywhere


def test_warmup_rises_linearly_from_zero_to_the_schedule():
    schedule = make_schedule({"type": "cosine", "warmup_steps": 4, "min_lr": 0.0}, 1.0, 14)
    assert [schedule(k) for k in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert schedule(9) == pytest.approx(0.5)  # half way through the 10 cosine steps
    assert schedule(14) == schedule(100) == 0.0  # stays at the floor past the end


def test_cosine_t_max_shorter_than_training_holds_the_floor():
    schedule = make_schedule({"type": "cosine", "t_max": 10, "min_lr": 0.02}, BASE, TOTAL)
    assert schedule(5) == pytest.approx(0.02 + 0.08 / 2)
    assert schedule(10) == schedule(99) == pytest.approx(0.02)


def test_one_cycle_ends_at_its_floor_and_defaults_to_the_optimizer_lr():
    schedule = make_schedule("one_cycle", 0.5, 200)
    assert schedule(0) == pytest.approx(0.5 / 25)
    assert max(schedule(k) for k in range(200)) == pytest.approx(0.5, rel=1e-3)
    assert schedule(199) == schedule(500) == pytest.approx(0.5 / 25 / 1e4)


def test_bad_specs_are_errors():
    with pytest.raises(UnknownNameError, match="did you mean 'cosine'"):
        make_schedule("cosin", BASE, TOTAL)
    with pytest.raises(ValueError, match="step_size"):
        make_schedule({"type": "step"}, BASE, TOTAL)
    with pytest.raises(ValueError, match="extra"):
        make_schedule({"type": "cosine", "eta_min": 0.0}, BASE, TOTAL)
    with pytest.raises(ValueError, match="needs 1 or more steps"):
        make_schedule({"type": "cosine", "warmup_steps": 100}, BASE, TOTAL)
    with pytest.raises(ValueError, match="one_cycle"):
        make_schedule({"type": "one_cycle", "pct_start": 0.01}, BASE, 50)
    with pytest.raises(ValueError, match=">= 0"):
        make_schedule("constant", BASE, TOTAL)(-1)


def test_make_schedule_accepts_a_config_object():
    schedule = make_schedule(Cosine.Config(min_lr=0.05), 1.0, 10)
    assert isinstance(schedule, Cosine) and schedule(0) == 1.0
    assert schedule(5) == pytest.approx(0.05 + 0.95 * (1 + math.cos(math.pi / 2)) / 2)
