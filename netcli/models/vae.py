"""Variational autoencoder (Kingma & Welling 2014).

    h = encoder(x)                      # (N, 2L): mean and log-variance of q(z|x)
    mu, logvar = h[:, :L], h[:, L:]
    z = mu + exp(logvar / 2) * eps      # eps ~ N(0, I) from the model's generator (reparameterisation)
    out = decoder(z)                    # logits (bernoulli) or means (gaussian) of p(x|z), in x's shape

Per image, in nats:

    recon = -log p(x|z)                 bernoulli: sum of BCE(out, x) over pixels
                                        gaussian:  sum (x - out)^2 / (2 sigma^2) + D log(sigma sqrt(2 pi))
    kl    = KL(q(z|x) || N(0, I)) = 1/2 sum(mu^2 + exp(logvar) - 1 - logvar)
    loss  = recon + beta * kl           (beta = 1: the negative ELBO, reported as nelbo)

Evaluation draws eps from a generator seeded by the batch, so `netcli eval`
reports the same single-sample ELBO estimate every time.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from .. import backend as B
from .. import distributed as D
from ..layers.base import ShapeError
from ..layers.container import Sequential
from ..losses import make_loss
from .autoencoder import batch_rng, check_output, own_loss_only
from .base import Model, ModelCase, ModelConfig, register_model


@register_model("vae")
class VAE(Model):
    """A variational autoencoder: encoder to (mu, log var), a reparameterised sample, decoder; loss = reconstruction + KL."""

    class Config(ModelConfig):
        type: Literal["vae"] = "vae"
        latent_dim: int = Field(gt=0, description="size L of the latent code z")
        encoder: list["LayerSpec"] = Field(  # noqa: F821
            min_length=1, description="input -> 2*latent_dim features: the mean, then the log-variance of q(z|x)")
        decoder: list["LayerSpec"] = Field(  # noqa: F821
            min_length=1, description="z -> parameters of p(x|z) in the input's shape (logits for bernoulli)")
        likelihood: Literal["bernoulli", "gaussian"] = Field(
            "bernoulli", description="p(x|z): bernoulli on pixel intensities in [0, 1] (BCE on logits), or "
                                     "gaussian with a fixed standard deviation sigma (squared error)")
        sigma: float = Field(1.0, gt=0, description="standard deviation of the gaussian likelihood")
        beta: float = Field(1.0, ge=0, description="weight of the KL term in the loss (1: the ELBO; 0: an autoencoder)")

    capabilities = frozenset({"sample", "latent"})

    @classmethod
    def grad_cases(cls):
        mlp = {"latent_dim": 2, "encoder": [{"type": "dense", "units": 6}, "tanh", {"type": "dense", "units": 4}],
               "decoder": [{"type": "dense", "units": 6}, "tanh", {"type": "dense", "units": 10}]}
        return [ModelCase({**mlp, "beta": 0.5}, (10,)),
                ModelCase({**mlp, "likelihood": "gaussian", "sigma": 0.3}, (10,)),
                ModelCase({**mlp, "beta": 0.0}, (10,), note="no KL term")]

    def build(self, info):
        own_loss_only(self, "model.likelihood and model.beta")
        L = self.config.latent_dim
        self.encoder = Sequential(Sequential.Config(layers=self.config.encoder))
        self.decoder = Sequential(Sequential.Config(layers=self.config.decoder))
        out = self.setup_net("encoder", self.encoder, info.input_shape)
        if tuple(out) != (2 * L,):
            raise ShapeError(f"the encoder ends in shape {tuple(out)} but needs ({2 * L},): the mean and "
                             f"log-variance of {L} latents (end with a dense layer of {2 * L} units)", ["encoder"])
        check_output("decoder", self.setup_net("decoder", self.decoder, (L,), input_grad=True), info)
        self.pixels = int(np.prod(info.input_shape))
        self.recon_loss = make_loss("binary_cross_entropy" if self.config.likelihood == "bernoulli" else "mse")

    def networks(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    # -- the loss ----------------------------------------------------------------
    def _forward(self, x, eps, training):
        L, cfg = self.config.latent_dim, self.config
        h = self.encoder.forward(x, training)  # (N, 2L)
        self.mu, self.logvar = h[:, :L], h[:, L:]
        self.std = np.exp(0.5 * self.logvar)  # (N, L)
        self.eps = eps
        out = self.decoder.forward(self.mu + self.std * eps, training)  # (N, *input_shape)
        recon = self.recon_loss.forward(out, x) * self.pixels  # mean over pixels -> sum per image
        if cfg.likelihood == "gaussian":
            recon = recon / (2 * cfg.sigma**2) + self.pixels * math.log(cfg.sigma * math.sqrt(2 * math.pi))
        kl = 0.5 * float(np.sum(self.mu**2 + self.std**2 - 1 - self.logvar)) / len(x)
        return {"loss": recon + cfg.beta * kl, "recon": recon, "kl": kl, "nelbo": recon + kl}

    def _backward(self):
        cfg, n = self.config, len(self.mu)
        dout = self.recon_loss.backward() * self.pixels  # d recon / d out
        if cfg.likelihood == "gaussian":
            dout /= 2 * cfg.sigma**2
        dz = self.decoder.backward(dout)  # (N, L)
        dmu = dz + (cfg.beta / n) * self.mu
        dlogvar = 0.5 * dz * self.eps * self.std + (cfg.beta / n) * 0.5 * (self.std**2 - 1)
        self.encoder.backward(np.concatenate([dmu, dlogvar], axis=1))

    def noise(self, n, rng):
        return B.asarray(D.draw(rng.standard_normal, (n, self.config.latent_dim)))  # the global batch's, under MPI

    def train_batch(self, x, y):
        metrics = self._forward(x, self.noise(len(x), self.rng), training=True)
        self._backward()
        return metrics

    def eval_batch(self, x, y):
        return self._forward(x, self.noise(len(x), batch_rng(x)), training=False)

    # -- generation ------------------------------------------------------------------
    def encode(self, x) -> np.ndarray:
        """Means of q(z|x): (N, L)."""
        return self.encoder.forward(x, training=False)[:, :self.config.latent_dim]

    def decode(self, z) -> np.ndarray:
        """Mean of p(x|z): pixel intensities (N, *input_shape)."""
        out = self.decoder.forward(B.asarray(z), training=False)
        from scipy import special  # imported when needed: it is slow to import

        return special.expit(out) if self.config.likelihood == "bernoulli" else np.clip(out, 0, 1)

    def sample(self, n, rng, steps=None, progress=None) -> np.ndarray:
        """n images decoded from z ~ N(0, I)."""
        return self.decode(self.noise(n, rng))
