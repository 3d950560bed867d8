"""The experiment file: YAML -> pydantic models, with every error at once as `file:line: key: message`.

The unions of layer, model, dataset, loss, optimizer and schedule configs are
built from the registries, so each component's Config (next to its class) is
the one source of truth for its YAML shape.
"""
from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from . import data as _data  # noqa: F401  (registers datasets)
from . import layers as _layers  # noqa: F401  (registers layers)
from . import losses as _losses  # noqa: F401
from . import models as _models  # noqa: F401
from . import optim as _optim  # noqa: F401
from . import schedules as _schedules  # noqa: F401
from .errors import ConfigError
from .plugins import PluginRef, load_config_plugins
from .registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, did_you_mean
from .userfiles import absolute, read_bytes

# -- the experiment ------------------------------------------------------------


class EarlyStopping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: Optional[str] = Field(None, description="metric to watch, e.g. val_loss; default: the model's")
    patience: int = Field(3, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as an improvement")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1, ge=1, le=100_000, description="passes over the training set")
    max_steps: Optional[int] = Field(None, ge=1, description="stop after this many optimizer steps")
    clip_norm: Optional[float] = Field(None, gt=0, description="clip gradients to this global L2 norm")
    clip_value: Optional[float] = Field(None, gt=0, description="clip each gradient entry to +-value")
    early_stopping: Optional[EarlyStopping] = Field(None, description="stop when a metric stops improving")
    monitor: Optional[str] = Field(None, description="metric that picks best.npz; default: the model's")
    monitor_mode: Optional[Literal["min", "max"]] = Field(
        None, description="whether the monitored metric improves going down or up; default: the model type says")
    eval_every: int = Field(1, ge=1, description="evaluate on the validation split every N epochs")
    checkpoint_every: Optional[int] = Field(None, ge=1, description="also write last.npz every N steps")
    log_every: int = Field(50, ge=1, description="write train metrics to metrics.jsonl every N steps")
    nan_policy: Literal["stop", "skip"] = Field("stop", description="non-finite loss/gradient: stop, or skip the batch")
    max_skips: int = Field(10, ge=0, description="with nan_policy skip: give up after this many skipped batches")
    divergence_threshold: Optional[float] = Field(
        None, gt=0, allow_inf_nan=False,
        description="stop (exit 3) when a training batch's loss exceeds this: a finite loss can diverge too")
    tensorboard: bool = Field(False, description="also write TensorBoard event files into RUN/tensorboard/ "
                                                 "(needs netcli[tensorboard])")


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                      description="run name; runs go to runs/<name>/")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of every random choice in the run")
    dtype: Literal["float32", "float64"] = Field("float32", description="float type of params and activations")
    plugins: list[PluginRef] = Field(default_factory=list, description="Python files or modules that register "
                                     "components (layers, losses, ...) before the rest is read")
    data: DATASETS.union(shorthand=False) = Field(  # type: ignore[valid-type]
        description="the data set, its batch size and validation split")
    model: MODELS.union(shorthand=False) = Field(description="the model type and its networks")  # type: ignore[valid-type]
    loss: Optional[LOSSES.union()] = Field(None, description="default: the model's own loss")  # type: ignore[valid-type]
    optimizer: OPTIMIZERS.union() = Field(description="optimizer and its learning rate")  # type: ignore[valid-type]
    schedule: SCHEDULES.union() = Field(default_factory=lambda: {"type": "constant"},  # type: ignore[valid-type]
                                        validate_default=True, description="learning-rate schedule")
    train: TrainConfig = Field(default_factory=TrainConfig, description="epochs, stopping, clipping, checkpoints")
    # where each key came from, for errors found after validation (see locate)
    _source: str = PrivateAttr("<config>")
    _lines: dict = PrivateAttr(default_factory=dict)


def refresh_config_models() -> None:
    """Rebuild the models that hold a registry's union, after a plugin registered more components.

    pydantic fixes a union when a model is built; each field holding one gets the union of the
    registry as it is now (containers' layer lists first, then the model types, then the experiment).
    """
    from .layers import LAYERS

    registries = (LAYERS, MODELS, LOSSES, OPTIMIZERS, SCHEDULES, DATASETS)
    configs = [cls.Config for r in registries for _, cls in r.items()] + [ExperimentConfig]
    for config in configs:
        changed = False
        for f in config.model_fields.values():
            fresh = _fresh_unions(f.annotation, registries)
            if fresh is not f.annotation:
                f.annotation, changed = fresh, True
        if changed or config is ExperimentConfig or config in (cls.Config for _, cls in MODELS.items()):
            config.model_rebuild(force=True)


def _fresh_unions(ann, registries):
    """``ann`` with every union of a registry's Configs in it widened to the registry's current Configs
    (``ann`` itself when there is none); discriminators and shorthands around a union stay as they are."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Annotated:
        inner = _fresh_unions(args[0], registries)
        return ann if inner is args[0] else Annotated[(inner, *args[1:])]
    if origin is Union:
        members = {a for a in args if a is not type(None)}
        for r in registries:
            configs = tuple(cls.Config for _, cls in r.items())
            if members < set(configs):
                return Union[configs + ((type(None),) if type(None) in args else ())]
    if origin in (list, Union):
        fresh = tuple(_fresh_unions(a, registries) for a in args)
        if all(f is a for f, a in zip(fresh, args)):
            return ann
        return list[fresh[0]] if origin is list else Union[fresh]
    return ann


# -- loading -----------------------------------------------------------------


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment file; raise ConfigError listing every problem."""
    return load_config_with_sources(path, overrides)[0]


def load_config_with_sources(path: str | Path, overrides: list[str] = ()) -> tuple[ExperimentConfig, dict, dict]:
    """``load_config``'s config with the raw data and the key lines it came from (read_raw), for `netcli config`."""
    raw, lines = read_raw(path, overrides)
    return absolute_paths(validate(raw, str(path), lines), Path(path).parent), raw, lines


def read_raw(path: str | Path, overrides: list[str] = ()) -> tuple[dict, dict[tuple, int | str]]:
    """The file's data with ``overrides`` applied and its plugins loaded, and the line of each key path
    ("--set KEY=VALUE" for overridden ones)."""
    path = Path(path)
    raw, lines = parse_yaml(read_config_text(path), str(path))
    for item in overrides:
        apply_override(raw, item, lines)
    load_config_plugins(raw, lines, str(path), path.parent)
    return raw, lines


MAX_CONFIG_BYTES = 256 * 1024  # configs are a few KB; PyYAML needs seconds per MB


def read_config_text(path: Path, what: str = "config file") -> str:
    """The text of a config (or sweep) file; a missing, unreadable, non-regular or oversized one is a ConfigError."""
    data = read_bytes(path, lambda message: ConfigError([message]), what, max_bytes=MAX_CONFIG_BYTES)
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: cannot read the {what} (not UTF-8 text: byte {e.start})"]) from None


def absolute_paths(cfg: ExperimentConfig, base_dir: Path) -> ExperimentConfig:
    """Data file paths are relative to the config file; the resolved config keeps them absolute."""
    for name, value in cfg.data:
        if isinstance(value, Path) and not value.is_absolute():
            try:
                value = value.expanduser()
            except RuntimeError:  # ~user of no such user: the path as written, reported missing when read
                pass
            setattr(cfg.data, name, absolute(base_dir / value))
    return cfg


def config_from_dict(raw: dict, source: str = "<config>") -> ExperimentConfig:
    return validate(raw, source, {})


def parse_yaml(text: str, source: str) -> tuple[dict, dict[tuple, int]]:
    """Safe-load YAML; return the data and a map from key path to line number."""
    try:
        loader = _ConfigLoader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise ConfigError([f"{source}: nested too deeply to be a config"]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{source}{line}: YAML error: {e.problem or e.context}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{source}: YAML error: {e}"]) from None
    if data is None:
        raise ConfigError([f"{source}: the config file is empty"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the config must be a mapping of keys (name, data, model, ...)"])
    lines: dict[tuple, int] = {}
    problems: list[str] = []
    _line_map(node, (), lines, problems, source)
    if problems:
        raise ConfigError(problems)
    return data, lines


class _ConfigLoader(yaml.SafeLoader):
    """Safe loading without anchors and aliases (they could blow a small file up exponentially), and
    without deep flow nesting (PyYAML's scanner slows down with the square of it: 8000 '[' take 12 s)."""

    MAX_FLOW_DEPTH = 100

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in configs",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(node.value):,} characters is "
                                                    "too long", node.start_mark) from None

    def fetch_flow_collection_start(self, token_class):
        if self.flow_level >= self.MAX_FLOW_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {self.MAX_FLOW_DEPTH} levels deep",
                                            self.get_mark())
        super().fetch_flow_collection_start(token_class)


_ConfigLoader.add_constructor("tag:yaml.org,2002:int", _ConfigLoader.construct_yaml_int)


def _line_map(node, path: tuple, lines: dict, problems: list, source: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                problems.append(f"{source}:{k.start_mark.line + 1}: {_dotted(path + (key,))}: duplicate key")
            seen.add(key)
            lines[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), lines, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), lines, problems, source)


def apply_override(raw: dict, item: str, lines: dict) -> None:
    """Apply `key.path=value` (value parsed as YAML) to the raw config; its keys are blamed on `--set ITEM`."""
    key, sep, value = item.partition("=")
    key = key.strip()
    where = f"--set {clip(item)}"
    if not sep or not key:
        raise ConfigError([f"{where}: expected key.path=value"])
    names = key.split(".")
    parts: list[Any] = [_key_part(p) for p in names]
    try:
        parsed = yaml.load(value, Loader=_ConfigLoader)
    except RecursionError:
        raise ConfigError([f"{where}: value nested too deeply"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{where}: value is not valid YAML ({clip(str(getattr(e, 'problem', e)))})"]) from None
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            if last:
                node[part] = parsed
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, (str, int)):
            if last:
                node[part] = parsed
            elif part not in node:
                node[part] = [] if isinstance(parts[i + 1], int) else {}
                lines[tuple(parts[: i + 1])] = where  # a key the file does not have
            node = node[part]
        else:
            raise ConfigError([f"{where}: {clip('.'.join(names[: i + 1]))} does not exist"])
    for k in [k for k in lines if k[: len(parts)] == tuple(parts)]:  # the file's lines below the replaced value
        del lines[k]
    lines[tuple(parts)] = where


def _key_part(part: str) -> int | str | None:
    """A list index (ASCII digits), else the key; None for an index no list can have."""
    if not (part.isascii() and part.isdigit()):
        return part
    return int(part) if len(part) <= 18 else None


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, so that a hostile value cannot flood an error message."""
    return text if len(text) <= limit else f"{text[: limit - 20]}...({len(text):,} characters)"


# -- validation and error reports -----------------------------------------------


def validate(raw: dict, source: str, lines: dict) -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError([format_error(err, source, lines) for err in e.errors()]) from None
    cfg._source, cfg._lines = source, lines
    problems = [f"{locate(cfg, loc)}: {why}" for loc, why in _unusable_values(cfg.model_dump())]
    if problems:
        raise ConfigError(problems)
    return cfg


def locate(cfg: ExperimentConfig, loc: tuple) -> str:
    """`file:line: key.path` of ``loc`` in the file ``cfg`` came from, or `--set KEY=VALUE` if that set it."""
    return _blame(_where(cfg._source, cfg._lines, loc), loc)


def _blame(where: str, loc: tuple) -> str:
    key = _dotted(loc)
    if not loc or where.startswith(f"--set {key}="):  # the --set item names the key already
        return where
    return f"{where}: {clip(key)}"


def _unusable_values(value, loc: tuple = ()) -> list[tuple[tuple, str]]:
    """Values no option can use: inf and nan numbers, NUL characters in paths."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _unusable_values(v, (*loc, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unusable_values(v, (*loc, i))]
    if isinstance(value, float) and not math.isfinite(value):
        return [(loc, f"must be a finite number (got {value})")]
    if isinstance(value, Path) and "\0" in str(value):
        return [(loc, "a path cannot contain a NUL character")]
    return []


def format_error(err: dict, source: str, lines: dict) -> str:
    loc = _strip_tags(err["loc"])
    where = _where(source, lines, loc)
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        valid = _fields_at(err["loc"][:-1])
        hint = did_you_mean(str(loc[-1]), valid)
        msg = f"unknown key '{clip(str(loc[-1]))}'{hint}" + (f"; valid keys: {', '.join(valid)}" if valid and not hint else "")
    elif kind == "union_tag_invalid":
        valid = [t.strip(" '") for t in ctx.get("expected_tags", "").split(",")]
        what = _KIND_OF.get(loc[0] if loc else "", "type")
        if loc[:1] == ("model",) and len(loc) > 1:
            what = "layer"
        tag = str(ctx.get("tag"))
        msg = f"unknown {what} '{clip(tag)}'{did_you_mean(tag, valid)}; valid: {', '.join(valid)}"
        tag_loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
        if tag_loc in lines:  # blame the tag's own key and line (not for shorthand: `- relu`)
            loc, where = tag_loc, _where(source, lines, tag_loc)
    elif kind == "union_tag_not_found":
        msg = f"missing '{ctx.get('discriminator', 'type').strip(chr(39))}' (which kind of entry this is)"
    elif kind == "missing":
        msg = "required key is missing"
    else:
        msg = err["msg"]
        if "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {_short_repr(err['input'])})"
    return f"{_blame(where, loc)}: {msg}"


def _short_repr(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"an integer of {len(str(abs(value)))} digits"
    return clip(repr(value))


_KIND_OF = {"data": "dataset", "model": "model type", "loss": "loss", "optimizer": "optimizer",
            "schedule": "schedule"}


def _where(source: str, lines: dict, loc: tuple) -> str:
    """`source:line` of the deepest prefix of ``loc`` that ``lines`` knows, or the `--set ...` that made it."""
    for n in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:n]))
        if isinstance(line, str):  # "--set KEY=VALUE" or "--plugin"
            return line
        if line is not None:
            return f"{source}:{line}"
    return source


def _dotted(loc) -> str:
    return ".".join(str(p) for p in loc)


# pydantic puts the tag of a discriminated union into error locations
# (model.layers.0.dense.units); the user's file has no such level.
def _strip_tags(loc: tuple) -> tuple:
    out, cls = [], ExperimentConfig
    for part in loc:
        if isinstance(part, int):  # a list index
            out.append(part)
            continue
        if isinstance(cls, dict):  # a union: this part is its tag
            cls = cls.get(part)
            if cls is not None:
                continue
        out.append(part)
        cls = _model_of(cls.model_fields[part].annotation) if _is_model(cls) and part in cls.model_fields else None
    return tuple(out)


def _fields_at(loc: tuple) -> list[str]:
    cls: Any = ExperimentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(cls, dict):  # a union: this part is its tag
            cls = cls.get(part)
            continue
        if not _is_model(cls) or part not in cls.model_fields:
            return []
        cls = _model_of(cls.model_fields[part].annotation)
    if isinstance(cls, dict) or not _is_model(cls):
        return []
    return list(cls.model_fields)


def _is_model(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseModel)


def _model_of(ann):
    """The model class (or {tag: class} for a union) that an annotation holds."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _model_of(typing.get_args(ann)[0])
    if origin in (list, tuple):
        return _model_of(typing.get_args(ann)[0])
    if origin is Union:
        members = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(members) == 1:
            return _model_of(members[0])
        tags = {}
        for m in members:
            for tag_field in ("type", "dataset"):
                if _is_model(m) and tag_field in m.model_fields:
                    tags[m.model_fields[tag_field].default] = m
        return tags
    return ann if _is_model(ann) else None


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML, every default filled in."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(value, prefix: str = "") -> dict[str, Any]:
    """A config as ``{dotted.key: leaf}`` (list items by index, e.g. ``model.layers.0.filters``)."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value} if prefix else {}


def differing_keys(flats: list[dict[str, Any]]) -> list[str]:
    """The keys of flattened configs whose value is not the same in all of them.

    A key one config lacks counts as null there, as does an empty list or mapping (configs written by an older
    netcli lack the newer keys, whose defaults are null or empty).
    """
    keys = sorted({k for f in flats for k in f}, key=lambda k: [(0, int(p), "") if p.isdigit() else (1, 0, p)
                                                                for p in k.split(".")])  # layers.10 after layers.9
    def value(f, k):
        v = f.get(k)
        return None if v == [] or v == {} else v

    return [k for k in keys if any(value(f, k) != value(flats[0], k) for f in flats[1:])]
