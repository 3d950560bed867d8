"""The JSON Schema: committed copy current, shipped configs valid, known-bad configs rejected by schema and validate."""
import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from netcli.config import config_from_dict
from netcli.errors import ConfigError
from netcli.schema import SCHEMA_FILE, experiment_schema, schema_text
from tinyrun import invoke

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
REGENERATE = f"netcli schema -o {SCHEMA_FILE}"


@pytest.fixture(scope="module")
def validator():
    schema = experiment_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_current():
    committed = (ROOT / SCHEMA_FILE).read_text()
    assert committed == schema_text(), f"{SCHEMA_FILE} is stale (a config model changed); regenerate it: {REGENERATE}"


def test_schema_command_prints_and_writes_the_schema(tmp_path):
    result = invoke("schema")
    assert result.exit_code == 0
    assert json.loads(result.output) == experiment_schema()
    result = invoke("schema", "-o", tmp_path / "s.json")
    assert result.exit_code == 0 and (tmp_path / "s.json").read_text() == schema_text()


def test_schema_is_draft_2020_12_with_every_component(validator):
    schema = validator.schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    text = json.dumps(schema)
    from netcli.registry import DATASETS, LAYERS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES

    for registry in (LAYERS, MODELS, LOSSES, OPTIMIZERS, SCHEDULES, DATASETS):
        for name in registry.names():
            assert f'"{name}"' in text, f"{registry.kind} {name} is not in the schema"
    dense = next(v for k, v in schema["$defs"].items() if k.endswith("Dense__Config"))
    assert dense["properties"]["units"]["exclusiveMinimum"] == 0 and dense["properties"]["units"]["description"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid_and_point_at_the_schema(path, validator):
    text = path.read_text()
    assert text.splitlines()[0] == f"# yaml-language-server: $schema=../{SCHEMA_FILE}", \
        f"{path.name} must start with the schema line"
    assert (path.parent / f"../{SCHEMA_FILE}").resolve().exists()
    raw = yaml.safe_load(text)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(raw)]
    assert not errors, errors
    config_from_dict(raw)


def test_bare_names_are_accepted_where_a_name_stands_for_defaults(validator):
    raw = yaml.safe_load((ROOT / "configs" / "mnist_mlp.yaml").read_text())
    raw["model"]["layers"] = ["flatten", {"type": "dense", "units": 10}, "relu", {"type": "dense", "units": 10}]
    raw.update(loss="cross_entropy", optimizer="adam", schedule="cosine")
    assert not list(validator.iter_errors(raw))
    config_from_dict(raw)


def _bad(edit):
    raw = yaml.safe_load((ROOT / "configs" / "mnist_mlp.yaml").read_text())
    raw = copy.deepcopy(raw)
    edit(raw)
    return raw


BAD = {
    "unknown layer": lambda r: r["model"]["layers"].append({"type": "dence", "units": 3}),
    "bare name of a layer with a required option": lambda r: r["model"]["layers"].append("dense"),
    "missing required option": lambda r: r["model"]["layers"].append({"type": "dense"}),
    "option out of bounds": lambda r: r["model"]["layers"].append({"type": "dense", "units": 0}),
    "unknown option": lambda r: r["model"]["layers"].append({"type": "relu", "alpha": 2}),
    "negative learning rate": lambda r: r["optimizer"].update(lr=-1.0),
    "unknown loss": lambda r: r.update(loss="cross_entropie"),
    "unknown top-level key": lambda r: r.update(epochs=3),
    "missing data section": lambda r: r.pop("data"),
    "unknown dataset": lambda r: r["data"].update(dataset="mnits"),
    "bad dtype": lambda r: r.update(dtype="float16"),
    "bad run name": lambda r: r.update(name="my run/1"),
    "bare model name": lambda r: r.update(model="classifier"),
}


@pytest.mark.parametrize("what", BAD)
def test_known_bad_configs_are_rejected_by_schema_and_validate(what, validator):
    raw = _bad(BAD[what])
    assert list(validator.iter_errors(raw)), f"the schema accepts a config with {what}"
    with pytest.raises(ConfigError):
        config_from_dict(raw)
