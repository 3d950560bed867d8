"""Name -> class registries for layers, models, losses, optimizers, schedules, datasets."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A config named something no registry entry has."""

    def __init__(self, kind: str, name: object, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        self.suggestion = closest(str(name), valid)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        hint = f" (did you mean '{self.suggestion}'?)" if self.suggestion else ""
        return f"unknown {self.kind} '{self.name}'{hint}; valid: {', '.join(self.valid)}"

    def __str__(self) -> str:
        return self.message


def closest(name: str, valid: list[str]) -> str | None:
    match = difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.6)
    return match[0] if match else None


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            try:
                obj.type_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


LAYERS: Registry = Registry("layer")
MODELS: Registry = Registry("model type")
LOSSES: Registry = Registry("loss")
OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")
DATASETS: Registry = Registry("dataset")
