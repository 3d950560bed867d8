"""Generative models as ONNX networks: the VAE's and the autoencoder's decoders as generators
(latent -> image), and the DDPM's denoiser as a network of (x, t).

    vae:          "latent" (N, L)          -> "image" (N, *input_shape)   decode(z): sigmoid of the logits
                                                                           (bernoulli) or the means clipped to [0, 1]
    autoencoder:  "latent" (N, L)          -> "image"                     sigmoid of the logits (bce), or the output
    ddpm:         "input" (N, *input_shape) x_t in [-1, 1],
                  "t" (N,) int64 timesteps -> "noise" (N, *input_shape)   the averaged (EMA) weights, which sample

Sampling loops (DDPM's reverse process) and the prior's draws stay outside
the graph: the exported networks are their steps.
"""
from .convert import convert, model_converter


def _generator(g, net, prefix, info, to_pixels):
    z = g.input("latent", (None, *net.in_shape))
    out = convert(g, net, z, prefix)  # (N, *input_shape)
    g.output(to_pixels(out), "image", (None, *info.input_shape))


@model_converter("vae")
def vae(g, model, info):
    if model.config.likelihood == "bernoulli":
        _generator(g, model.decoder, "decoder.", info, lambda out: g.op("Sigmoid", out))
    else:
        _generator(g, model.decoder, "decoder.", info,
                   lambda out: g.op("Min", g.op("Max", out, g.const(0.0)), g.const(1.0)))


@model_converter("autoencoder")
def autoencoder(g, model, info):
    bce = model.config.reconstruction == "bce"
    _generator(g, model.decoder, "decoder.", info, lambda out: g.op("Sigmoid", out) if bce else out)


@model_converter("ddpm")
def ddpm(g, model, info):
    x = g.input("input", (None, *info.input_shape))
    g.ctx.t = g.input("t", (None,), "int64")
    prefix = "denoiser." if model.ema_net is model.net else "denoiser_ema."  # the EMA copy's buffer names
    g.output(convert(g, model.ema_net, x, prefix), "noise", (None, *info.input_shape))
