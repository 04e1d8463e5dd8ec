"""Name -> class registries, filled by a decorator (in the style of timm's ``_registry.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class Registry(Generic[T]):
    """A registry of classes of one kind (methods, stages, datasets), keyed by an explicit name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@METHODS.register("otsu")``. The name is stored on the class as ``name``."""

        if "+" in name:
            raise ValueError(f"{self.kind} name {name!r} may not contain '+': it joins pipeline stages")

        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self._items[name]} and {obj})")
            obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            return obj

        return decorate

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Inside a ``with`` block, registrations (e.g. by importing a plugin module) last until it ends.

        On exit, however the block ends, the registry holds exactly what it held on entry.
        """
        saved = dict(self._items)
        try:
            yield
        finally:
            self._items.clear()
            self._items.update(saved)

    @contextmanager
    def temporarily(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` as ``name`` inside a ``with`` block only (tests, one-off experiments)::

            with METHODS.temporarily("test-box", BoxFilter):
                build_method("test-box", 2)
        """
        with self.restored():
            self.register(name)(obj)
            yield obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
