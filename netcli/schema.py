"""The experiment file as a JSON Schema (draft 2020-12), generated from the pydantic models.

Every registered layer, model type, loss, optimizer, schedule and dataset
appears as a member of a union discriminated by its tag (``type``, or
``dataset`` in the data section), so an editor that reads the schema (the
YAML language server: ``# yaml-language-server: $schema=...`` on a config's
first line) completes names and options and shows their descriptions. Where a
bare name stands for ``{type: name}`` (``- relu``, ``loss: mse``), the schema
also accepts the names whose options all have defaults.

    netcli schema -o netcli.schema.json      # the committed copy at the repository root
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from .config import ExperimentConfig
from .registry import DATASETS, LAYERS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "netcli.schema.json"  # at the repository root; shipped configs point at it
# registries whose entries a bare name may stand for (the model and data sections always spell out their tag)
SHORTHAND = (LAYERS, LOSSES, OPTIMIZERS, SCHEDULES)


class _Draft202012(GenerateJsonSchema):
    schema_dialect = DRAFT


def experiment_schema() -> dict[str, Any]:
    """The JSON Schema of an experiment file, for the components registered now (plugins included)."""
    schema = ExperimentConfig.model_json_schema(schema_generator=_Draft202012)
    schema = {"$schema": DRAFT, "title": "netcli experiment",
              "description": "A netcli experiment file: data, model, loss, optimizer, schedule and training options.",
              **{k: v for k, v in schema.items() if k != "title"}}
    return _with_shorthands(schema)


def _with_shorthands(node: Any) -> Any:
    """Let a bare name stand for an entry of a shorthand registry wherever its union appears."""
    if isinstance(node, list):
        return [_with_shorthands(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _with_shorthands(v) for k, v in node.items()}
    registry = _registry_of(node)
    if registry is None or registry not in SHORTHAND:
        return node
    bare = [name for name, cls in registry.items() if _needs_no_options(cls.Config)]
    union = {k: node.pop(k) for k in ("oneOf", "discriminator")}
    node["anyOf"] = [{"enum": bare, "description": f"a {registry.kind} by name, all options at their defaults"},
                     union]
    return node


def _registry_of(node: dict):
    """The registry whose union this schema node is (its discriminator maps exactly that registry's names)."""
    mapping = node.get("discriminator", {}).get("mapping")
    if not mapping or "oneOf" not in node:
        return None
    for registry in (LAYERS, MODELS, LOSSES, OPTIMIZERS, SCHEDULES, DATASETS):
        if set(mapping) == set(registry.names()):
            return registry
    return None


def _needs_no_options(config) -> bool:
    return all(not f.is_required() for name, f in config.model_fields.items() if name not in ("type", "dataset"))


def schema_text() -> str:
    """The schema as the committed file holds it: sorted keys, two-space indent, a final newline."""
    return json.dumps(experiment_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: str | Path) -> Path:
    from .runs import write_text

    path = Path(path)
    write_text(path, schema_text())
    return path
