"""The server's routes about models rather than audio: listings, loading and unloading, health and metrics.

Bank calls run in the thread pool: a bank method may wait for its lock while a batch runs.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from speechpeft import __version__
from speechpeft.adapters.bank import BASE
from speechpeft.errors import MissingInputError
from speechpeft.server_errors import ApiError
from speechpeft.server_metrics import ServerMetrics
from speechpeft.server_names import check_name, refuse_path


class LoadRequest(BaseModel):
    name: str  # a store name or Hub repo id; with `path`, the name the adapter is resident under
    path: str | None = None  # an adapter directory: refused (403) unless the app allows adapter paths
    pin: bool = False  # never evicted


def add_admin_routes(app: FastAPI) -> None:
    """Model and adapter listings, loading and unloading, /health and /metrics."""
    app.get("/v1/models")(list_models)
    app.get("/v1/models/{model:path}")(retrieve_model)
    app.get("/v1/adapters")(list_adapters)
    app.post("/v1/adapters")(load_adapter)
    app.delete("/v1/adapters/{name:path}")(unload_adapter)
    app.get("/health")(health)
    app.get("/metrics")(metrics)


async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI's model list: the resident adapters, those in the store, and `__base__`, with task/method/backbone."""
    return {"object": "list", "data": await run_in_threadpool(_models, request.app)}


async def retrieve_model(request: Request, model: str) -> dict[str, Any]:
    found = [entry for entry in await run_in_threadpool(_models, request.app) if entry["id"] == model]
    if not found:
        raise ApiError(404, f"no model {model!r}: GET /v1/models lists them", param="model", code="model_not_found")
    return found[0]


def _models(app: FastAPI) -> list[dict[str, Any]]:
    bank, created = app.state.bank, int(app.state.started)
    backbone = getattr(bank, "default_backbone", None) or next(iter(bank.backbones()), None)
    entries = {BASE: {"task": None, "method": None, "backbone": backbone, "resident": True}}
    for stored in bank.stored():
        entries[stored["name"]] = {**_described(stored), "resident": False}
    for info in bank.resident():
        entries[info.name] = {**_described(vars(info)), "resident": True}
    return [{"id": name, "object": "model", "created": created, "owned_by": "speechpeft", **described}
            for name, described in entries.items()]  # fmt: skip


def _described(adapter: dict[str, Any]) -> dict[str, Any]:
    return {key: adapter.get(key) for key in ("task", "method", "backbone")}


async def list_adapters(request: Request) -> dict[str, Any]:
    """The resident adapters (with bytes, pinned, labels) and the stored ones, and the bank's counters."""
    bank = request.app.state.bank

    def listing() -> dict[str, Any]:
        return {"resident": [_info(info) for info in bank.resident()], "stored": bank.stored(), "stats": bank.stats()}

    return await run_in_threadpool(listing)


async def load_adapter(request: Request, body: LoadRequest) -> dict[str, Any]:
    """Make an adapter resident: a store name, a Hub repo id (where the app pulls from the Hub), or (where the app
    allows adapter paths) a directory (`path`) resident under `name`; a path otherwise, or a `name` that is one,
    is a 403."""
    bank = request.app.state.bank
    if body.path is None:
        await run_in_threadpool(check_name, bank, body.name, "name", request.app.state.pull_from_hub)
        info = await run_in_threadpool(lambda: bank.load(body.name, pin=body.pin))
    elif request.app.state.allow_adapter_paths:
        info = await run_in_threadpool(lambda: bank.load(body.path, name=body.name, pin=body.pin))
    else:
        raise refuse_path()
    return _info(info)


async def unload_adapter(request: Request, name: str) -> dict[str, Any]:
    try:
        await run_in_threadpool(request.app.state.bank.unload, name)
    except MissingInputError as error:
        raise ApiError(404, str(error), param="name", code="adapter_not_resident") from error
    return {"id": name, "object": "adapter", "deleted": True}


def _info(info: Any) -> dict[str, Any]:
    return {key: str(value) if key == "path" and value is not None else value for key, value in vars(info).items()}


async def health(request: Request) -> dict[str, Any]:
    """Liveness without touching the bank (a long batch holds it): status, version and uptime in seconds."""
    return {"status": "ok", "version": __version__, "uptime_s": round(time.time() - request.app.state.started, 3)}


async def metrics(request: Request) -> Response:
    """Prometheus text: requests, latency, batch sizes and the bank's resident adapters, loads and evictions."""
    registry: ServerMetrics = request.app.state.metrics
    return Response(await run_in_threadpool(registry.render), media_type=registry.content_type)
