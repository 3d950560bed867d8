"""The playground's models: each run loaded once from its checkpoint (netcli.trained.load_run) and kept.

    describe(run_dir)            what the page can offer: sequence classifier, vae, ddpm, autoencoder
    predict(run_dir, request)    {"array"} -> probabilities
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
from ..sample import as_images, generate, grid, held_out_images
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
        t = self.load(run_dir).trained
        info, kind = t.info, t.config.model.type
        desc = info.description or {}
        out: dict[str, Any] = {"model": kind, "input_shape": list(info.input_shape), "input_dtype": info.input_dtype,
                               "checkpoint": t.path.name, "description": desc, "max_samples": MAX_SAMPLES}
        if info.task == "classification":
            out["classes"] = [info.class_name(k) for k in range(info.num_classes or 0)]
        if kind == "classifier" and desc.get("kind") == "tokens":
            out.update(kind="sequence_classifier", vocab=desc.get("vocab"))
        elif kind in ("vae", "ddpm", "autoencoder"):
            out["kind"] = kind
            if kind == "ddpm":
                out.update(timesteps=t.model.config.timesteps, sample_steps=t.model.config.sample_steps)
        else:
            out.update(kind="predictor", example=np.zeros(info.input_shape).tolist(),
                       reason=f"A {kind} on {desc.get('kind', 'array')} inputs: no drawing pad for it.")
        if out["kind"] in ("vae", "autoencoder"):
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
        t0 = time.perf_counter()
        loaded = self.load(run_dir)
        t = loaded.trained
        if "array" not in request:
            raise BadRequest('give {"array": [...]}: one input or a batch')
        try:
            x = np.asarray(request["array"], dtype=np.float64)
        except (ValueError, TypeError):
            raise BadRequest("array must be a (nested) list of numbers of one shape") from None
        with loaded.lock:
            x = t.check(x)
            out: dict[str, Any] = {}
            if t.is_classifier:
                p = t.predict_proba(x)
                classes = p.argmax(-1)
                out.update(probabilities=p.round(6).tolist(), classes=classes.tolist(),
                           labels=np.vectorize(t.info.class_name, otypes=[object])(classes).tolist())
            else:
                out["outputs"] = t.predict(x).tolist()
        out["ms"] = (time.perf_counter() - t0) * 1000
        return out

    # -- sample ---------------------------------------------------------------------------------
    def sample(self, run_dir: Path, request: dict[str, Any],
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        loaded = self.load(run_dir)
        t = loaded.trained
        kind, shape = t.config.model.type, tuple(t.info.input_shape)
        n = _int(request, "n", 16, 1, MAX_SAMPLES)
        seed = _int(request, "seed", 0, 0, 2**32 - 1)
        interpolate = bool(request.get("interpolate", False))
        if kind not in ("vae", "ddpm", "autoencoder"):
            raise BadRequest(f"a {kind} run does not generate images (a vae, ddpm or autoencoder run does)")
        if interpolate and kind != "vae":
            raise BadRequest(f"interpolation needs a VAE run; this is a {kind}")
        steps = None
        if kind == "ddpm":
            steps = t.model.sample_steps(_int(request, "steps", None, 1, t.model.config.timesteps))
        rng = np.random.default_rng(seed)
        if interpolate:
            x, _ = self.held_out(t)
            pair = [_int(request, k, None, 0, len(x) - 1) for k in ("a", "b")]
            if None in pair:
                raise BadRequest("an interpolation needs the test image indices a and b")
            held_out = lambda k: x[pair]  # noqa: E731
        else:
            held_out = lambda k: held_out_images(self.held_out(t)[0], k, rng)  # noqa: E731
        t0 = time.perf_counter()
        with loaded.lock:
            arrays, tiles, name, cols = generate(t.model, kind, shape, n, rng, held_out, steps, interpolate, progress)
        sheet = grid(tiles, cols)
        return {"n": n, "name": name, "steps": steps, "seconds": round(time.perf_counter() - t0, 3),
                "grid": _png_url(sheet), "grid_width": sheet.shape[1],
                "images": [_png_url((np.clip(tile, 0, 1) * 255).round().astype(np.uint8)) for tile in tiles]}


def _int(request: dict, key: str, default, lo: int, hi: int):
    v = request.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadRequest(f"{key} must be an integer from {lo} to {hi}, got {v!r}")
    return v


def _png_url(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
