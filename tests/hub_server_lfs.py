"""The legacy git-lfs "basic" transfer of `tests/hub_server.py`'s LocalHub (clients with `HF_HUB_DISABLE_XET=1`).

huggingface_hub asks `POST /{repo}.git/info/lfs/objects/batch` (datasets: `/datasets/{repo}.git/...`) where to
put each object, PUTs the bytes to the `upload` href (without any Authorization header, as to S3), POSTs the
`verify` href, then commits `lfsFile` entries naming the objects by sha256.
"""

import hashlib
import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.hub_server import URL_PREFIX, HubError, LocalHub

LFS_JSON = "application/vnd.git-lfs+json"


def batch_object(hub: LocalHub, prefix: str, oid: str, size: int) -> dict:
    """The batch answer for one object: no `actions` when already stored, else upload + verify hrefs."""
    if len(oid) != 64 or any(c not in "0123456789abcdef" for c in oid):
        raise HubError(422, f"Invalid LFS oid {oid!r}")
    stored = hub.store.blob(oid)
    if stored.is_file() and stored.stat().st_size == size:
        return {"oid": oid, "size": size}
    actions = {
        "upload": {"href": f"{hub.endpoint}/lfs-upload/{oid}", "header": {}},
        "verify": {"href": f"{hub.endpoint}/{prefix}.git/info/lfs/objects/verify", "header": {}},
    }
    return {"oid": oid, "size": size, "authenticated": True, "actions": actions}


def add_lfs_routes(app: FastAPI, hub: LocalHub) -> None:
    """Batch (upload operation only), single-part PUT upload, and verify."""

    async def batch(request: Request, repo_type: str, repo_id: str) -> JSONResponse:
        hub.repo(request, repo_type, repo_id, write=True)
        body = json.loads(await request.body())
        if body.get("operation") != "upload":
            raise HubError(400, "LocalHub's LFS batch endpoint only answers uploads (downloads go through /resolve)")
        prefix = f"{URL_PREFIX[repo_type]}{repo_id}"
        objects = [batch_object(hub, prefix, o["oid"], o["size"]) for o in body.get("objects", [])]
        return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, media_type=LFS_JSON)

    async def verify(request: Request, repo_type: str, repo_id: str) -> dict:
        hub.repo(request, repo_type, repo_id, write=True)
        body = await request.json()
        stored = hub.store.blob(body["oid"])
        if not stored.is_file() or stored.stat().st_size != body["size"]:
            raise HubError(404, f"LFS object {body['oid']} ({body['size']} bytes) was not uploaded")
        return {"oid": body["oid"], "size": body["size"]}

    @app.post("/datasets/{ns}/{name}.git/info/lfs/objects/batch")
    async def batch_dataset(request: Request, ns: str, name: str) -> JSONResponse:
        return await batch(request, "dataset", f"{ns}/{name}")

    @app.post("/{ns}/{name}.git/info/lfs/objects/batch")
    async def batch_model(request: Request, ns: str, name: str) -> JSONResponse:
        return await batch(request, "model", f"{ns}/{name}")

    @app.post("/datasets/{ns}/{name}.git/info/lfs/objects/verify")
    async def verify_dataset(request: Request, ns: str, name: str) -> dict:
        return await verify(request, "dataset", f"{ns}/{name}")

    @app.post("/{ns}/{name}.git/info/lfs/objects/verify")
    async def verify_model(request: Request, ns: str, name: str) -> dict:
        return await verify(request, "model", f"{ns}/{name}")

    @app.put("/lfs-upload/{oid}")
    async def upload(request: Request, oid: str) -> dict:
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"Uploaded bytes do not hash to {oid}")
        hub.store.put_blob(data)
        return {}
