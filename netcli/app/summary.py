"""Rows of `netcli summary`: every layer of a built model with its output shape, params and FLOPs."""
from __future__ import annotations

from dataclasses import dataclass

from ..layers.base import Layer, walk
from ..models.base import Model


@dataclass
class LayerRow:
    path: str
    type: str
    out_shape: tuple
    params: int
    flops: int
    options: str
    leaf: bool


def layer_rows(model: Model, leaves_only: bool = False) -> list[LayerRow]:
    rows: list[LayerRow] = []
    for name, net in model.networks().items():
        _rows(net, name, 0, rows)
    return [r for r in rows if r.leaf] if leaves_only else rows


def _rows(layer: Layer, path: str, depth: int, rows: list[LayerRow]) -> None:
    children = layer.children
    total = sum(p.size for _, sub in walk(layer) for p in sub.params.values())  # its children's included
    rows.append(LayerRow("  " * depth + path, layer.type_name, layer.out_shape, total,
                         layer.flops(), layer.describe(), leaf=not children or not layer.is_list))
    if layer.is_list:
        for name, child in children.items():
            _rows(child, f"{path}.{name}", depth + 1, rows)
