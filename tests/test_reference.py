"""The component reference: docs/reference.md current, every option described, every example valid, the CLI."""
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from netcli.config import ExperimentConfig, config_from_dict
from netcli.reference import KINDS, REFERENCE_FILE, TAGS, entries, entry, markdown
from tinyrun import invoke

ROOT = Path(__file__).resolve().parent.parent
ALL = [(kind, name) for kind, registry in KINDS.items() for name in registry.names()]


def test_committed_reference_is_current():
    assert (ROOT / REFERENCE_FILE).read_text() == markdown(), \
        f"{REFERENCE_FILE} is stale; regenerate it: python -m netcli.reference > {REFERENCE_FILE}"


def _models_below(config: type[BaseModel], seen: set) -> list[type[BaseModel]]:
    """``config`` and every pydantic model its fields hold that is not a registered component."""
    if config in seen:
        return []
    seen.add(config)
    found = [config]
    for f in config.model_fields.values():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found += _models_below(ann, seen)
    return found


@pytest.mark.parametrize("kind,name", ALL)
def test_every_option_has_a_description(kind, name):
    cls = KINDS[kind].get(name)
    for config in _models_below(cls.Config, set()):
        missing = [o for o, f in config.model_fields.items() if o not in TAGS and not f.description]
        assert not missing, f"{kind} {name}: options without a description: {missing} (add Field(description=...))"
    assert entry(kind, name).summary, f"{kind} {name} has no docstring (its first line is the one-line description)"


def test_experiment_sections_have_descriptions():
    for config in _models_below(ExperimentConfig, set()):
        missing = [o for o, f in config.model_fields.items() if not f.description]
        assert not missing, f"{config.__name__}: options without a description: {missing}"


BASE = {"name": "x", "data": {"dataset": "mnist"}, "model": {"type": "classifier", "layers": ["flatten", {"type": "dense", "units": 10}]},
        "optimizer": "adam"}


@pytest.mark.parametrize("kind,name", ALL)
def test_every_example_validates(kind, name):
    example = yaml.safe_load(entry(kind, name).example)
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    if kind == "layers":
        raw["model"]["layers"] = example
    else:
        raw.update(example)
    cfg = config_from_dict(raw)
    assert name in str(cfg.model_dump())


def test_options_carry_type_default_bounds_and_description():
    dense = {o.name: o for o in entry("layers", "dense").options}
    assert (dense["units"].type, dense["units"].default, dense["units"].bounds) == ("int", "required", "> 0")
    dropout = {o.name: o for o in entry("layers", "dropout").options}["rate"]
    assert (dropout.default, dropout.bounds) == ("0.5", ">= 0, < 1")
    assert entry("layers", "dense").shape == "(5,) -> (4,) with {units: 4}"
    assert entry("layers", "dense").source.startswith("netcli/layers/dense.py:")


def test_list_and_layers_commands():
    result = invoke("list", "losses")
    assert result.exit_code == 0
    for e in entries("losses"):
        assert e.name in result.output
    result = invoke("layers", "lstm")
    assert result.exit_code == 0, result.output
    for text in ("return_sequences", "bidirectional", "example: - {type: lstm", "netcli/layers/recurrent.py", "shape:"):
        assert text in result.output
    assert invoke("layers").output == invoke("list", "layers").output


@pytest.mark.parametrize("args,message", [(("list", "layer"), "did you mean 'layers'"),
                                          (("layers", "dence"), "did you mean 'dense'")])
def test_unknown_kind_or_name_is_one_line_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
