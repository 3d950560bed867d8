"""The resolved config with the origin of every value: the file (with its line), --set, or a default.

    netcli config configs/mnist_cnn.yaml --set optimizer.lr=3e-4

prints YAML that loads back to the same config, each value followed by a
comment saying where it came from:

    seed: 0                       # file:6
    dtype: float32                # default
    optimizer:
      type: adam                  # file:20
      lr: 0.0003                  # --set
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import load_config_with_sources
from .reference import TAGS, flow_yaml


@dataclass
class Line:
    text: str      # one line of YAML, indented
    origin: str    # "file:LINE", "--set", "--plugin", "default", or "" for a line that only opens a section


def resolved(path: str | Path, overrides: list[str] = ()) -> list[Line]:
    """The validated config of ``path`` with ``overrides``, every default filled in, line by line with origins."""
    cfg, raw, lines = load_config_with_sources(path, overrides)
    out: list[Line] = []
    _emit(cfg.model_dump(mode="json"), (), 0, raw, lines, out)
    return out


def render(lines: list[Line]) -> str:
    width = max(len(line.text) for line in lines) + 2
    return "".join(f"{line.text.ljust(width)}# {line.origin}\n" if line.origin else f"{line.text}\n"
                   for line in lines)


def origin(path: tuple, raw: Any, lines: dict) -> str:
    """Where the value at key path ``path`` came from."""
    for n in range(len(path), 0, -1):
        mark = lines.get(path[:n])
        if isinstance(mark, str) and _present(raw, path):  # "--set KEY=VALUE" or "--plugin"
            return mark.split(" ", 1)[0]
    if not _present(raw, path):
        return "default"
    line = lines.get(path)
    if line is None:  # the tag of a bare name (`- relu`, `loss: mse`): the line of the name
        line = lines.get(path[:-1])
    return f"file:{line}" if line is not None else "file"


def _present(raw: Any, path: tuple) -> bool:
    node = raw
    for i, part in enumerate(path):
        if isinstance(node, str) and i == len(path) - 1 and part in TAGS:
            return True  # a bare name stands for its tag
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    return True


def _emit(value: Any, path: tuple, indent: int, raw: Any, lines: dict, out: list[Line]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, v in value.items():
            if _is_leaf(v):
                out.append(Line(f"{pad}{key}: {flow_yaml(v)}", origin((*path, key), raw, lines)))
            else:
                out.append(Line(f"{pad}{key}:", ""))
                _emit(v, (*path, key), indent + 2, raw, lines, out)
        return
    for i, item in enumerate(value):  # a list of mappings (layers)
        start = len(out)
        _emit(item, (*path, i), indent + 2, raw, lines, out)
        out[start].text = f"{pad}- {out[start].text[indent + 2:]}"


def _is_leaf(v: Any) -> bool:
    return not isinstance(v, (dict, list)) or not v or (isinstance(v, list) and not any(isinstance(i, dict) for i in v))
