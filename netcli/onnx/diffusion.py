"""The denoisers of diffusion models as networks of (x, t): time_mlp_denoiser, time_res_block, unet.

The timesteps t (N,) int64 are the graph context's (the ddpm model makes them
a graph input). Each time-conditioned layer embeds them as the engine does,

    emb = [sin(t f_k), cos(t f_k)],  f_k = 10000^(-k / (E/2))     # (N, E)

in float64 (a Constant node: the graph's initializers are float32), so the
embedding is the engine's to float32 rounding even for t in the thousands,
where float32 angles would be off by 1e-4. Nearest-neighbour upsampling is a
Resize that repeats each pixel 2x2.
"""
import math

import numpy as np

from .convert import ExportError, convert, converter


def time_embedding(g, layer, prefix) -> str:
    """(N, E) float32 sinusoids of the context's timesteps (see layers/diffusion.py timestep_embedding)."""
    if g.ctx.t is None:
        raise ExportError(f"{layer.type_name} at {prefix.rstrip('.') or 'the model'} needs the diffusion timesteps "
                          "(export it in a ddpm model, whose graph takes t)")
    half = layer.config.time_dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half).reshape(1, half)  # (1, E/2) float64
    double = g.onnx.TensorProto.DOUBLE
    t = g.op("Unsqueeze", g.op("Cast", g.ctx.t, to=double), g.const(np.array([1], np.int64)))  # (N, 1)
    angles = g.op("Mul", t, g.op("Constant", value=g.onnx.numpy_helper.from_array(freqs)))  # (N, E/2)
    emb = g.op("Concat", g.op("Sin", angles), g.op("Cos", angles), axis=1)  # (N, E)
    return g.op("Cast", emb, to=g.onnx.TensorProto.FLOAT)


@converter("time_mlp_denoiser")
def time_mlp_denoiser(g, layer, x, prefix):
    emb = time_embedding(g, layer, prefix)
    h = x  # (N, D)
    for i in range(len(layer.hidden)):
        z = g.op("Add", convert(g, layer.hidden[i], h, f"{prefix}hidden.{i}."),
                 convert(g, layer.time_proj[i], emb, f"{prefix}time_proj.{i}."))  # (N, U)
        h = convert(g, layer.acts[i], z, f"{prefix}act.{i}.")
    return convert(g, layer.out, h, prefix + "out.")  # (N, D)


@converter("time_res_block")
def time_res_block(g, layer, x, prefix):
    def sub(name, z):
        return convert(g, layer.children[name], z, f"{prefix}{name}.")

    shift = g.op("Unsqueeze", sub("time_proj", time_embedding(g, layer, prefix)),
                 g.const(np.array([2, 3], np.int64)))  # (N, F, 1, 1): one per sample and channel
    h = sub("conv2", sub("act2", g.op("Add", sub("conv1", sub("act1", x)), shift)))  # (N, F, H, W)
    return g.op("Add", h, x if layer.skip is None else sub("skip", x))


@converter("unet")
def unet(g, layer, x, prefix):
    def sub(name, z):
        return convert(g, layer.children[name], z, f"{prefix}{name}.")

    h = sub("stem", x)
    kept = []
    for level in range(len(layer.down)):
        h = sub(f"down.{level}", h)
        kept.append(h)
        if level < len(layer.downsample):
            h = sub(f"downsample.{level}", h)  # (N, C, H/2, W/2)
    if layer.mid is not None:
        h = sub("mid", h)
    scales = g.const(np.array([1, 1, 2, 2], np.float32))
    for level in reversed(range(len(layer.up))):
        if level < len(layer.downsample):
            h = g.op("Resize", h, "", scales, mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")  # (N, C, 2H, 2W), each pixel repeated 2x2
        h = sub(f"up.{level}", g.op("Concat", h, kept[level], axis=1))
    return sub("out_conv", sub("out_act", h))
