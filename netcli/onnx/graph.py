"""A small ONNX graph builder: converters name values, never ONNX protobufs.

    g = Graph("mnist_cnn")
    x = g.input("input", (None, 1, 28, 28))          # None: the dynamic batch dimension "N"
    w = g.param("net.0.W", layer.params["W"])        # an initializer under the checkpoint's name
    y = g.op("Conv", x, w, pads=[1, 1, 1, 1])        # a fresh value name; n_out=2 gives a list
    g.output(y, "logits")
    proto = g.model({"config": "..."})               # checked by onnx.checker, opset 17

Values are strings. Floating arrays become float32 initializers (the export
is float32 whatever dtype the run trained in); integer arrays int64. ``ctx``
carries the ONNX values of the batch's side inputs, as layers/context.py does
for the engine: the key padding mask (N, L) bool an embedding writes, the
timesteps ``t`` (N,) of a denoiser, and ``prefix`` (tokens prepended after the
mask was written). Needs the ``export`` extra (onnx).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import require_extra

OPSET = 17
BATCH = "N"  # the name of the dynamic batch dimension


@dataclass
class GraphContext:
    """ONNX value names of a batch's side inputs (see layers/context.py)."""

    t: str | None = None
    key_padding_mask: str | None = None
    prefix: int = 0


@dataclass
class Graph:
    name: str
    nodes: list = field(default_factory=list)
    initializers: dict = field(default_factory=dict)  # value name -> TensorProto
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    ctx: GraphContext = field(default_factory=GraphContext)
    _count: int = 0

    def __post_init__(self):
        self.onnx = require_extra("onnx", "export")

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def input(self, name: str, shape: tuple, dtype: str = "float32") -> str:
        """A graph input; ``None`` entries of ``shape`` are the dynamic batch dimension."""
        dims = [BATCH if d is None else int(d) for d in shape]
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, _elem_type(self.onnx, dtype), dims))
        return name

    def const(self, array, name: str | None = None) -> str:
        """An initializer holding ``array`` (float -> float32, int/bool kept as int64/bool); its value name."""
        name = name or self.fresh("const")
        if name not in self.initializers:
            a = np.asarray(array)
            a = a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64) if a.dtype.kind in "iu" else a
            self.initializers[name] = self.onnx.numpy_helper.from_array(np.ascontiguousarray(a), name)
        return name

    def param(self, key: str, array) -> str:
        """A learned array (or buffer) as an initializer named by its stable checkpoint key (``net.0.W``)."""
        return self.const(array, key)

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attrs) -> str | list[str]:
        """Append a node; return its output value name (a list of ``n_out`` names when n_out > 1).

        An empty string among ``inputs`` is ONNX's "optional input left out"."""
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def output(self, value: str, name: str, shape: tuple, dtype: str = "float32") -> None:
        """Expose ``value`` as the graph output ``name`` (``None`` in ``shape``: the batch dimension)."""
        self.nodes.append(self.onnx.helper.make_node("Identity", [value], [name], name=name))
        dims = [BATCH if d is None else int(d) for d in shape]
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, _elem_type(self.onnx, dtype), dims))

    def model(self, metadata: dict[str, str], opset: int = OPSET):
        """The checked ModelProto, with ``metadata`` in its metadata_props."""
        onnx = self.onnx
        graph = onnx.helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                       list(self.initializers.values()))
        proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                       producer_name="netcli")
        proto.ir_version = min(proto.ir_version, 8)  # readable by onnxruntime releases from 1.14 on
        onnx.helper.set_model_props(proto, metadata)
        onnx.checker.check_model(proto, full_check=True)
        return proto


def _elem_type(onnx, dtype: str) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
