"""Which adapters a client may name: the server reads adapter files from its store, never from a path it is sent.

`AdapterBank.load` takes a store name, an adapter directory or a Hub repo id, which suits a Python user on their
own machine. A client of the server is a stranger, so the `model` of a request (and the `name` of POST
/v1/adapters) must be `__base__`, a resident adapter (the operator's `--adapters` directories among them), a name
in the store (`store.adapter_path`: no `..`, no absolute path, no link out), or, where the operator allows it
(`--pull-from-hub`), a Hub repo id, which the bank pulls into the store (safetensors and JSON only: `hub_pull`).
Loading a directory by `path` through the API is off unless the operator allows it (`--allow-adapter-paths`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from speechpeft.adapter_dir import RECORD
from speechpeft.adapters.bank import BASE
from speechpeft.errors import InputError
from speechpeft.hub_client import HUB_PREFIX, looks_like_repo_id
from speechpeft.server_errors import ApiError
from speechpeft.store import adapter_path

TO_SERVE = ("to serve an adapter, copy its directory into the server's store (`speechpeft serve --store DIR`) and "
            "name it by its path there, e.g. asr/lora-a")  # fmt: skip


def check_name(bank: Any, name: str, param: str = "model", pull_from_hub: bool = False) -> None:
    """Refuse an adapter name the bank could read from outside its store (ApiError 403 on `param`), and, unless
    `pull_from_hub`, one it would pull from the Hub because the store lacks it (404: nothing is downloaded).

    Reads the file system (a few stats) and the bank's resident list: call it from a worker thread.
    """
    if name == BASE or name.removeprefix(HUB_PREFIX) in {info.name for info in bank.resident()}:
        return
    reason = _outside_store(name, bank.store)
    if reason:
        raise ApiError(403, f"{param} {name!r} {reason}: the server loads adapters from its store or the Hub only, "
                       f"never by path; {TO_SERVE}", param=param, code="model_not_allowed")  # fmt: skip
    if not pull_from_hub and not _stored(name, bank.store):
        raise ApiError(404, f"{param} {name!r} is not in this server's store, and the server does not pull adapters "
                       "from the Hub (`speechpeft pull` one into the store, or start the server with "
                       "--pull-from-hub)", param=param, code="model_not_found")  # fmt: skip


def _stored(name: str, store: str | os.PathLike | None) -> bool:
    try:
        return (adapter_path(name, store) / RECORD).is_file()
    except InputError:
        return False


def _outside_store(name: str, store: str | os.PathLike | None) -> str | None:
    """Why the bank, asked for `name`, could read a directory outside `store`; None when it could not.

    The bank tries a name as a path (relative to the server's working directory) before the store, so a store
    name that is also a path here is refused too.
    """
    hub = looks_like_repo_id(name.removeprefix(HUB_PREFIX))
    try:
        stored: Path | None = adapter_path(name, store)
    except InputError:
        if not hub:
            return "is neither an adapter name of the store (lowercase words joined by '/') nor a Hub repo id"
        stored = None  # e.g. Owner/Name: the bank pulls it into the store, under a name it checks
    if os.path.lexists(name) and (stored is None or Path(name).resolve() != stored.resolve()):
        return "is a path on the server, outside its store"
    return None


def refuse_path() -> ApiError:
    """The answer to POST /v1/adapters with `path` on a server that does not load adapters by path."""
    return ApiError(403, f"this server does not load adapters by path; {TO_SERVE}, or name the directory with "
                    "`speechpeft serve --adapters DIR` when starting it", param="path",
                    code="adapter_paths_off")  # fmt: skip
