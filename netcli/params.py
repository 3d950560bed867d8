"""The one owner of a model's parameters and gradients: one flat buffer per dtype for each.

    group = pack([("net", net)])       # moves every layer's params and grads into the buffers
    group.zero_grad()                  # one fill per buffer
    group.clip_grad_norm(1.0)          # one norm over the buffers, one scale
    group.named()                      # [(name, param view, grad view)], in layer order
    opt = make_optimizer(cfg, group)   # steps over the buffers, not array by array

After ``pack`` a layer's ``params[key]`` and ``grads[key]`` are views into
``Segment.data`` and ``Segment.grad``, so a layer keeps working on its own
arrays while zeroing, clipping, an optimizer step, an all-reduce or a copy
to a device is one call per buffer. Each view starts on a 64-byte boundary;
the few padding entries between views stay zero in both buffers (an update
of a zero parameter with a zero gradient is zero in every optimizer here).

Each gradient buffer is allocated with ``SPARE`` free entries just past its
end: a data-parallel step writes its loss, metric sums and stop flag there and
all-reduces gradients and scalars as one contiguous array, with nothing copied
(``reduction``).

A ``ParamGroup`` is a list of segments. ``ParamGroup.of`` wraps arrays that
live apart (tests, a layer outside a model), one segment each, without
copying them; ``subset`` cuts a model's group down to some of its networks
(a GAN's generator and discriminator, each with its own optimizer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from .layers.base import Layer, walk

Param = tuple[str, np.ndarray, np.ndarray]  # (name, param, grad)
ALIGN_BYTES = 64
SPARE = 32  # entries allocated past each gradient buffer for a step's scalars (loss, metrics, stop flag)


@dataclass
class Entry:
    name: str
    offset: int              # into the segment, in elements
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Segment:
    """Parameters of one dtype laid end to end: ``data`` (n,) and ``grad`` (n,), contiguous.

    ``grad_spare`` (n + s,): ``grad`` and the s free entries just past it in the same memory (None where the
    gradient is not followed by free room: arrays wrapped by ``of``, a subset that ends before its buffer).
    """

    data: np.ndarray
    grad: np.ndarray
    entries: list[Entry] = field(default_factory=list)
    grad_spare: np.ndarray | None = None

    def view(self, e: Entry) -> tuple[np.ndarray, np.ndarray]:
        s = slice(e.offset, e.offset + e.size)
        return self.data[s].reshape(e.shape), self.grad[s].reshape(e.shape)


class ParamGroup:
    def __init__(self, segments: list[Segment]):
        self.segments = segments

    @classmethod
    def of(cls, params: Iterable[Param]) -> "ParamGroup":
        """Arrays that live apart, one segment each (no copy); an array listed twice (tied) counts once."""
        seen, segments = set(), []
        for name, p, g in params:
            if id(p) in seen:
                continue
            seen.add(id(p))
            if not (p.flags.c_contiguous and g.flags.c_contiguous):
                raise ValueError(f"parameter {name} or its gradient is not a contiguous array")
            segments.append(Segment(p.reshape(-1), g.reshape(-1), [Entry(name, 0, p.shape)]))
        return cls(segments)

    def named(self) -> list[Param]:
        return [(e.name, *seg.view(e)) for seg in self.segments for e in seg.entries]

    def subset(self, prefixes: Iterable[str]) -> "ParamGroup":
        """The parameters whose names start with one of ``prefixes`` (``"generator."``), as views of the same
        buffers: a run of consecutive chosen entries becomes one segment."""
        prefixes = tuple(prefixes)
        out: list[Segment] = []
        for seg in self.segments:
            run: list[Entry] = []
            for e in [*seg.entries, None]:
                if e is not None and e.name.startswith(prefixes):
                    run.append(e)
                    continue
                if run:
                    lo, hi = run[0].offset, run[-1].offset + run[-1].size
                    spare = seg.grad_spare[lo:] if seg.grad_spare is not None and hi == len(seg.grad) else None
                    out.append(Segment(seg.data[lo:hi], seg.grad[lo:hi],
                                       [Entry(r.name, r.offset - lo, r.shape) for r in run], spare))
                    run = []
        return ParamGroup(out)

    def __len__(self) -> int:
        return sum(len(seg.entries) for seg in self.segments)

    def num_params(self) -> int:
        return sum(e.size for seg in self.segments for e in seg.entries)

    def grad_buffers(self) -> Iterator[np.ndarray]:
        return (seg.grad for seg in self.segments)

    def reduction(self, k: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The contiguous arrays that carry this group's gradients and ``k`` scalars in an all-reduce, and the
        (k,) slots for the scalars.

        One array, the last gradient buffer with the slots in its spare entries, when the group is one
        buffer that has them (a model's parameters of one dtype: every shipped model); otherwise one per
        buffer and a float64 (k,) array of its own. Nothing is copied either way. In a float32 run the
        scalars travel in float32: a metric's sum over the global batch is rounded to float32's 24 bits
        (about 6e-8 relative, the precision it was computed at; counts such as correct predictions stay
        exact below 2**24).
        """
        grads = list(self.grad_buffers())
        last = self.segments[-1] if self.segments else None
        if last is not None and last.grad_spare is not None and len(last.grad_spare) - len(last.grad) >= k:
            whole = last.grad_spare[:len(last.grad) + k]
            return [*grads[:-1], whole], whole[len(last.grad):]
        slots = np.zeros(k)
        return [*grads, slots], slots

    # -- the gradient operations of a step: here and nowhere else -----------------------
    def grads_finite(self) -> bool:
        """Whether every gradient entry is finite: one sum per buffer (NaN and inf survive a sum; a finite
        sum that overflows reads as not finite, so a False is worth a closer look array by array)."""
        return all(np.isfinite(g.sum()) for g in self.grad_buffers())

    def zero_grad(self) -> None:
        for seg in self.segments:
            seg.grad.fill(0)

    def clip_grad_norm(self, max_norm: float) -> float:
        """Scale the gradients in place so their global L2 norm is at most ``max_norm``; return the norm before.

        As torch.nn.utils.clip_grad_norm_: the factor is max_norm / (norm + 1e-6), capped at 1.
        """
        total = math.sqrt(sum(float(np.vdot(g, g)) for g in self.grad_buffers()))
        coef = min(max_norm / (total + 1e-6), 1.0)
        if coef < 1.0:
            for g in self.grad_buffers():
                g *= coef
        return total

    def clip_grad_value(self, value: float) -> None:
        """Clamp every gradient entry in place to [-value, value]."""
        for g in self.grad_buffers():
            np.clip(g, -value, value, out=g)


def pack(networks: Iterable[tuple[str, Layer]]) -> ParamGroup:
    """Move the params and grads of every layer below ``networks`` into one buffer per dtype.

    Names are ``<network>.<path>.<key>``; the order is the layers' (network by network, depth first),
    so each network's parameters are one run in each buffer. An array that two layers share stays
    shared (both get the same view).
    """
    slots: list[tuple[str, Layer, str]] = []
    for name, net in networks:
        for path, layer in walk(net, f"{name}."):
            slots.extend((f"{path}{key}", layer, key) for key in layer.params)
    segments: dict[np.dtype, Segment] = {}
    where: dict[int, tuple[Segment, Entry]] = {}  # id of an original array -> its place
    offsets: dict[np.dtype, int] = {}
    for name, layer, key in slots:
        p = layer.params[key]
        if id(p) in where:
            continue
        align = max(1, ALIGN_BYTES // p.dtype.itemsize)
        start = -(-offsets.get(p.dtype, 0) // align) * align
        seg = segments.setdefault(p.dtype, Segment(np.empty(0, p.dtype), np.empty(0, p.dtype)))
        entry = Entry(name, start, p.shape)
        seg.entries.append(entry)
        where[id(p)] = (seg, entry)
        offsets[p.dtype] = start + p.size
    for dtype, seg in segments.items():  # allocate, then copy in and hand each layer its views
        seg.data, seg.grad_spare = _aligned_zeros(offsets[dtype], dtype), _aligned_zeros(offsets[dtype] + SPARE, dtype)
        seg.grad = seg.grad_spare[:offsets[dtype]]
    for name, layer, key in slots:
        seg, entry = where[id(layer.params[key])]
        p_view, g_view = seg.view(entry)
        p_view[...], g_view[...] = layer.params[key], layer.grads[key]
        layer.params[key], layer.grads[key] = p_view, g_view
    return ParamGroup(list(segments.values()))


def _aligned_zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed (n,) array that starts on an ALIGN_BYTES boundary (numpy promises 16)."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    return raw[start:start + n * dtype.itemsize].view(dtype)
