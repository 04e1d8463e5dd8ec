"""Name -> class registries, filled by a decorator (in the style of timm's ``_registry.py``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError", "ImportFailed", "import_modules"]

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class ImportFailed(ImportError):
    """A module given to ``--import`` cannot be found or loaded; the message names it and the fix."""


def import_modules(items: Iterable[str]) -> None:
    """Import the modules that register a user's own methods, stages and datasets (``--import``).

    Each item is a module name (``mymethods``, ``pkg.methods``), looked up from the current folder first as
    Python does for a script, or a path to a ``.py`` file. Importing the same one twice does nothing.

    Raises:
        ImportFailed: a module that does not exist (errors raised inside the module keep their traceback).
    """
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for item in items:
        if item.endswith(".py"):
            path = Path(item).expanduser().resolve()
            if not path.is_file():
                raise ImportFailed(f"--import {item}: no such file; give a .py file or a module name")
            name = path.stem
            if getattr(sys.modules.get(name), "__file__", None) == str(path):
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            continue
        try:
            importlib.import_module(item)
        except ModuleNotFoundError as exc:
            if exc.name != item and not item.startswith(f"{exc.name}."):
                raise  # the module exists but imports something missing: a bug or dependency to show in full
            raise ImportFailed(f"--import {item}: no module {exc.name!r} here ({cwd}) or on the Python path; "
                               "give the module name from the folder holding it, or the path to its .py file") from None


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
