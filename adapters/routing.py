"""Per-sample adapter routing: which resident adapter each row of a batch goes through.

The bank (`adapters.bank`) sets a `Route` for the duration of a forward pass or a `generate` call; its layers
(`adapters.bank_layers`) read it. A route names one adapter per sample (None: the backbone alone). Batches
that a model widens row by row keep each sample's rows together (`generate` repeats each sample `num_beams`
times with `repeat_interleave`, a decoder classifier each clip once per label), so a layer that sees
`n = k x samples` rows gives sample `i` rows `i*k .. i*k + k - 1`. Code that runs a sub-batch of the
route's samples says which ones with `rows(indices)`; without an active route, `rows` does nothing, so
tasks call it unconditionally.

Import-light (no torch at import): tasks import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from speechpeft.errors import InputError

_ACTIVE: ContextVar[Route | None] = ContextVar("speechpeft_route", default=None)


class RoutingError(InputError):
    """A layer saw a batch whose rows cannot be matched to the route's samples."""


class Route:
    """One adapter (or None) per sample, and the per-layer tensors gathered for them, built once per call."""

    def __init__(self, adapters: Iterable[Any]) -> None:
        self.adapters = tuple(adapters)
        self._plans: dict[tuple[str, str, int], Any] = {}

    def __len__(self) -> int:
        return len(self.adapters)

    def uniform(self) -> bool:
        """Whether every sample goes through the same adapter (or every one through none)."""
        return all(a is self.adapters[0] for a in self.adapters)

    def repeats(self, rows: int) -> int:
        """How many consecutive rows of a `rows`-row batch belong to each sample."""
        if rows % len(self.adapters):
            raise RoutingError(f"a layer saw {rows} rows for a route of {len(self.adapters)} samples: a sub-batch "
                               "was run without `routing.rows(...)` naming its samples")  # fmt: skip
        return rows // len(self.adapters)

    def plan(self, layer: str, what: str, rows: int, build: Callable[[Route, int], Any]) -> Any:
        """`build(route, repeats)` for this layer and batch height, computed on first use and kept for the call
        (every decoding step of `generate` reuses it)."""
        key = (layer, what, rows)
        if key not in self._plans:
            self._plans[key] = build(self, self.repeats(rows))
        return self._plans[key]

    def entries(self, kind: str, path: str) -> list[Any]:
        """Each sample's tensors of `kind` (an adapter's `lora`, `bottleneck`, `prefix` or `heads` map) for module
        `path`, None where the sample has no adapter or its adapter leaves that module alone."""
        return [None if a is None else getattr(a, kind).get(path) for a in self.adapters]

    def subset(self, indices: Iterable[int]) -> Route:
        return Route(self.adapters[i] for i in indices)


def active() -> Route | None:
    """The route of the running call, or None outside the bank."""
    return _ACTIVE.get()


def replace_active(route: Route) -> None:
    """Make `route` the active one until the enclosing `routed`/`rows` block ends (which restores what it replaced):
    for model code that narrows its batch from inside a call, where no block can be opened."""
    if _ACTIVE.get() is None:
        raise RoutingError("no active route to replace")
    _ACTIVE.set(route)


@contextlib.contextmanager
def routed(route: Route) -> Iterator[Route]:
    """Make `route` the active one for the body (this thread / task only)."""
    token = _ACTIVE.set(route)
    try:
        yield route
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def rows(indices: Iterable[int]) -> Iterator[None]:
    """Run the body on the samples `indices` of the active route (a sub-batch); a no-op without a route."""
    route = _ACTIVE.get()
    if route is None:
        yield
        return
    with routed(route.subset(list(indices))):
        yield
