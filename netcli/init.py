"""`netcli init`: a commented, valid experiment file for a model kind and a data source.

    netcli init --model cnn --data mnist -o my.yaml
    netcli init --model mlp --data sales.csv --target price -o sales.yaml

A CSV or npz file is loaded with the same loader training uses, so the input
shape, the task (classification for integer or text labels, else regression)
and the number of classes or targets written into the config are the ones
training will see. Each model kind needs a layout of the input: a vector
(mlp, autoencoder, vae), a sequence (rnn, lstm, gru, transformer) or an image
(cnn; ddpm where height and width divide by 4). The config adapts the data to
the layout (MNIST's flatten / as_sequence options, or flatten / reshape layers
for a file's arrays) and refuses a kind the data cannot take. The generative
kinds need features in [0, 1], like image pixels.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import yaml

from .errors import UserError
from .reference import flow_yaml
from .userfiles import absolute, check_file

KINDS = ("mlp", "cnn", "rnn", "lstm", "gru", "transformer", "autoencoder", "vae", "ddpm")
BUILTIN = {"mnist": "MNIST digits", "fashion_mnist": "Fashion-MNIST clothing images"}
GENERATIVE = ("autoencoder", "vae", "ddpm")
# ask(question, choices or None, default or None) -> answer; None where nobody can be asked (not a terminal)
Ask = Optional[Callable[[str, Optional[list[str]], Optional[str]], str]]


@dataclass
class DataInfo:
    """What the data looks like to a model: from the loader, for one sample."""

    section: dict[str, Any]   # the config's data: section, without batch_size / val_fraction
    shape: tuple[int, ...]    # one input sample
    task: str                 # classification or regression
    outputs: int              # classes, or regression targets
    unit_range: bool          # every feature in [0, 1]
    describe: str             # for the comments: what was found
    builtin: bool = False
    samples: int = 0
    notes: dict[str, str] = field(default_factory=dict)  # data key -> comment


def inspect(source: str, target: str | None, config_dir: Path, ask: Ask = None) -> DataInfo:
    """Describe ``source``: mnist, fashion_mnist, or a .csv / .npz path (relative paths: from the working directory)."""
    if source in BUILTIN:
        return DataInfo({"dataset": source}, (1, 28, 28), "classification", 10, True,
                        f"{BUILTIN[source]}, (1, 28, 28) in [0, 1], 10 classes", builtin=True, samples=60000)
    path = Path(source).expanduser()
    if path.suffix.lower() not in (".csv", ".npz"):
        raise UserError(f"--data {source}: expected mnist, fashion_mnist, or a .csv or .npz file")
    check_file(path, lambda message: UserError(f"--data {message}"))  # missing, a loop, a FIFO, ...
    rel = Path(os.path.relpath(absolute(path), absolute(config_dir)))
    notes = {"path": "relative to this file"}
    if path.suffix.lower() == ".csv":
        columns = csv_columns(path)
        if target is None:
            if ask is None:
                raise UserError(f"{path}: give --target, the column to predict (columns: {', '.join(columns)})")
            target = ask(f"column to predict ({', '.join(columns)})", columns, columns[-1])
        if target not in columns:
            raise UserError(f"{path}: no column '{target}'; columns: {', '.join(columns)}")
        section = {"dataset": "csv", "path": str(rel), "label_column": target}
        notes["label_column"] = f"the target; the other {len(columns) - 1} columns are the features"
    else:
        section = {"dataset": "npz", "path": str(rel), **npz_keys(path)}
    from .data import load_data, parse_data_config

    splits = load_data(parse_data_config({**section, "path": absolute(path), "val_fraction": 0}), seed=0)
    x = splits.train_x
    task = splits.task
    outputs = splits.num_classes if task == "classification" else int(np.prod(splits.target_shape))
    if task == "regression" and len(splits.target_shape) != 1:
        raise UserError(f"{path}: targets of shape {splits.target_shape}; netcli init writes models for class "
                        "labels or (k,) real targets")
    what = f"{outputs} classes" if task == "classification" else f"{outputs} real target(s)"
    return DataInfo(section, tuple(splits.input_shape), task, outputs, bool(x.min() >= 0 and x.max() <= 1),
                    f"{path.name}: {len(x)} samples of shape {tuple(splits.input_shape)}, {task}, {what}",
                    samples=len(x), notes=notes)


def csv_columns(path: Path) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # as the CSV reader: a byte-order mark is no name
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read as CSV ({e})") from None
    if len(header) < 2:
        raise UserError(f"{path}: needs a header line naming at least two columns (features and a target)")
    return [h.strip() for h in header]


def npz_keys(path: Path) -> dict[str, str]:
    """x_key / y_key: x and y if the file has them, else the larger of exactly two arrays as the features."""
    try:
        with np.load(path, allow_pickle=False) as f:
            shapes = {k: f[k].shape for k in f.files}
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npz ({e})") from None
    if {"x", "y"} <= set(shapes):
        return {}
    if len(shapes) != 2:
        raise UserError(f"{path}: has arrays {', '.join(shapes) or 'none'}; save the features as x and the targets as y")
    x_key, y_key = sorted(shapes, key=lambda k: (len(shapes[k]), math.prod(shapes[k])), reverse=True)
    return {"x_key": x_key, "y_key": y_key}


# -- the model for a kind ---------------------------------------------------------------------


Layers = list[tuple[Any, str]]  # (layer, comment)


def layout_of(kind: str, info: DataInfo) -> str:
    if kind in ("mlp", "autoencoder", "vae"):
        return "vector"
    if kind in ("rnn", "lstm", "gru", "transformer"):
        return "sequence"
    if kind == "cnn":
        return "image"
    image = _as_image(info.shape)
    return "image" if image and image[1] % 4 == 0 and image[2] % 4 == 0 else "vector"  # ddpm: a unet or an MLP


def _as_image(shape: tuple) -> tuple | None:
    return shape if len(shape) == 3 else (1, *shape) if len(shape) == 2 else None


def offered(kind: str, info: DataInfo) -> str | None:
    """Why ``kind`` cannot take this data, or None when it can."""
    if kind in GENERATIVE and not info.unit_range:
        return "the generative kinds need features in [0, 1] (like image pixels)"
    layout, shape = layout_of(kind, info), info.shape
    if layout == "sequence" and not (len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)):
        return f"samples of shape {shape} are not sequences (T, F) (nor one-channel images)"
    if layout == "image":
        image = _as_image(shape)
        if image is None or image[1] < 4 or image[2] < 4:
            return f"samples of shape {shape} are not images (C, H, W) of at least 4 x 4"
    return None


def adapt(kind: str, info: DataInfo) -> tuple[dict, Layers, tuple]:
    """Data options and leading layers that give ``kind`` its layout; the shape the model then sees."""
    layout, shape = layout_of(kind, info), info.shape
    if info.builtin:
        if layout == "vector":
            return {"flatten": True}, [], (784,)
        if layout == "sequence":
            return {"as_sequence": True}, [], (28, 28)
        return {}, [], shape
    if layout == "vector":
        return {}, ([("flatten", f"{shape} -> ({math.prod(shape)},)")] if len(shape) > 1 else []), (math.prod(shape),)
    if layout == "sequence":
        if len(shape) == 3:
            return {}, [({"type": "reshape", "shape": list(shape[1:])}, "one-channel images as sequences of rows")], shape[1:]
        return {}, [], shape
    if len(shape) == 2:
        return {}, [({"type": "reshape", "shape": [1, *shape]}, "one channel")], (1, *shape)
    return {}, [], shape


def supervised(kind: str, info: DataInfo, lead: Layers, shape: tuple) -> Layers:
    head = ({"type": "dense", "units": info.outputs},
            "logits, one per class" if info.task == "classification" else "the predicted value(s)")
    if kind == "mlp":
        return lead + [({"type": "dense", "units": 128}, "He init, since a relu follows"), ("relu", ""),
                       ({"type": "dense", "units": 64}, ""), ("relu", ""), head]
    if kind == "cnn":
        c, h, w = shape
        return lead + [({"type": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, f"(16, {h}, {w})"), ("relu", ""),
                       ({"type": "maxpool2d", "size": 2}, f"(16, {h // 2}, {w // 2})"),
                       ({"type": "conv2d", "filters": 32, "kernel": 3, "padding": 1}, ""), ("relu", ""),
                       ({"type": "maxpool2d", "size": 2}, f"(32, {h // 4}, {w // 4})"), ("flatten", ""),
                       ({"type": "dense", "units": 64}, ""), ("relu", ""), head]
    if kind in ("rnn", "lstm", "gru"):
        return lead + [({"type": kind, "units": 64}, f"reads the {shape[0]} steps; the last hidden state, (64,)"),
                       head]
    return lead + [({"type": "dense", "units": 64}, f"each of the {shape[0]} steps projected to (64,)"),
                   ("sinusoidal_position", "where each step is"),
                   ({"type": "transformer_encoder", "blocks": 2, "heads": 4, "ffn": 128, "dropout": 0.1}, "(T, 64)"),
                   ("mean_pool", "(64,): the mean over the steps"), head]


def generative(kind: str, info: DataInfo, lead: Layers, shape: tuple) -> dict[str, Any]:
    """The model section of an autoencoder, VAE or DDPM (layers in its lists are (layer, comment) pairs)."""
    size = math.prod(info.shape)
    data_shape = shape if info.builtin else info.shape  # what the model is given (after MNIST's own options)
    unet = kind == "ddpm" and layout_of(kind, info) == "image"
    net_out = shape if unet else (size,)

    def back():
        return [] if net_out == data_shape else [({"type": "reshape", "shape": list(data_shape)}, "back to the input's shape")]

    if kind == "ddpm":
        if unet:
            net = [({"type": "unet", "base_channels": 8, "channel_mults": [1, 2, 4], "time_dim": 32},
                    "predicts the noise, in the input's shape")]
        else:
            net = [({"type": "time_mlp_denoiser", "units": [256, 256], "time_dim": 32}, "predicts the noise")]
        return {"type": "ddpm", "schedule": ("cosine", "beta schedule of Nichol & Dhariwal"),
                "sample_steps": (50, "netcli sample: DDIM with 50 steps"), "denoiser": lead + net + back()}
    decoder = [({"type": "dense", "units": 128}, ""), ("relu", ""),
               ({"type": "dense", "units": size}, "logits of the inputs" if info.unit_range else "the reconstruction")]
    if kind == "autoencoder":
        return {"type": "autoencoder", "reconstruction": ("bce", "the decoder outputs logits of values in [0, 1]"),
                "encoder": lead + [({"type": "dense", "units": 128}, ""), ("relu", ""),
                                   ({"type": "dense", "units": 16}, "the code")],
                "decoder": decoder + back()}
    return {"type": "vae", "latent_dim": (8, "size of z"),
            "likelihood": ("bernoulli", "-log p(x|z): BCE of the decoder's logits"),
            "encoder": lead + [({"type": "dense", "units": 128}, ""), ("relu", ""),
                               ({"type": "dense", "units": 16}, "8 means, then 8 log-variances of q(z|x)")],
            "decoder": decoder + back()}


# -- the file -----------------------------------------------------------------------------------


def write_config(kind: str, source: str, out: Path, target: str | None = None, force: bool = False,
                 ask: Ask = None) -> Path:
    """Inspect the data, write the commented config to ``out`` (never over a file unless ``force``), return it."""
    if kind not in KINDS:
        from .registry import did_you_mean

        raise UserError(f"--model {kind}: unknown model kind{did_you_mean(kind, list(KINDS))}; "
                        f"valid: {', '.join(KINDS)}")
    if out.exists() and not force:
        raise UserError(f"{out}: exists; pass --force to overwrite it")
    text = config_text(kind, source, out, target, ask)
    from .config import config_from_dict

    config_from_dict(yaml.safe_load(text), str(out))  # what we write validates
    from .runs import write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)
    return out


def config_text(kind: str, source: str, out: Path, target: str | None = None, ask: Ask = None) -> str:
    info = inspect(source, target, out.parent, ask)
    why = offered(kind, info)
    if why:
        can = [k for k in KINDS if offered(k, info) is None]
        raise UserError(f"--model {kind} --data {source}: {why}; this data takes: {', '.join(can)}")
    data_extra, lead, shape = adapt(kind, info)
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in out.stem).lstrip("_.-") or f"my_{kind}"
    batch = 64 if info.samples >= 2000 else 32
    steps_per_epoch = max(1, math.ceil(info.samples * 0.9 / batch))
    epochs = max(5, min(300, math.ceil(3000 / steps_per_epoch)))  # about 3,000 steps, at least 5 epochs
    lines = [f"# yaml-language-server: $schema={_schema_path(out)}",
             f"# {'An' if kind[0] in 'aeiou' or kind == 'mlp' else 'A'} {kind} on {info.describe}.",
             f"# Written by: netcli init --model {kind} --data {source}" + (f" --target {target}" if target else ""),
             f"#   netcli validate {out.name}      # then: netcli summary {out.name}",
             f"#   netcli train {out.name}",
             f"#   netcli eval runs/{name}" + ("" if info.builtin else " --split val")
             + ("        # the newest run's metrics" if kind not in GENERATIVE else ""),
             f"name: {name}", "seed: 0", "data:"]
    section = {**info.section, **data_extra, "batch_size": batch, "val_fraction": 0.1}
    notes = {**info.notes, "flatten": f"images as ({math.prod(info.shape)},) vectors",
             "as_sequence": "images as 28 steps of 28 pixels", "val_fraction": "held out to pick the best epoch"}
    lines += [_line(f"  {k}: {flow_yaml(v)}", notes.get(k, "")) for k, v in section.items()]
    if not info.builtin:
        lines.append("  # test_path: test" + Path(section["path"]).suffix + "    # a held-out file of the same layout, for netcli eval")
    lines.append("model:")
    if kind in GENERATIVE:
        model = generative(kind, info, lead, shape)
    else:
        model = {"type": ("classifier" if info.task == "classification" else "regressor",
                          "cross-entropy on logits, accuracy" if info.task == "classification" else "MSE, MAE"),
                 "layers": supervised(kind, info, lead, shape)}
    for k, v in model.items():
        if isinstance(v, list):
            lines.append(f"  {k}:")
            lines += [_line(f"    - {flow_yaml(layer)}", comment) for layer, comment in v]
        else:
            value, comment = v if isinstance(v, tuple) else (v, "")
            lines.append(_line(f"  {k}: {flow_yaml(value)}", comment))
    lines += [_line("optimizer: {type: adam, lr: 1.0e-3}", "netcli list optimizers: the others"),
              _line("schedule: {type: cosine}", "from lr down to 0 over the run"),
              "train:", _line(f"  epochs: {epochs}", "passes over the training set")]
    if kind in ("rnn", "lstm", "gru", "transformer", "ddpm"):
        lines.append(_line("  clip_norm: 1.0", "recurrent, attention and diffusion models like clipped gradients"))
    return "\n".join(lines) + "\n"


def _line(text: str, comment: str) -> str:
    return f"{text.ljust(40)}  # {comment}" if comment else text


def _schema_path(out: Path) -> str:
    """The committed schema, relative to the config (absolute if it is elsewhere on disk)."""
    from .schema import SCHEMA_FILE

    schema = Path(__file__).resolve().parent.parent / SCHEMA_FILE
    try:
        return os.path.relpath(schema, out.parent.resolve())
    except ValueError:
        return str(schema)
