"""`netcli sample`: images from a trained generative run, as a PNG grid and a .npy array.

What comes out depends on what the model can do (its capabilities), not on its type:

    sample         samples from the prior (--steps: the sampler's steps, e.g. a DDPM's DDIM steps)
    latent         --interpolate: decodes of the straight line between the codes of two test images
    reconstruct    test images beside their reconstructions; the .npy is (n, 2, ...): original, reconstruction

Files go to the run's samples/ (or --out) and are written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image

from ..atomic import atomic_file
from ..errors import UserError
from ..models.base import require
from .evaluate import load_run


def as_images(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Samples (N, *shape) in [0, 1] -> (N, H, W) grey or (N, H, W, 3) colour images."""
    if len(shape) == 3 and shape[0] in (1, 3):  # (C, H, W)
        x = x.reshape(len(x), *shape).transpose(0, 2, 3, 1)
        return x[..., 0] if shape[0] == 1 else x
    side = math.isqrt(math.prod(shape))
    if len(shape) <= 2 and side * side == math.prod(shape):  # flat or (H, W) square images, e.g. (784,)
        return x.reshape(len(x), side, side)
    raise UserError(f"cannot show samples of shape {shape} as images (need (C, H, W) with C = 1 or 3, "
                    "or a square number of pixels)")


def grid(images: np.ndarray, cols: int, pad: int = 2, scale: int = 2, background: float = 0.5) -> np.ndarray:
    """(N, H, W[, 3]) images in [0, 1] -> one uint8 picture of rows of ``cols`` tiles, each scaled up ``scale``x."""
    n, h, w = images.shape[:3]
    rows = math.ceil(n / cols)
    sheet = np.full((pad + rows * (h + pad), pad + cols * (w + pad), *images.shape[3:]), background)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        sheet[top:top + h, left:left + w] = img
    sheet = sheet.repeat(scale, axis=0).repeat(scale, axis=1)
    return (np.clip(sheet, 0, 1) * 255).round().astype(np.uint8)


def held_out_images(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct images drawn from ``x``, a held-out split."""
    if n > len(x):
        raise UserError(f"asked for {n} images but the held-out split has {len(x)}")
    return x[np.sort(rng.choice(len(x), n, replace=False))]


def interpolation(model, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """n decodes evenly spaced on the line from the posterior mean of a to that of b, both ends included."""
    za, zb = model.encode(np.stack([a, b]))
    w = np.linspace(0, 1, n)[:, None]  # (n, 1)
    return model.decode((1 - w) * za + w * zb)


class Generated(NamedTuple):
    arrays: np.ndarray  # what the .npy holds: (n, *shape), or (n, 2, *shape) for reconstructions
    tiles: np.ndarray  # the grid's images, (k, H, W[, 3])
    name: str  # samples[-ddimK], interpolation or reconstructions
    cols: int  # tiles per row of the grid
    steps: int | None  # the sampler's steps used (the model's own default when none were asked for)


def generate(model, shape: tuple[int, ...], n: int, rng: np.random.Generator,
             held_out: Callable[[int], np.ndarray], steps: int | None = None, interpolate: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Generated:
    """What `netcli sample` and the UI's playground make, from what the model can do.

    The one check of the model's capability for both (``require``): ``interpolate`` needs ``latent``;
    otherwise ``sample`` (from the prior, with ``steps``) or else ``reconstruct``.
    ``held_out(k)`` gives k test images (the two ends of an interpolation, images to reconstruct).
    """
    can = require(model, "latent", "interpolate") if interpolate else require(model, ("sample", "reconstruct"), "sample")
    steps = model.sample_steps(steps)
    if can == "latent":
        a, b = held_out(2)
        arrays = interpolation(model, a, b, n)
        return Generated(arrays, as_images(arrays, shape), "interpolation", min(n, 16), steps)
    if can == "sample":
        arrays = model.sample(n, rng, steps=steps, progress=progress)
        return Generated(arrays, as_images(arrays, shape), "samples" + (f"-ddim{steps}" if steps is not None else ""),
                         math.ceil(math.sqrt(n)), steps)
    x = held_out(n)
    arrays = np.stack([x, model.reconstruct(x)], axis=1)  # (n, 2, *shape)
    tiles = as_images(arrays.reshape(2 * n, *shape), shape)  # original, reconstruction, original, ...
    return Generated(arrays, tiles, "reconstructions", 2 * math.ceil(math.sqrt(n / 2)), steps)  # near-square pairs


def sample_run(run: Path | str, n: int = 64, seed: int = 0, steps: int | None = None, out: Path | None = None,
               interpolate: bool = False, progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:
    """Generate from a run's best checkpoint; write a PNG grid and a .npy. Returns their paths."""
    run_dir, exp = load_run(run)
    rng = np.random.default_rng(seed)
    x = exp.splits.test_x if exp.splits.test_x is not None else exp.splits.val_x
    made = generate(exp.model, exp.splits.input_shape, n, rng, lambda k: held_out_images(x, k, rng),
                    steps, interpolate, progress)
    png = Path(out) if out is not None else run_dir / "samples" / f"{made.name}-seed{seed}.png"
    png = png if png.suffix == ".png" else png.with_name(png.name + ".png")
    npy = png.with_suffix(".npy")
    png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(png) as f:
        Image.fromarray(grid(made.tiles, made.cols)).save(f, format="PNG")
    with atomic_file(npy) as f:
        np.save(f, made.arrays.astype(np.float32))
    return {"png": png, "npy": npy}
