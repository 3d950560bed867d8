"""The playground's models: each run loaded once from its checkpoint (netcli.trained.load_run) and kept.

    describe(run_dir)            what the page can offer: image / sequence classifier, vae, generator, autoencoder
    predict(run_dir, request)    {"image_bytes"} (a posted picture), {"image": data URL} or {"array"} -> probabilities
    sample(run_dir, request)     prior samples, DDIM with chosen steps, interpolations, reconstructions
    test_sample(run_dir, i)      the i-th held-out sample and its label (the data set is loaded on first use)

A model is reloaded when its checkpoint file changes (a run still training writes a new best.npz).
Predictions go through the same functions as `netcli predict`; samples through `netcli sample`'s.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..data import load_data
from ..errors import UserError
from ..app.sample import as_images, generate, grid, held_out_images
from ..predict import image_input
from ..trained import TrainedModel, checkpoint_path, load_run
from .api import BadRequest, RunsAPI

MAX_SAMPLES = 64  # images one sample request may ask for
KEEP_MODELS = 8   # loaded runs kept in memory
KEEP_DATA = 2     # loaded data sets kept in memory (MNIST: about 200 MB each)


class _Loaded:
    def __init__(self, stamp: tuple, trained: TrainedModel):
        self.stamp, self.trained = stamp, trained
        self.lock = threading.Lock()  # a model's layers cache activations: one call at a time


class Playground:
    def __init__(self, api: RunsAPI):
        self.api = api
        self._models: OrderedDict[str, _Loaded] = OrderedDict()
        self._data: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------
    def load(self, run_dir: Path) -> _Loaded:
        path = checkpoint_path(run_dir)
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._models.get(str(run_dir))
            if hit is not None and hit.stamp == stamp:
                self._models.move_to_end(str(run_dir))
                return hit
        loaded = _Loaded(stamp, load_run(path))
        with self._lock:
            self._models[str(run_dir)] = loaded
            while len(self._models) > KEEP_MODELS:
                self._models.popitem(last=False)
        return loaded

    def held_out(self, trained: TrainedModel) -> tuple[np.ndarray, np.ndarray]:
        """The run's test split (its validation split where there is none), loaded as `netcli eval` loads it."""
        cfg = trained.config
        key = json.dumps([cfg.data.model_dump(mode="json"), cfg.seed])
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        splits = load_data(cfg.data, cfg.seed)
        xy = (splits.test_x, splits.test_y) if splits.test_x is not None else (splits.val_x, splits.val_y)
        with self._lock:
            self._data[key] = xy
            while len(self._data) > KEEP_DATA:
                self._data.popitem(last=False)
        return xy

    # -- what the page shows ------------------------------------------------------------------
    def describe(self, run_dir: Path) -> dict[str, Any]:
        """The page's playground for the run, from what its model can do (its capabilities)."""
        t = self.load(run_dir).trained
        info, caps = t.info, t.model.capabilities
        desc = info.description or {}
        out: dict[str, Any] = {"model": t.config.model.type, "input_shape": list(info.input_shape),
                               "input_dtype": info.input_dtype, "checkpoint": t.path.name, "description": desc,
                               "max_samples": MAX_SAMPLES}
        if info.task == "classification":
            out["classes"] = [info.class_name(k) for k in range(info.num_classes or 0)]
        if "latent" in caps:
            out["kind"] = "vae"
        elif "sample" in caps:
            # a sampler with steps to set (a DDPM's DDIM): the most it takes and its default
            out.update(kind="generator", timesteps=t.model.max_sample_steps(), sample_steps=t.model.sample_steps(None))
        elif "reconstruct" in caps:
            out["kind"] = "autoencoder"
        elif t.is_classifier and desc.get("kind") == "image":
            out["kind"] = "image_classifier"
        elif t.is_classifier and desc.get("kind") == "tokens":
            out.update(kind="sequence_classifier", vocab=desc.get("vocab"))
        else:
            out.update(kind="predictor", example=np.zeros(info.input_shape).tolist(),
                       reason=f"A {out['model']} on {desc.get('kind', 'array')} inputs.")
        if out["kind"] in ("image_classifier", "vae", "autoencoder"):
            out["test_samples"] = len(self.held_out(t)[0])
        return out

    def test_sample(self, run_dir: Path, index: int) -> dict[str, Any]:
        t = self.load(run_dir).trained
        x, y = self.held_out(t)
        if not 0 <= index < len(x):
            raise BadRequest(f"test sample {index} is out of range: the held-out split has {len(x)}")
        sample: dict[str, Any] = {"index": index, "label": y[index].tolist()}
        try:
            sample["image"] = as_images(x[index:index + 1], tuple(t.info.input_shape))[0].round(4).tolist()
        except UserError:
            sample["array"] = x[index].tolist()
        return sample

    # -- predict ----------------------------------------------------------------------------
    def predict(self, run_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
        """An image (``image_bytes``: a posted file; ``image``: a data URL) read as `netcli predict` reads an image
        file, or an ``array`` of inputs; the model's classes and probabilities (a regressor: its outputs)."""
        t0 = time.perf_counter()
        loaded = self.load(run_dir)
        t = loaded.trained
        image = request.get("image_bytes")
        if image is None and "image" in request:
            image = _data_url_bytes(request["image"])
        if image is not None:
            x, _ = image_input(image, t.info, name="the posted image")
            x = x[None]
        elif "array" in request:
            try:
                x = np.asarray(request["array"], dtype=np.float64)
            except (ValueError, TypeError):
                raise BadRequest("array must be a (nested) list of numbers of one shape") from None
        else:
            raise BadRequest('give an image (a PNG body, or {"image": data URL}) or {"array": [...]}')
        with loaded.lock:
            x = t.check(x)
            out: dict[str, Any] = {}
            if t.is_classifier:
                p = t.predict_proba(x)
                classes = p.argmax(-1)
                out.update(probabilities=p.round(6).tolist(), classes=classes.tolist(),
                           labels=np.vectorize(t.info.class_name, otypes=[object])(classes).tolist())
            else:
                out["outputs"] = t.output(x).tolist()
        if image is not None:  # what the network read, to show beside the drawing
            out["input"] = as_images(x[:1], tuple(t.info.input_shape))[0].round(3).tolist()
        out["ms"] = (time.perf_counter() - t0) * 1000
        return out

    # -- sample ---------------------------------------------------------------------------------
    def sample(self, run_dir: Path, request: dict[str, Any],
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        loaded = self.load(run_dir)
        t = loaded.trained
        model, shape = t.model, tuple(t.info.input_shape)
        n = _int(request, "n", 16, 1, MAX_SAMPLES)
        seed = _int(request, "seed", 0, 0, 2**32 - 1)
        interpolate = bool(request.get("interpolate", False))
        steps = _int(request, "steps", None, 1, 2**31 - 1)
        rng = np.random.default_rng(seed)

        def held_out(k: int) -> np.ndarray:  # called by generate once the model's capability is checked
            x = self.held_out(t)[0]
            if not interpolate:
                return held_out_images(x, k, rng)
            pair = [_int(request, key, None, 0, len(x) - 1) for key in ("a", "b")]
            if None in pair:
                raise BadRequest("an interpolation needs the test image indices a and b")
            return x[pair]

        t0 = time.perf_counter()
        with loaded.lock:
            made = generate(model, shape, n, rng, held_out, steps, interpolate, progress)
        sheet = grid(made.tiles, made.cols)
        return {"n": n, "name": made.name, "steps": made.steps, "seconds": round(time.perf_counter() - t0, 3),
                "grid": _png_url(sheet), "grid_width": sheet.shape[1],
                "images": [_png_url((np.clip(tile, 0, 1) * 255).round().astype(np.uint8)) for tile in made.tiles]}


def _int(request: dict, key: str, default, lo: int, hi: int):
    v = request.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"{key} must be an integer from {lo} to {hi}, got {v!r}")
    return v


def _data_url_bytes(url: Any) -> bytes:
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest('image must be a data URL: "data:image/png;base64,..."')
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except ValueError:
        raise BadRequest("image: the data URL's base64 is damaged") from None


def _png_url(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
