"""Command-line values -> typed Python values, checked before anything runs.

``--opt METHOD.KEY=VALUE`` and ``--dataset-opt DATASET.KEY=VALUE`` are parsed against the type each option
declares (a method's or stage's ``Options`` dataclass, a dataset's ``__init__`` signature):

- ``bool``: ``true``/``false``/``1``/``0`` in any case (never Python's truthiness of a string);
- ``int``, ``float``, ``str``; ``X | None``: ``none`` (any case) is None;
- ``Literal[...]``: one of the listed values; tuples and sequences: ``a,b`` (also ``(a,b)``, ``['a','b']``;
  each item by its own type);
- anything else: a Python literal, else the text.

Every error is a ``UsageError`` naming the flag, the value and what would be accepted.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["UsageError", "parse_assignments", "coerce", "typed_options", "option_types", "csv_of", "split_csv"]


class UsageError(ValueError):
    """A command-line value that cannot be used; the message names the flag and the fix."""


_TRUE, _FALSE = {"true", "1"}, {"false", "0"}


def parse_assignments(items: Iterable[str] | None, flag: str) -> dict[str, dict[str, str]]:
    """``["slic.n_segments=400"]`` -> ``{"slic": {"n_segments": "400"}}`` (values still text)."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        name, dot, rest = item.partition(".")
        key, eq, raw = rest.partition("=")
        if not (dot and eq and name and key):
            raise UsageError(f"{flag} {item!r} is malformed; write NAME.KEY=VALUE, e.g. {flag} pixel-rf.n_estimators=100")
        out.setdefault(name.strip(), {})[key.strip()] = raw.strip()
    return out


def split_csv(raw: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the items of a comma-separated value, blanks dropped."""
    return [t.strip() for t in raw.split(",") if t.strip()]


def coerce(raw: str, annotation: Any) -> Any:
    """Parse ``raw`` as a value of type ``annotation`` (see the module docstring).

    Raises:
        ValueError: ``raw`` is not such a value; the message says what is accepted.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and raw.lower() == "none":
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(raw, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(" or ".join(errors))
    if origin is typing.Literal:  # exact, else the one choice equal to it in any case
        exact = [c for c in args if str(c) == raw]
        loose = [c for c in args if str(c).lower() == raw.lower()]
        if exact or len(loose) == 1:
            return (exact or loose)[0]
        raise ValueError(f"one of {', '.join(str(a) for a in args)}")
    if origin in (tuple, list) or origin in (Sequence, typing.Sequence) or annotation in (list, tuple):
        parts = [p.strip("'\"") for p in split_csv(raw.strip().strip("()[]"))]  # (40,32) and ['a','b'] too
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(parts) != len(args):
                raise ValueError(f"{len(args)} comma-separated values")
            return tuple(coerce(p, a) for p, a in zip(parts, args))
        item_type = args[0] if args else str
        values = [coerce(p, item_type) for p in parts]
        return tuple(values) if origin is tuple else values
    if annotation is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError("true/false/1/0")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError:
            raise ValueError(f"{'an integer' if annotation is int else 'a number'}") from None
    if annotation is str or (isinstance(annotation, type) and annotation.__name__ == "Path"):
        return raw
    try:  # undeclared or unusual types: a Python literal, else the text
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def typed_options(
    raw: Mapping[str, Mapping[str, str]],
    declared: Callable[[str], Mapping[str, Any] | None],
    *,
    flag: str,
    valid_names: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Check and parse every ``NAME.KEY=VALUE`` of one flag.

    Args:
        raw: From ``parse_assignments``.
        declared: Name -> ``{key: type}`` of that component's options (None: a name ``valid_names`` lists that
            takes the options of another entry; its keys are then not checked here).
        flag: The flag, for messages (``--opt``).
        valid_names: The names this flag may address in this command.

    Raises:
        UsageError: an unknown name or key, or a value of the wrong type, each naming the flag and the fix.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, values in raw.items():
        if name not in valid_names:
            raise UsageError(f"{flag} {name}: not a name in this command; valid names: {', '.join(valid_names) or '(none)'}")
        types_ = declared(name) or {}
        for key, text in values.items():
            if key not in types_:
                raise UsageError(f"{flag} {name}.{key}: unknown option; {name}'s options: {', '.join(sorted(types_)) or '(none)'}")
            try:
                out.setdefault(name, {})[key] = coerce(text, types_[key])
            except ValueError as exc:
                raise UsageError(f"{flag} {name}.{key}={text!r}: expected {exc}") from None
    return out


def option_types(owner: Any) -> dict[str, Any]:
    """``{key: type}`` of a method's or stage's ``Options`` dataclass, or of a dataset's keyword arguments."""
    if hasattr(owner, "Options"):
        return typing.get_type_hints(owner.Options)
    hints = typing.get_type_hints(owner.__init__)
    params = list(inspect.signature(owner.__init__).parameters.values())[2:]  # after self and the data folder
    return {p.name: hints.get(p.name, Any) for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def csv_of(item_type: type, *, count: int | None = None) -> Callable[[str], list[Any]]:
    """An argparse ``type=`` for comma-separated values (``--seeds 0,1,2``); a bad item names the flag."""

    def parse(text: str) -> list[Any]:
        try:
            values = [item_type(t) for t in split_csv(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {item_type.__name__} values") from None
        if not values or (count is not None and len(values) != count):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {count or 'one or more'} comma-separated values")
        return values

    parse.__name__ = f"{item_type.__name__} list"
    return parse
