"""Options as data: a method's options are the fields of its dataclass, declared with `option(...)`; the CLI
and the pipelines build their arguments from those fields, so an option is written once.

A field's flag is its name with dashes (`keep_fraction` -> `--keep-fraction`), its type comes from the field's
annotation (or `type=` for a parser of its own), and fields sharing a `group` are mutually exclusive.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def positive_int(text: str) -> int:
    """Returns text as an int >= 1; argparse turns the ValueError into a one-line error."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    """Returns text as an int >= 0; argparse turns the ValueError into a one-line error."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def positive_float(text: str) -> float:
    """Returns text as a float > 0; argparse turns the ValueError into a one-line error."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def option(default: Any = dataclasses.MISSING, help: str = "", *, type: Any = None, choices: Any = None,
           group: str | None = None, required_group: bool = True, methods: tuple[str, ...] = ()) -> Any:
    """Returns a dataclass field that is also a command-line option: its help text, an optional parser (`type`),
    choices, the mutually exclusive `group` it belongs to (one of which is required unless required_group=False),
    and, in a class of several methods' options, the `methods` that take it (none: every method; its help then
    starts with their names)."""
    if methods:
        help = f"{', '.join(methods)}: {help}"
    metadata = dict(help=help, type=type, choices=choices, group=group, required_group=required_group,
                    methods=methods)
    return dataclasses.field(default=default, metadata=metadata)


def option_methods(field: dataclasses.Field) -> tuple[str, ...]:
    """Returns the methods that take an option field (empty: every one)."""
    return field.metadata.get("methods", ())


def option_fields(cls: type) -> list[dataclasses.Field]:
    """Returns the fields of a dataclass that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _value_type(annotation: Any) -> Any:
    """Returns int, float, str or bool from an annotation such as `float | None`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Declares one argument per option field of `cls` on `parser`."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in option_fields(cls):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        kind = _value_type(hints[f.name])
        target = parser
        if meta["group"]:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group(required=meta["required_group"])
            target = groups[meta["group"]]
        if kind is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=meta["help"])
            continue
        required = f.default is dataclasses.MISSING and not meta["group"]
        default = None if f.default is dataclasses.MISSING else f.default
        shown = "" if default is None or meta["group"] else f" (default {default})"
        target.add_argument(flag, type=meta["type"] or kind, choices=meta["choices"], default=default,
                            required=required, help=meta["help"] + shown)


def options_from(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """Returns an instance of `cls` from the parsed option fields (and `extra` keyword arguments)."""
    return cls(**{f.name: getattr(args, f.name) for f in option_fields(cls)}, **extra)


def option_values(obj: Any) -> dict:
    """Returns the option fields of a dataclass instance, name -> value (what a stage records as its config)."""
    return {f.name: getattr(obj, f.name) for f in option_fields(type(obj))}
