"""Learning-rate schedules as pure functions of the step.

    schedule = make_schedule({"type": "cosine", "warmup_steps": 200}, base_lr=1e-3, total_steps=5000)
    lr = schedule(step)            # no internal state: resuming at step k just calls schedule(k)

Every schedule takes an optional linear warmup: over the first ``warmup_steps``
steps the rate rises from ``warmup_start_factor`` times the schedule's first
value to that value, and the schedule itself then runs from its own step 0
over the ``total_steps - warmup_steps`` steps left (like torch's SequentialLR
of a LinearLR and the schedule, with the milestone at ``warmup_steps``).
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .registry import SCHEDULES, register_schedule


class ScheduleConfig(BaseModel):
    """Base of every schedule's Config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    type: str
    warmup_steps: int = Field(0, ge=0, description="steps of linear warmup before the schedule starts")
    warmup_start_factor: float = Field(0.0, ge=0, le=1, description="warmup starts at this fraction of the rate")


class ScheduleError(ValueError):
    """A schedule that cannot run for the run's steps; ``key`` is the option to change (None: the steps)."""

    def __init__(self, key: str | None, message: str):
        super().__init__(message)
        self.key = key


class Schedule:
    Config: ClassVar[type[ScheduleConfig]]
    type_name: ClassVar[str]

    def __init__(self, config: ScheduleConfig, base_lr: float, total_steps: int):
        self.config = config
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.horizon = self.total_steps - config.warmup_steps  # steps the schedule itself runs for

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"a schedule step is >= 0, got {step}")
        warmup, f0 = self.config.warmup_steps, self.config.warmup_start_factor
        if step < warmup:
            return self.lr_at(0) * (f0 + (1 - f0) * step / warmup)
        return self.lr_at(step - warmup)

    def lr_at(self, step: int) -> float:
        """The rate ``step`` steps after warmup."""
        raise NotImplementedError

    def _need_horizon(self, steps: int) -> None:
        if self.horizon < steps:
            warmup, room = self.config.warmup_steps, self.total_steps - steps
            lower = f"lower schedule.warmup_steps to {room} or less, or " if warmup and room >= 0 else ""
            raise ScheduleError("warmup_steps" if warmup else None,
                                f"schedule '{self.type_name}' needs {steps} or more steps after its {warmup} warmup "
                                f"steps, but training has {self.total_steps} in all; {lower}train for more steps "
                                "(train.epochs, train.max_steps)")


make_schedule = SCHEDULES.build  # (spec: name | dict | Config, base_lr, total_steps) -> Schedule


@register_schedule("constant")
class Constant(Schedule):
    """The base rate throughout (after any warmup)."""

    class Config(ScheduleConfig):
        type: Literal["constant"] = "constant"

    def lr_at(self, step):
        return self.base_lr


@register_schedule("step")
class Step(Schedule):
    """base_lr * gamma ** (step // step_size), as torch's StepLR."""

    class Config(ScheduleConfig):
        type: Literal["step"] = "step"
        step_size: int = Field(gt=0, description="steps between decays")
        gamma: float = Field(0.1, gt=0, description="factor applied every step_size steps")

    def lr_at(self, step):
        return self.base_lr * self.config.gamma ** (step // self.config.step_size)


@register_schedule("exponential")
class Exponential(Schedule):
    """base_lr * gamma ** step, as torch's ExponentialLR."""

    class Config(ScheduleConfig):
        type: Literal["exponential"] = "exponential"
        gamma: float = Field(gt=0, description="factor applied every step")

    def lr_at(self, step):
        return self.base_lr * self.config.gamma**step


@register_schedule("linear")
class Linear(Schedule):
    """A straight line from base_lr to end_factor * base_lr over the steps after warmup, as torch's LinearLR."""

    class Config(ScheduleConfig):
        type: Literal["linear"] = "linear"
        end_factor: float = Field(0.0, ge=0, description="the final rate as a fraction of base_lr")

    def __init__(self, config, base_lr, total_steps):
        super().__init__(config, base_lr, total_steps)
        self._need_horizon(1)

    def lr_at(self, step):
        frac = min(step, self.horizon) / self.horizon
        return self.base_lr * (1 + (self.config.end_factor - 1) * frac)


@register_schedule("cosine")
class Cosine(Schedule):
    """Half a cosine from base_lr down to min_lr over t_max steps, then min_lr (torch's CosineAnnealingLR)."""

    class Config(ScheduleConfig):
        type: Literal["cosine"] = "cosine"
        min_lr: float = Field(0.0, ge=0, description="the floor the rate anneals to")
        t_max: int | None = Field(None, gt=0, description="steps to reach min_lr; default: all steps after warmup")

    def __init__(self, config, base_lr, total_steps):
        super().__init__(config, base_lr, total_steps)
        if config.t_max is None:
            self._need_horizon(1)
        self.t_max = config.t_max or self.horizon

    def lr_at(self, step):
        lo = self.config.min_lr
        return lo + (self.base_lr - lo) * (1 + math.cos(math.pi * min(step, self.t_max) / self.t_max)) / 2


@register_schedule("cyclic")
class Cyclic(Schedule):
    """Triangular cycles between base_lr and max_lr, as torch's CyclicLR.

    Each cycle rises for step_size_up steps and falls for step_size_down;
    triangular2 halves the amplitude every cycle, exp_range scales it by gamma ** step.
    """

    class Config(ScheduleConfig):
        type: Literal["cyclic"] = "cyclic"
        max_lr: float = Field(gt=0, description="the top of each cycle (base_lr is the bottom)")
        step_size_up: int = Field(2000, gt=0, description="steps from the bottom of a cycle to its top")
        step_size_down: int | None = Field(None, gt=0, description="steps from the top back down; default: step_size_up")
        mode: Literal["triangular", "triangular2", "exp_range"] = Field(
            "triangular", description="amplitude: constant, halved per cycle, or times gamma ** step")
        gamma: float = Field(1.0, gt=0, le=1, description="amplitude decay per step in exp_range mode")

    def lr_at(self, step):
        c = self.config
        up = c.step_size_up
        size = up + (c.step_size_down or up)
        cycle = math.floor(1 + step / size)  # 1, 2, ...
        x = 1 + step / size - cycle  # position within the cycle, in [0, 1)
        ratio = up / size
        height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)  # 0 -> 1 -> 0
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (cycle - 1), "exp_range": c.gamma**step}[c.mode]
        return self.base_lr + (c.max_lr - self.base_lr) * height * scale


@register_schedule("one_cycle")
class OneCycle(Schedule):
    """The 1cycle policy, as torch's OneCycleLR (two phases).

    The rate rises from max_lr / div_factor to max_lr over the first pct_start
    of the steps, then anneals to max_lr / (div_factor * final_div_factor) at
    the last step.
    """

    class Config(ScheduleConfig):
        type: Literal["one_cycle"] = "one_cycle"
        max_lr: float | None = Field(None, gt=0, description="the peak rate; default: the optimizer's lr")
        pct_start: float = Field(0.3, gt=0, lt=1, description="fraction of the steps spent rising")
        div_factor: float = Field(25.0, gt=0, description="the start rate is max_lr / div_factor")
        final_div_factor: float = Field(1e4, gt=0, description="the final rate is the start rate / final_div_factor")
        anneal_strategy: Literal["cos", "linear"] = Field("cos", description="shape of both phases")

    def __init__(self, config, base_lr, total_steps):
        super().__init__(config, base_lr, total_steps)
        self.peak = config.max_lr or self.base_lr
        self.start = self.peak / config.div_factor
        self.final = self.start / config.final_div_factor
        self.rise_end = config.pct_start * self.horizon - 1  # the step of the peak (a float, as in torch)
        if not 0 < self.rise_end < self.horizon - 1:
            raise ScheduleError("pct_start", f"one_cycle: pct_start {config.pct_start} of {self.horizon} steps leaves "
                                "a phase without steps; use more steps or another pct_start")

    def lr_at(self, step):
        step = min(step, self.horizon - 1)
        if step <= self.rise_end:
            return self._anneal(self.start, self.peak, step / self.rise_end)
        return self._anneal(self.peak, self.final, (step - self.rise_end) / (self.horizon - 1 - self.rise_end))

    def _anneal(self, a: float, b: float, pct: float) -> float:
        if self.config.anneal_strategy == "cos":
            return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)
        return a + (b - a) * pct
