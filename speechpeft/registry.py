"""A small named registry shared by backbones, adapter methods and tasks.

Keys are open lowercase strings: adding a backbone family, a method or a task is one
``register`` call, and nothing else in the codebase needs to learn its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from speechpeft.errors import UserError

T = TypeVar("T")
_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # whole names only: fullmatch (`$` would take "asr\n")


class UnknownNameError(UserError, KeyError):
    """Raised for a name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps lowercase names to entries of one kind ("backbone", "method", "task")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if not _KEY.fullmatch(name):
            raise ValueError(f"{self.kind} name {name!r} must be lowercase letters, digits, '-', '_' or '.'")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name.lower()]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none registered)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
