"""Predictions for a user's own inputs (`netcli predict`), read the way the run's data expects.

    model = load_run("runs/mnist_cnn")
    result = predict(model, ["digit.png", "scans/", "batch.npy", "rows.csv"], top_k=3)
    result.rows       # one dict per input: input (file, file[i] or file:line) and class, probability, top_k
                      # (a classifier), classes + probabilities (per token), or values (a regressor)
    x, polarity = image_input(png_bytes, model.info)   # one picture -> one model input (for other front ends)

Inputs: image files (PNG, JPEG, BMP, GIF, WebP, TIFF; any size and mode), folders
(their images, recursively, sorted), ``.npy`` / ``.npz`` arrays of the input shape
(one sample or a batch), ``.csv`` files with the training feature columns, and
``-`` for stdin (NPY bytes or CSV text). A bad input is an InputError naming it;
with ``skip_bad`` it is reported in ``result.skipped`` and left out.

Images: converted to grey, fitted to the training size the way the description
says (``mnist``: the ink's bounding box scaled to 20x20 and centred by its centre
of mass in 28x28, as MNIST was made; ``resize``: the whole picture resized), then
scaled and normalised as in training. Pictures already of the training size are
taken as they are. ``polarity``: ``auto`` reads a picture whose border is brighter
than mid-grey as dark ink on a light background and inverts it to MNIST's white on
black; ``light-on-dark`` / ``dark-on-light`` fix the assumption.
"""
from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from .data.files import numbers, read_table
from .data.mnist import image_transform
from .errors import UserError
from .trained import InputError, TrainedModel

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # a larger picture is refused before it is decoded
Polarity = Literal["auto", "light-on-dark", "dark-on-light"]


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pillow comes with the core install; a broken environment still gets one line
        raise UserError("reading images needs pillow: pip install pillow") from None
    return Image


# -- images -------------------------------------------------------------------------------


def open_image(image, name: str = "image"):
    """A decoded PIL image from bytes, a path or a PIL image; refuses empty, unreadable and huge pictures."""
    Image = _pil()
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise InputError(f"{name}: empty (0 bytes)")
        image = io.BytesIO(image)
    elif Path(image).stat().st_size == 0:
        raise InputError(f"{name}: empty (0 bytes)")
    try:
        img = Image.open(image)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise InputError(f"{name}: {w}x{h} pixels is more than this reads ({MAX_PIXELS // 1_000_000} megapixels); "
                             "scale it down first")
        img.load()
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"{name}: not a readable image ({' '.join(str(e).split())})") from None
    return img


def image_input(image, info, polarity: Polarity = "auto", name: str = "image") -> tuple[np.ndarray, str]:
    """One picture (bytes, a path or a PIL image) -> (a model input of ``info.input_shape``, the polarity read).

    ``info`` is the run's DataInfo (``model.info``); its description must be of kind ``image``.
    """
    d = info.description
    if d.get("kind") != "image":
        raise InputError(f"{name}: this model takes {d.get('kind', 'array')} inputs of shape "
                         f"{tuple(info.input_shape)}, not images")
    img = open_image(image, name)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")  # transparent pixels are background: the light or dark of the polarity
        background = (255, 255, 255, 255) if polarity == "dark-on-light" else (0, 0, 0, 255)
        img = _pil().alpha_composite(_pil().new("RGBA", img.size, background), img)
    grey = np.asarray(img.convert("L"))  # (H, W) uint8
    read_as = polarity
    if polarity == "auto":
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        read_as = "dark-on-light" if border.mean() > 127 else "light-on-dark"
    if (read_as == "dark-on-light") == (d.get("polarity") == "light_on_dark"):
        grey = 255 - grey
    size = (d["height"], d["width"])
    if grey.shape != size:
        grey = fit_mnist(grey, size) if d.get("fit") == "mnist" else \
            np.asarray(_pil().fromarray(grey).resize(size[::-1], _pil().Resampling.BILINEAR))
    return image_transform(d)(grey[None])[0], read_as


def fit_mnist(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """White-on-black ink (H, W) uint8 as MNIST was made: bounding box into 20x20 (of 28), centred by mass."""
    Image = _pil()
    h, w = size
    box = round(20 * min(h, w) / 28)
    ink = grey > 0.25 * grey.max() if grey.max() else np.zeros_like(grey, bool)
    if not ink.any():
        return np.zeros(size, np.uint8)
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = box / max(crop.shape)
    ch, cw = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop).resize((cw, ch), Image.Resampling.LANCZOS), np.float64)
    out = np.zeros(size)
    mass = small.sum()
    cy, cx = ((np.arange(ch) @ small.sum(1)) / mass, (np.arange(cw) @ small.sum(0)) / mass) if mass else (ch / 2, cw / 2)
    top, left = int(round(h / 2 - cy)), int(round(w / 2 - cx))  # MNIST: the mass at pixel (14, 14)
    top, left = min(max(top, 0), h - ch), min(max(left, 0), w - cw)
    out[top:top + ch, left:left + cw] = small
    return np.clip(out, 0, 255).round().astype(np.uint8)


# -- reading inputs -------------------------------------------------------------------------


@dataclass
class Inputs:
    """Model inputs read so far: one source name per sample, images' polarities, what was skipped."""

    sources: list[str] = field(default_factory=list)
    samples: list[np.ndarray] = field(default_factory=list)  # each a batch (n, *input_shape)
    polarity: dict[str, str] = field(default_factory=dict)   # image source -> polarity read
    skipped: list[str] = field(default_factory=list)         # one line per skipped input


def read_inputs(model: TrainedModel, inputs: list[str | Path], polarity: Polarity = "auto", skip_bad: bool = False,
                stdin: BinaryIO | None = None) -> Inputs:
    """Every input as model inputs, in order; a bad one is an InputError, or skipped with ``skip_bad``."""
    got = Inputs()
    for item in inputs:
        for name, reader in _expand(str(item)):
            try:
                sources, x = reader(model, name, polarity, got, stdin)
            except InputError as e:
                if not skip_bad:
                    raise
                got.skipped.append(str(e))
                continue
            got.sources += sources
            got.samples.append(x)
    return got


def _expand(item: str):
    """(name, reader) for an input argument; a folder gives its images, sorted, recursively."""
    if item == "-":
        return [("-", _read_stdin)]
    p = Path(item)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            return [(item, _no_images)]
        return [(str(f), _read_image) for f in files]
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}
    return [(item, readers.get(p.suffix.lower(), _read_image))]


def _exists(name: str) -> Path:
    p = Path(name)
    if not p.is_file():
        raise InputError(f"{name}: no such file")
    return p


def _no_images(model, name, polarity, got, stdin):
    raise InputError(f"{name}: a folder with no images ({', '.join(sorted(IMAGE_SUFFIXES))})")


def _read_image(model, name, polarity, got, stdin):
    x, read_as = image_input(_exists(name), model.info, polarity, name)
    got.polarity[name] = read_as
    return [name], x[None]


def _batch(model: TrainedModel, name: str, a: np.ndarray) -> tuple[list[str], np.ndarray]:
    x = model.check(a, name)
    return ([name] if a.shape == tuple(model.info.input_shape) else [f"{name}[{i}]" for i in range(len(x))]), x


def _load_npy(name: str, data) -> np.ndarray:
    try:
        return np.load(data, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{name}: not a readable .npy array ({' '.join(str(e).split())})") from None


def _read_npy(model, name, polarity, got, stdin):
    return _batch(model, name, _load_npy(name, _exists(name)))


def _read_npz(model, name, polarity, got, stdin):
    import zipfile

    try:
        path = _exists(name)
        with np.load(path, allow_pickle=False) as z:
            keys = z.files
            key = "x" if "x" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise InputError(f"{name}: holds {', '.join(keys) or 'no arrays'}; name the inputs 'x'")
            a = z[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{name}: not a readable .npz of arrays ({' '.join(str(e).split())})") from None
    return _batch(model, f"{name}:{key}" if key != "x" else name, a)


def _read_csv(model, name, polarity, got, stdin, path: Path | None = None):
    d = model.info.description
    if d.get("kind") != "table":
        raise InputError(f"{name}: this model takes {d.get('kind', 'array')} inputs of shape "
                         f"{tuple(model.info.input_shape)}, not CSV rows")
    from .data import DataError

    try:
        header, cells = read_table(path or _exists(name))
    except DataError as e:
        raise InputError(str(e).replace(str(path), name) if path else str(e)) from None
    columns = d["columns"]
    missing = [c for c in columns if c not in header]
    extra = [c for c in header if c not in columns and c != d.get("label_column")]
    if missing or extra:
        raise InputError(f"{name}: " + "; ".join(([f"missing column(s) {', '.join(missing)}"] if missing else [])
                                                 + ([f"unknown column(s) {', '.join(extra)}"] if extra else []))
                         + f" (the model takes {', '.join(columns)})")
    try:
        x = numbers(Path(name), cells[:, [header.index(c) for c in columns]], columns)
    except DataError as e:
        raise InputError(str(e)) from None
    x = model.check(x, name)
    return [f"{name}:{line}" for line in range(2, 2 + len(x))], x


def _read_stdin(model, name, polarity, got, stdin):
    data = (stdin or sys.stdin.buffer).read()
    if not data:
        raise InputError("-: stdin is empty (pipe NPY bytes or CSV text)")
    if data.startswith(b"\x93NUMPY"):
        return _batch(model, "-", _load_npy("-", io.BytesIO(data)))
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".csv") as f:
        f.write(data)
        f.flush()
        return _read_csv(model, "-", polarity, got, stdin, path=Path(f.name))


# -- results ----------------------------------------------------------------------------------


@dataclass
class Prediction:
    rows: list[dict]
    skipped: list[str]
    polarity: dict[str, str]  # image input -> the polarity it was read with


def result_rows(model: TrainedModel, sources: list[str], x: np.ndarray, top_k: int = 3) -> list[dict]:
    """One dict per sample of ``x``: a classifier's class, probability and top K, per-token classes, or values."""
    info = model.info
    if not model.is_classifier:
        return [{"input": s, "values": v.reshape(-1).tolist()} for s, v in zip(sources, model.output(x))]
    proba = model.predict_proba(x)  # (N, [T,] C)
    if proba.ndim == 3:
        return [{"input": s, "classes": [info.class_name(k) for k in p.argmax(-1)],
                 "probabilities": [round(float(v), 6) for v in p.max(-1)]} for s, p in zip(sources, proba)]
    k = min(top_k, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [{"input": s, "class": info.class_name(t[0]), "probability": round(float(p[t[0]]), 6),
             "top_k": [[info.class_name(c), round(float(p[c]), 6)] for c in t]} for s, p, t in zip(sources, proba, top)]


def predict(model: TrainedModel, inputs: list[str | Path], top_k: int = 3, polarity: Polarity = "auto",
            skip_bad: bool = False, stdin: BinaryIO | None = None) -> Prediction:
    """Read every input (see the module notes), predict them in batches, and return one row per sample."""
    got = read_inputs(model, inputs, polarity, skip_bad, stdin)
    if not got.sources:
        raise InputError("no input could be read" + (f" ({len(got.skipped)} skipped)" if got.skipped else ""))
    x = got.samples[0] if len(got.samples) == 1 else np.concatenate(got.samples)
    return Prediction(result_rows(model, got.sources, x, top_k), got.skipped, got.polarity)


def rows_as_csv(rows: list[dict]) -> str:
    """CSV text of result rows: input, then class, probability, top_k ("name:p;..."), classes or values."""
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if rows and "values" in rows[0]:
        w.writerow(["input", *[f"value_{i}" for i in range(len(rows[0]["values"]))]])
        w.writerows([r["input"], *r["values"]] for r in rows)
    elif rows and "classes" in rows[0]:
        w.writerow(["input", "classes", "probabilities"])
        w.writerows([r["input"], " ".join(r["classes"]), " ".join(map(str, r["probabilities"]))] for r in rows)
    else:
        w.writerow(["input", "class", "probability", "top_k"])
        w.writerows([r["input"], r["class"], r["probability"], ";".join(f"{c}:{p}" for c, p in r["top_k"])]
                    for r in rows)
    return buf.getvalue()
