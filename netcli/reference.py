"""The component reference, generated from the registries: what `netcli list` prints and docs/reference.md holds.

Everything comes from the one source of truth: a component's docstring (its
first line is the one-line description), its pydantic Config (options with
type, default, bounds and description) and, for layers and losses, its
gradient-check cases (a real shape example and an example YAML line that
validates).

    netcli list layers               # every layer with its one-line description
    netcli layers conv2d             # one layer: options, shape, example, source file
    python -m netcli.reference > docs/reference.md
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types as at
import numpy as np
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import ExperimentConfig
from .errors import UserError
from .registry import DATASETS, LAYERS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, Registry, did_you_mean

KINDS: dict[str, Registry] = {"layers": LAYERS, "models": MODELS, "losses": LOSSES, "optimizers": OPTIMIZERS,
                              "schedules": SCHEDULES, "datasets": DATASETS}
TAGS = ("type", "dataset")  # the discriminator fields: the entry's name, not an option
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_FILE = "docs/reference.md"


@dataclass
class Option:
    name: str
    type: str
    default: str    # "required" when there is none
    bounds: str     # e.g. "> 0", "0 <= x < 1", "" for none
    description: str


@dataclass
class Entry:
    kind: str       # "layers", ...
    name: str
    summary: str    # one line
    details: str    # the rest of the docstring
    options: list[Option]
    shape: str      # "(5,) -> (4,) with units: 4", "" where it does not apply
    example: str    # a YAML line that validates
    source: str     # path:line


def registry(kind: str) -> Registry:
    if kind not in KINDS:
        raise UserError(f"unknown kind '{kind}'{did_you_mean(kind, list(KINDS))}; valid: {', '.join(KINDS)}")
    return KINDS[kind]


def entries(kind: str) -> list[Entry]:
    return [entry(kind, name) for name in registry(kind).names()]


def entry(kind: str, name: str) -> Entry:
    cls = registry(kind).get(name)
    summary, _, details = inspect.cleandoc(cls.__doc__ or "").partition("\n")
    if not summary:  # a dataset describes itself on its tag field
        summary = next((f.description or "" for t, f in cls.Config.model_fields.items() if t in TAGS), "")
    return Entry(kind, name, summary.strip().rstrip(":"), details.strip(), options(cls.Config), _shape(kind, cls),
                 _example(kind, name, cls), _source(cls))


def options(config: type[BaseModel]) -> list[Option]:
    """Every option of a Config, in declaration order (the tag left out)."""
    return [Option(name, type_text(f.annotation), _default(f), bounds_text(f.metadata), f.description or "")
            for name, f in config.model_fields.items() if name not in TAGS]


def type_text(ann: Any) -> str:
    """An annotation as a reader would write it: ``int``, ``float | null``, ``one of: a, b``, ``list of layers``."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        inner = type_text(args[0])
        bounds = bounds_text(args[1:])
        return f"{inner} ({bounds})" if bounds else inner
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        members = [a for a in args if a is not type(None)]
        if members and all(inspect.isclass(a) and issubclass(a, BaseModel) and "type" in a.model_fields
                           for a in members):
            return "layer" if members[0].__module__.startswith("netcli.layers") else "entry"
        text = " | ".join(type_text(a) for a in members)
        return text + (" | null" if len(members) < len(args) else "")
    if origin in (list, tuple):
        inner = type_text(args[0]) if args else "value"
        return "list of layers" if inner == "layer" else f"list of {inner}"
    if origin is dict:
        return "mapping"
    if inspect.isclass(ann) and issubclass(ann, BaseModel):
        return f"mapping ({', '.join(ann.model_fields)})"
    if ann is Path or (inspect.isclass(ann) and issubclass(ann, Path)):
        return "path"
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(ann, getattr(ann, "__name__", str(ann)))


_BOUND = {at.Gt: "> {}", at.Ge: ">= {}", at.Lt: "< {}", at.Le: "<= {}", at.MinLen: "length >= {}",
          at.MaxLen: "length <= {}"}


def bounds_text(metadata) -> str:
    parts = []
    for m in metadata:
        for kind, fmt in _BOUND.items():
            if isinstance(m, kind):
                value = getattr(m, next(iter(m.__dataclass_fields__)))
                parts.append(fmt.format(value))
        if getattr(m, "pattern", None):
            parts.append(f"matches {m.pattern}")
    return ", ".join(parts)


def _default(f) -> str:
    if f.is_required():
        return "required"
    value = f.default_factory() if f.default is PydanticUndefined else f.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return "null" if value is None else flow_yaml(value)


def flow_yaml(value: Any) -> str:
    """A value as one line of flow-style YAML: ``{type: dense, units: 4}``."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip().removesuffix("...").strip()


def _shape(kind: str, cls) -> str:
    """A real input -> output shape from the first gradient-check case (layers; losses: prediction and target)."""
    if kind not in ("layers", "losses"):
        return ""
    try:
        cases = cls.grad_cases()
    except NotImplementedError:
        return ""
    if not cases:
        return ""
    case = cases[0]
    with_ = f" with {flow_yaml(case.config)}" if case.config else ""
    if kind == "losses":
        return f"prediction {case.pred_shape}, target: {case.target}{with_} -> a scalar"
    layer = cls(cls.Config(type=cls.type_name, **case.config))
    out = layer.setup(case.in_shape, np.random.default_rng(0))
    return f"{tuple(case.in_shape)} -> {tuple(out)}{with_}"


def _example(kind: str, name: str, cls) -> str:
    """A YAML snippet using this entry: options from its first gradient-check case, else its required ones."""
    tag = "dataset" if kind == "datasets" else "type"
    values: dict[str, Any] = {}
    try:
        cases = cls.grad_cases() if kind in ("layers", "losses") else []
    except NotImplementedError:
        cases = []
    if cases:
        values = dict(cases[0].config)
    for opt_name, f in cls.Config.model_fields.items():
        if opt_name not in TAGS and f.is_required() and opt_name not in values:
            values[opt_name] = _placeholder(name, opt_name, f.annotation)
    if kind == "layers":
        return f"- {name}" if not values else f"- {flow_yaml({'type': name, **values})}"
    key = {"models": "model", "losses": "loss", "optimizers": "optimizer", "schedules": "schedule",
           "datasets": "data"}[kind]
    if not values and kind != "datasets" and kind != "models":
        return f"{key}: {name}"
    return f"{key}: {flow_yaml({tag: name, **values})}"


def _placeholder(entry_name: str, option: str, ann: Any) -> Any:
    """A value of the right kind for a required option without an example."""
    text = type_text(ann)
    if "layers" in text:
        return [{"type": "dense", "units": 10}]
    if text.startswith("path"):
        return f"{option}.{entry_name}" if option.endswith("path") else f"{option}.gz"
    return {"int": 1, "float": 1.0}.get(text.split(" ")[0], "label" if option == "label_column" else option)


def _source(cls) -> str:
    path = Path(inspect.getsourcefile(cls)).resolve()
    line = inspect.getsourcelines(cls)[1]
    try:
        path = path.relative_to(PACKAGE_ROOT)
    except ValueError:
        pass
    return f"{path}:{line}"


# -- docs/reference.md ----------------------------------------------------------------------


def markdown() -> str:
    """docs/reference.md: the experiment file's sections, then every component of every kind."""
    lines = ["# netcli reference", "",
             "Generated from the config models and docstrings by `python -m netcli.reference > docs/reference.md`;",
             "`netcli list KIND [NAME]` prints the same. Do not edit by hand.",
             "Layer shapes are of one sample (a batch axis goes in front); a loss's are of a whole batch.", ""]
    lines += ["## The experiment file", ""] + _options_table(options(ExperimentConfig))
    lines += ["", "### train", ""] + _options_table(options(ExperimentConfig.model_fields["train"].annotation))
    from .config import EarlyStopping

    lines += ["", "### train.early_stopping", ""] + _options_table(options(EarlyStopping)) + [""]
    for kind in KINDS:
        lines += [f"## {kind.capitalize()}", ""]
        items = entries(kind)
        lines += ["| name | description |", "| --- | --- |"]
        lines += [f"| [`{e.name}`](#{kind}-{e.name.replace('_', '-')}) | {_cell(e.summary)} |" for e in items]
        lines.append("")
        for e in items:
            lines += [f"### <a id=\"{kind}-{e.name.replace('_', '-')}\"></a>{e.name}", "", e.summary, ""]
            lines += [f"    {e.example}", ""]
            if e.shape:
                lines += [f"Shape: {e.shape}", ""]
            if e.options:
                lines += _options_table(e.options) + [""]
            lines += [f"Source: `{e.source.rsplit(':', 1)[0]}`", ""]  # no line number: any edit would make the file stale
    return "\n".join(lines).rstrip() + "\n"


def _options_table(opts: list[Option]) -> list[str]:
    rows = ["| option | type | default | bounds | description |", "| --- | --- | --- | --- | --- |"]
    return rows + [f"| `{o.name}` | {_cell(o.type)} | `{_cell(o.default)}` | {_cell(o.bounds)} | {_cell(o.description)} |"
                   for o in opts]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    print(markdown(), end="")
