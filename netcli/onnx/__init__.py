"""`netcli export --format onnx`: a trained network as an ONNX model that onnxruntime (or any runtime) runs.

    path = export_onnx("runs/mnist_cnn")          # runs/mnist_cnn/<run>/mnist_cnn.onnx
    session = onnxruntime.InferenceSession(path)
    logits, probs = session.run(None, {"input": x})   # x (N, 1, 28, 28) float32, any N

One family of converters per file, mirroring netcli/layers/ (convert.py has
the registries and the dispatch, graph.py the builder). Initializers keep
the checkpoint's stable names (``net.0.W``); the metadata (``metadata_props``)
holds the format, the netcli version, the model type, the resolved config and
the data description (JSON), the class names, and the input and outputs.
Float32, opset 17, a dynamic batch dimension "N". Needs the ``export`` extra.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..atomic import atomic_file
from ..trained import load_run
from . import (activations, attention, conv, dense, diffusion, embedding, generative, models,  # noqa: F401
               norm, patches, pool, positional, recurrent, reshape, transformer)  # (they register)
from .convert import (CONVERTERS, MODEL_CONVERTERS, ExportError, convert, convert_model,  # noqa: F401
                      converter, model_converter)
from .graph import OPSET, Graph, GraphContext  # noqa: F401

ONNX_FORMAT = "netcli-onnx/1"


def to_onnx(trained, opset: int = OPSET):
    """The ModelProto of a TrainedModel (netcli.load_run), checked by onnx.checker."""
    info = trained.info
    g = Graph(trained.config.name)
    convert_model(g, trained.model, info)
    classes = [info.class_name(k) for k in range(info.num_classes)] if info.num_classes else None
    io = {"inputs": [{"name": v.name, "shape": _dims(v)} for v in g.inputs],
          "outputs": [{"name": v.name, "shape": _dims(v)} for v in g.outputs]}
    metadata = {"format": ONNX_FORMAT, "netcli_version": __version__, "model_type": trained.model.type_name,
                "config": json.dumps(trained.config.model_dump(mode="json")),
                "data": json.dumps(info.model_dump(mode="json")), "classes": json.dumps(classes),
                "io": json.dumps(io), "checkpoint": str(trained.path)}
    return g.model(metadata, opset)


def export_onnx(run: Path | str, out: Path | None = None, checkpoint: str = "best") -> Path:
    """Write a run's (best) checkpoint as an ONNX model; return the file (default: beside the run's checkpoints)."""
    trained = load_run(run, checkpoint)
    proto = to_onnx(trained)
    path = trained.path  # a run's checkpoints/best.npz: the file goes into the run; else beside the file
    out = Path(out) if out else (path.parent.parent if path.parent.name == "checkpoints" else path.parent) \
        / f"{trained.config.name}.onnx"
    with atomic_file(out) as f:
        f.write(proto.SerializeToString())
    return out


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]
