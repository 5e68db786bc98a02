"""Typed option dataclasses as command-line flags: each field is documented once, in its metadata.

`add_options` turns the fields of a dataclass into argparse flags (`out` -> `--out`), and
`parse_options` builds the dataclass back, so validation lives in the dataclass's
`__post_init__` and its errors reach the user as argparse errors naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

from speechpeft.errors import UserError

T = TypeVar("T")


def help_text(text: str) -> dict:
    """A dataclass field's metadata carrying its `--help` text: `field(default=1, metadata=help_text("..."))`."""
    return {"help": text}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = _unwrap_optional(hints[field.name])
        kwargs: dict[str, Any] = {"dest": field.name, "help": field.metadata.get("help", "")}
        default = _default(field)
        required = default is dataclasses.MISSING
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:  # a choice: argparse lists the choices in --help and errors
            kwargs.update(choices=typing.get_args(kind), metavar="{" + ",".join(typing.get_args(kind)) + "}")
        elif typing.get_origin(kind) is tuple:
            kwargs.update(nargs="+", type=typing.get_args(kind)[0], metavar=field.name.upper())
        else:
            kwargs.update(type=kind, metavar=field.name.upper())
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default not in (None, False, ()) and kind is not bool:
                kwargs["help"] += (
                    f" (default: {' '.join(map(str, default)) if isinstance(default, tuple) else default})"
                )
        parser.add_argument(flag(field.name), **kwargs)


def parse_options(parser: argparse.ArgumentParser, args: argparse.Namespace, cls: type[T]) -> T:
    """Build `cls` from parsed flags; a `UserError` from its validation exits like any other argparse error.

    Raises SystemExit (status 2) for a `UserError`; any other exception propagates: it is not an input check.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except UserError as error:
        parser.error(str(error))


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _unwrap_optional(annotation: Any) -> Any:
    """`Path | None` -> Path: a None default already says the flag is optional."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation
