"""netcli config: the resolved config with each value's origin (file:line, --set, default)."""
import yaml

from netcli.config import load_config
from netcli.origins import render, resolved
from tinyrun import invoke


def _origins(lines):
    """{yaml line text stripped: origin}"""
    return {line.text.strip().removeprefix("- "): line.origin for line in lines}


def test_every_value_is_marked_and_the_output_loads_back(tiny):
    lines = resolved(tiny / "tiny.yaml", ["optimizer.lr=0.5", "train.max_steps=3"])
    text = render(lines)
    assert yaml.safe_load(text) == load_config(tiny / "tiny.yaml", ["optimizer.lr=0.5", "train.max_steps=3"]).model_dump(mode="json")
    marks = _origins(lines)
    assert marks["name: tiny"] == "file:1"
    assert marks["seed: 3"] == "file:2"
    assert marks["dtype: float32"] == "default"
    assert marks["lr: 0.5"] == "--set" and marks["max_steps: 3"] == "--set"
    assert marks["type: adam"] == "file:16" and marks["beta1: 0.9"] == "default"
    assert marks["epochs: 2"] == "file:18"
    relu = [line for line in lines if line.text.strip() == "- type: relu"]
    assert relu and relu[0].origin == "file:13"  # `- relu`: the bare name is the file's
    assert all(line.origin for line in lines if not line.text.endswith(":"))


def test_a_whole_section_from_set_and_its_defaults(tiny):
    marks = _origins(resolved(tiny / "tiny.yaml", ["schedule={type: step, step_size: 5}"]))
    assert marks["type: step"] == "--set" and marks["step_size: 5"] == "--set"
    assert marks["gamma: 0.1"] == "default"


def test_config_command_on_a_file_and_a_run(tiny):
    result = invoke("config", tiny / "tiny.yaml", "--set", "optimizer.lr=0.25")
    assert result.exit_code == 0, result.output
    assert "lr: 0.25" in result.output and "# --set" in result.output and "# default" in result.output
    assert invoke("train", tiny / "tiny.yaml", "--runs-dir", tiny / "runs", "-q", "--set", "train.max_steps=1").exit_code == 0
    result = invoke("config", tiny / "runs" / "tiny")
    assert result.exit_code == 0, result.output
    assert "# default" not in result.output  # a run's config.yaml holds every value


def test_config_command_reports_a_bad_key_as_one_line(tiny):
    result = invoke("config", tiny / "tiny.yaml", "--set", "optimizer.lrr=1")
    assert result.exit_code == 2 and "did you mean 'lr'" in result.output
