"""Denoising diffusion (Ho et al. 2020): learn to predict the noise added to an image.

Images in [0, 1] are mapped to x0 in [-1, 1]. With a variance schedule
beta_1..beta_T and abar_t = prod_{s<=t} (1 - beta_s) (index t = 0..T-1 here):

    x_t  = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),  t ~ U{0..T-1}
    loss = mean (denoiser(x_t, t) - eps)^2

The denoiser gets t in the batch's context, ``Context(t=t)`` (N,), passed
with each forward pass; its time-conditioned layers embed it (netcli/layers/diffusion.py).

Sampling starts from x ~ N(0, I) and uses an exponential moving average of
the weights (``ema_decay``), kept in a second copy of the denoiser whose
parameters and batch-norm statistics (averaged too) are checkpointed as buffers:

- ancestral (DDPM): every t from T-1 to 0, x_{t-1} ~ q(x_{t-1} | x_t, x0_hat)
- DDIM (Song et al. 2021, eta = 0): a deterministic walk over ``steps`` of
  the T timesteps, x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_hat
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from .. import backend as B
from .. import distributed as D
from ..errors import UserError
from ..layers.base import named_buffers, named_params
from ..layers.container import Sequential
from ..layers.context import Context
from ..losses import make_loss
from .autoencoder import batch_rng, check_output, own_loss_only
from .base import Model, ModelCase, ModelConfig, register_model

SAMPLE_BATCH = 128  # images denoised at once while sampling (bounds the memory of cached activations)


def linear_betas(T: int, start: float, end: float) -> np.ndarray:
    """Ho et al.'s schedule, scaled from 1000 steps: beta rises linearly from ``start`` to ``end``."""
    scale = 1000 / T
    return np.linspace(start * scale, end * scale, T)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's schedule: abar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2)."""
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2  # (T+1,)
    return np.minimum(1 - f[1:] / f[:-1], max_beta)


def ema_update(ema: np.ndarray, value: np.ndarray, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * value, in place."""
    ema *= decay
    ema += (1 - decay) * value


def ddim_timesteps(T: int, steps: int) -> np.ndarray:
    """``steps`` timesteps spread evenly from T-1 down to 0 (one step: T-1 alone), in increasing order."""
    return np.unique(np.linspace(T - 1, 0, steps).round().astype(np.int64))


@register_model("ddpm")
class DDPM(Model):
    """A denoising diffusion model (Ho et al. 2020): a denoiser learns the noise added at a random timestep."""

    class Config(ModelConfig):
        type: Literal["ddpm"] = "ddpm"
        denoiser: list["LayerSpec"] = Field(  # noqa: F821
            min_length=1, description="(x_t, t) -> predicted noise, in the input's shape (e.g. one unet)")
        timesteps: int = Field(1000, ge=2, le=100_000, description="number T of diffusion steps")
        schedule: Literal["linear", "cosine"] = Field(
            "linear", description="beta schedule: linear (Ho et al.) or cosine (Nichol & Dhariwal)")
        beta_start: float = Field(1e-4, gt=0, lt=1, description="linear schedule: first beta (for T = 1000)")
        beta_end: float = Field(0.02, gt=0, lt=1, description="linear schedule: last beta (for T = 1000)")
        ema_decay: float = Field(0.999, ge=0, lt=1, description="decay of the weight average used for sampling "
                                                                "(0: sample with the trained weights)")
        sample_steps: Optional[int] = Field(
            None, ge=1, description="default sampler: none = ancestral over all T steps; k = DDIM with k steps")
        clip_denoised: bool = Field(True, description="clip each step's estimate of x0 to [-1, 1] while sampling")

        @model_validator(mode="after")
        def _schedule_fits(self):
            if self.schedule == "linear" and not (self.beta_start < self.beta_end and
                                                  self.beta_end * 1000 / self.timesteps < 1):
                raise ValueError("linear schedule: need beta_start < beta_end and beta_end * 1000 / timesteps < 1")
            if self.sample_steps is not None and self.sample_steps > self.timesteps:
                raise ValueError(f"sample_steps ({self.sample_steps}) exceeds timesteps ({self.timesteps})")
            return self

    capabilities = frozenset({"sample"})

    @classmethod
    def grad_cases(cls):
        unet = {"type": "unet", "base_channels": 2, "channel_mults": [1, 2], "time_dim": 4, "zero_init": False}
        return [ModelCase({"timesteps": 50, "denoiser": [{"type": "time_mlp_denoiser", "units": [8], "time_dim": 4}]},
                          (6,), batch=3),
                ModelCase({"timesteps": 50, "schedule": "cosine", "denoiser": [unet]}, (1, 4, 4), batch=3)]

    def build(self, info):
        own_loss_only(self, "noise-prediction MSE")
        cfg = self.config
        self.net = Sequential(Sequential.Config(layers=cfg.denoiser))
        check_output("denoiser", self.setup_net("denoiser", self.net, info.input_shape), info)
        if cfg.ema_decay > 0:  # a copy whose weights follow the average; its own generator leaves self.rng alone
            self.ema_net = Sequential(Sequential.Config(layers=cfg.denoiser))
            self.ema_net.setup(info.input_shape, np.random.default_rng(0))
            for e, p in self.ema_pairs():
                e[...] = p
        else:
            self.ema_net = self.net
        self.ema_updates = B.zeros(())  # how many averaging steps were taken (for the warm-up of the decay)
        betas = cosine_betas(cfg.timesteps) if cfg.schedule == "cosine" else \
            linear_betas(cfg.timesteps, cfg.beta_start, cfg.beta_end)
        self.betas = betas  # float64 (T,)
        self.alphas_cumprod = np.cumprod(1 - betas)  # abar_t
        self.mse = make_loss("mse")

    def networks(self):
        return {"denoiser": self.net}

    def buffers(self):
        yield from super().buffers()
        if self.ema_net is not self.net:
            for name, e, _ in named_params(self.ema_net, "denoiser_ema."):
                yield name, e, None, name
            yield from named_buffers(self.ema_net, "denoiser_ema.")  # batch-norm statistics of the average
            yield "ema_updates", self.ema_updates, None, "ema_updates"

    def ema_pairs(self):
        """(averaged, current) arrays: every parameter, and every buffer (batch-norm running statistics,
        which the averaged network needs to evaluate and sample; averaged like the weights, as timm does)."""
        yield from ((e, p) for (_, e, _), (_, p, _) in zip(named_params(self.ema_net), named_params(self.net)))
        yield from ((e, b) for (_, e, _, _), (_, b, _, _) in zip(named_buffers(self.ema_net), named_buffers(self.net)))

    # -- training ----------------------------------------------------------------
    def update_ema(self) -> None:
        """Move the averaged weights towards the current ones.

        Called at the start of each training batch, so it averages the weights
        after every optimizer step but the last of a run. The decay warms up
        as min(decay, (1 + k) / (10 + k)) over the k-th update, so that early
        averages do not remember the initial weights for thousands of steps.
        """
        if self.ema_net is self.net:
            return
        k = float(self.ema_updates)
        decay = min(self.config.ema_decay, (1 + k) / (10 + k))
        for e, p in self.ema_pairs():
            ema_update(e, p, decay)
        self.ema_updates += 1

    def noisy(self, x, t, eps):
        """x_t from images x in [0, 1], timesteps t (N,) and noise eps."""
        ab = self.alphas_cumprod[t].reshape(-1, *[1] * (x.ndim - 1))  # (N, 1, ...)
        return (np.sqrt(ab) * (2 * x - 1) + np.sqrt(1 - ab) * eps).astype(x.dtype)

    def noise_loss(self, net, x, t, eps, training):
        pred = net.forward(self.noisy(x, t, eps), training, Context(t=t))
        return {"loss": self.mse.forward(pred, eps)}

    def draw(self, x, rng):
        """A timestep per image and the noise to add (drawn for the global batch under MPI, this rank's rows kept)."""
        t = D.draw(lambda shape: rng.integers(0, self.config.timesteps, shape), (len(x),))
        return t, B.asarray(D.draw(rng.standard_normal, x.shape))

    def train_batch(self, x, y):
        self.update_ema()
        metrics = self.noise_loss(self.net, x, *self.draw(x, self.rng), training=True)
        self.net.backward(self.mse.backward())
        return metrics

    def eval_batch(self, x, y):
        """The loss of the averaged weights (those that sample), on timesteps and noise fixed per batch."""
        return self.noise_loss(self.ema_net, x, *self.draw(x, batch_rng(x)), training=False)

    # -- sampling ----------------------------------------------------------------------
    def predict_noise(self, x, t: int) -> np.ndarray:
        return self.ema_net.forward(x, False, Context(t=np.full(len(x), t)))

    def estimate_x0(self, x, t: int, eps):
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped if clip_denoised."""
        ab = float(self.alphas_cumprod[t])
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        return np.clip(x0, -1, 1) if self.config.clip_denoised else x0

    def ancestral_step(self, x, t: int, rng) -> np.ndarray:
        """x_{t-1} = mean of q(x_{t-1} | x_t, x0_hat) + sqrt(beta_tilde_t) z (no noise at t = 0)."""
        ab, beta = float(self.alphas_cumprod[t]), float(self.betas[t])
        ab_prev = float(self.alphas_cumprod[t - 1]) if t > 0 else 1.0
        x0 = self.estimate_x0(x, t, self.predict_noise(x, t))
        mean = (beta * math.sqrt(ab_prev) * x0 + (1 - ab_prev) * math.sqrt(1 - beta) * x) / (1 - ab)
        if t == 0:
            return mean
        var = beta * (1 - ab_prev) / (1 - ab)
        return mean + math.sqrt(var) * B.asarray(rng.standard_normal(x.shape))

    def ddim_step(self, x, t: int, t_prev: int) -> np.ndarray:
        """Deterministic DDIM update from t to t_prev (t_prev = -1: return x0_hat)."""
        ab = float(self.alphas_cumprod[t])  # Python floats keep x in its float dtype
        ab_prev = float(self.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
        eps = self.predict_noise(x, t)
        x0 = self.estimate_x0(x, t, eps)
        if self.config.clip_denoised:  # the noise that the clipped x0 implies
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps

    def denoise(self, x, rng, steps: int | None = None,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Run the reverse process from x = x_{T-1}: ancestral over all T steps, or DDIM over ``steps``."""
        if steps is None:
            for i, t in enumerate(range(self.config.timesteps - 1, -1, -1)):
                x = self.ancestral_step(x, t, rng)
                if progress:
                    progress(i + 1)
            return x
        ts = ddim_timesteps(self.config.timesteps, steps)
        for i in range(len(ts) - 1, -1, -1):
            x = self.ddim_step(x, int(ts[i]), int(ts[i - 1]) if i > 0 else -1)
            if progress:
                progress(len(ts) - i)
        return x

    def sample_steps(self, steps: int | None) -> int | None:
        """The DDIM step count to use (None: ancestral), after the config's default."""
        steps = steps if steps is not None else self.config.sample_steps
        if steps is not None and not 1 <= steps <= self.config.timesteps:
            raise UserError(f"DDIM needs 1 to {self.config.timesteps} steps, got {steps}")
        return steps

    def max_sample_steps(self) -> int:
        return self.config.timesteps

    def describe_sampler(self, steps: int | None) -> str:
        return "ancestral, all steps" if steps is None else f"DDIM, {steps} steps"

    def sample(self, n: int, rng: np.random.Generator, steps: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """n images in [0, 1], denoised from N(0, I) noise drawn from ``rng`` in batches of SAMPLE_BATCH."""
        steps = self.sample_steps(steps)
        per_batch = self.config.timesteps if steps is None else len(ddim_timesteps(self.config.timesteps, steps))
        batches = range(0, n, SAMPLE_BATCH)
        total = per_batch * len(batches)
        out = []
        for b, start in enumerate(batches):
            m = min(SAMPLE_BATCH, n - start)
            x = B.asarray(rng.standard_normal((m, *self.net.in_shape)))
            tick = (lambda i, done=b * per_batch: progress(done + i, total)) if progress else None
            out.append(self.denoise(x, rng, steps, tick))
        return np.clip((np.concatenate(out) + 1) / 2, 0, 1)
