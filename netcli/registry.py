"""Name -> class registries for layers, models, losses, optimizers, schedules and datasets.

One mechanism for every kind of component, and the public way to add one
(a plugin is a module that does this):

    from pydantic import Field
    from typing import Literal
    from netcli.layers import Layer, LayerConfig, register_layer    # = LAYERS.register

    @register_layer("scale")
    class Scale(Layer):
        class Config(LayerConfig):
            type: Literal["scale"] = "scale"          # the registry checks it names the same
            factor: float = Field(2.0, description="multiplies the input")

- ``register(name)`` is a class decorator: it checks that the class's pydantic
  ``Config`` declares ``<tag>: Literal[name] = name`` (``tag`` is ``type``,
  ``dataset`` for datasets), sets ``cls.type_name`` and refuses a name
  registered twice. The public aliases are ``register_layer``,
  ``register_model``, ``register_loss``, ``register_optimizer``,
  ``register_schedule`` and ``register_dataset``.
- ``build(spec, *args)`` makes an instance from a name, a dict with the tag
  key, or a validated Config; ``cls(config, *args)``.
- ``union()`` is the pydantic union of every registered Config,
  discriminated by the tag: the config file's schema comes from here.
- an unknown name is an ``UnknownNameError`` that suggests the closest valid
  one (``closest``, the one suggestion helper of the code base).
"""
from __future__ import annotations

import difflib
from typing import Annotated, Any, Callable, Generic, Iterator, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, Field

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A config named something no registry entry has."""

    def __init__(self, kind: str, name: object, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        self.suggestion = closest(str(name), valid)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"unknown {self.kind} '{self.name}'{did_you_mean(str(self.name), self.valid)}; " \
               f"valid: {', '.join(self.valid)}"

    def __str__(self) -> str:
        return self.message


def closest(name: str, valid: list[str]) -> str | None:
    """The valid name closest to a misspelt one, or None when nothing is close."""
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6) or \
        difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(name: str, valid: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    match = closest(name, valid)
    return f" (did you mean '{match}'?)" if match else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, tag: str = "type"):
        self.kind, self.tag = kind, tag
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: add a component whose ``Config`` says ``<tag>: Literal[name] = name``."""

        def add(cls: T) -> T:
            config = getattr(cls, "Config", None)
            declared = getattr(config, "model_fields", {}).get(self.tag)
            if declared is None or declared.default != name:
                raise TypeError(f"{getattr(cls, '__name__', cls)}.Config must declare "
                                f"{self.tag}: Literal['{name}'] = '{name}'")
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = cls
            cls.type_name = name  # type: ignore[attr-defined]
            return cls

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self.names()) from None

    def build(self, spec: str | dict[str, Any] | BaseModel, *args: Any) -> Any:
        """An instance from a name, a dict with the tag key, or a Config: ``cls(config, *args)``."""
        if isinstance(spec, BaseModel):
            return self.get(getattr(spec, self.tag))(spec, *args)
        if isinstance(spec, str):
            spec = {self.tag: spec}
        if self.tag not in spec:
            raise ValueError(f"a {self.kind} needs a '{self.tag}'; valid: {', '.join(self.names())}")
        cls = self.get(spec[self.tag])
        return cls(cls.Config(**spec), *args)  # type: ignore[attr-defined]

    def union(self, shorthand: bool = True) -> Any:
        """The union of every registered Config, discriminated by the tag.

        ``shorthand``: a bare name stands for ``{tag: name}`` (``- relu``, ``loss: mse``).
        """
        configs = tuple(cls.Config for _, cls in self.items())  # type: ignore[attr-defined]
        meta: list[Any] = [Field(discriminator=self.tag)]
        if shorthand:
            meta.append(BeforeValidator(lambda v: {self.tag: v} if isinstance(v, str) else v))
        return Annotated[(Union[configs], *meta)]

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
DATASETS: Registry = Registry("dataset", tag="dataset")

register_layer = LAYERS.register
register_model = MODELS.register
register_loss = LOSSES.register
register_optimizer = OPTIMIZERS.register
register_schedule = SCHEDULES.register
register_dataset = DATASETS.register
