"""A local server speaking the Hugging Face Hub's HTTP API (as huggingface_hub 2.4 calls it), for tests.

`LocalHub(root)` serves repos stored under `root` on 127.0.0.1 from a uvicorn thread; an unmodified
`HfApi(endpoint=hub.endpoint, token=hub.token)` (or `HF_ENDPOINT=hub.endpoint` in a subprocess) creates repos,
uploads, lists and downloads against it. Storage: `root/blobs/<sha256>` holds every file's bytes once,
`root/<type>s/<namespace>/<name>/repo.json` a repo's visibility, branches and commits (each commit maps paths to
blob entries), so every revision stays readable by its sha. Xet is never served: preupload answers "regular", or
"lfs" for `*.safetensors` with `lfs=True`, the legacy LFS basic transfer of `tests/hub_server_lfs.py`, used by
clients with `HF_HUB_DISABLE_XET=1`.
"""

import base64
import fnmatch
import hashlib
import json
import re
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

USER = "local-user"
REPO_TYPES = {"models": "model", "datasets": "dataset"}
URL_PREFIX = {"model": "", "dataset": "datasets/"}
LFS_PATTERNS = ("*.safetensors",)
# What a new Hub repo's first commit holds (the Hub's list is longer: these are the patterns the tests meet)
GITATTRIBUTES = b"".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n".encode() for p in ("*.bin", "*.pt", "*.safetensors", "*.ckpt")
)


class HubError(Exception):
    """An error answered the Hub's way: JSON `{"error": message}` plus `X-Error-Code`/`X-Error-Message` headers."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit

    def response(self) -> JSONResponse:
        headers = {"X-Error-Message": self.message.encode("ascii", "replace").decode()}
        if self.code:
            headers["X-Error-Code"] = self.code
        if self.commit:
            headers["X-Repo-Commit"] = self.commit
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def now() -> str:
    """The current UTC time in the Hub's format, e.g. `2026-11-30T14:17:00.123Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_sha1(data: bytes) -> str:
    """Git's object id for a blob holding `data`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def card_data(readme: bytes | None) -> dict | None:
    """A README's YAML front matter as a dict (None without one); raises yaml.YAMLError when it is not YAML."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", (readme or b"").decode(errors="replace"), re.DOTALL)
    data = yaml.safe_load(match.group(1)) if match else None
    return json.loads(json.dumps(data, default=str)) if isinstance(data, dict) else None


class Store:
    """Repos on disk: a content-addressed blob folder and one `repo.json` per repo."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def _meta_path(self, repo_type: str, repo_id: str) -> Path:
        if not re.fullmatch(r"[\w-][\w.-]*/[\w-][\w.-]*", repo_id) or repo_id.endswith(".git"):
            raise HubError(400, f"Invalid repo id {repo_id!r}: expected namespace/name")
        return self.root / f"{repo_type}s" / repo_id / "repo.json"

    def load(self, repo_type: str, repo_id: str) -> dict | None:
        path = self._meta_path(repo_type, repo_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, repo_type: str, repo_id: str, meta: dict) -> None:
        path = self._meta_path(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(meta, indent=1))
        path.with_suffix(".tmp").replace(path)

    def delete(self, repo_type: str, repo_id: str) -> None:
        self._meta_path(repo_type, repo_id).unlink()

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.blob(sha256).is_file():
            self.blob(sha256).with_suffix(".tmp").write_bytes(data)
            self.blob(sha256).with_suffix(".tmp").replace(self.blob(sha256))
        return sha256

    def entry(self, data: bytes, lfs: bool = False) -> dict:
        """Store `data`; its file entry (git oid of the content, or of the LFS pointer)."""
        sha256 = self.put_blob(data)
        oid = git_blob_sha1(lfs_pointer(sha256, len(data)) if lfs else data)
        return {"sha256": sha256, "size": len(data), "oid": oid, "lfs": lfs}

    def read(self, entry: dict | None) -> bytes | None:
        return self.blob(entry["sha256"]).read_bytes() if entry else None


def new_commit(meta: dict, branch: str, files: dict[str, dict], title: str) -> str:
    """Record a commit of `files` on `branch` (its parent is the branch head); returns its sha."""
    parent = meta["branches"].get(branch)
    stamp = json.dumps([parent, sorted((p, e["oid"]) for p, e in files.items()), title, time.time_ns()])
    sha = hashlib.sha1(stamp.encode()).hexdigest()
    meta["commits"][sha] = {"parent": parent, "title": title, "date": now(), "files": files}
    meta["branches"][branch] = sha
    return sha


def resolve(meta: dict, revision: str) -> str:
    """The commit sha a branch name or sha points at; 404 RevisionNotFound otherwise."""
    sha = meta["branches"].get(revision, revision)
    if sha not in meta["commits"]:
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    return sha


class LocalHub:
    """Hub HTTP API on 127.0.0.1, repos stored under `root`."""

    page_size = 1000  # entries per page of a tree listing, as on the Hub (lower it to exercise pagination)

    def __init__(
        self, root: Path, token: str = "hf_local_test_token", lfs: bool = False, lifetime_s: float = 1800.0
    ) -> None:
        self.root, self.token, self.lfs, self.lifetime_s = Path(root), token, lfs, lifetime_s
        self.store = Store(self.root)
        self.requests: list[tuple[str, str]] = []
        self.endpoint = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.app = build_app(self)

    def __enter__(self) -> "LocalHub":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._logged, interface="asgi3", log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self._stop_soon)
        self._timer.daemon = True
        self._timer.start()
        self._wait_until_up(deadline=time.monotonic() + 20)
        return self

    def _wait_until_up(self, deadline: float) -> None:
        while not (self._server and self._server.started):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("LocalHub: uvicorn did not start")
            time.sleep(0.02)
        httpx.get(f"{self.endpoint}/api/health", timeout=5).raise_for_status()
        self.requests.clear()

    def _stop_soon(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._stop_soon()
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def _logged(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should use this hub by default (`HF_ENDPOINT`, token, online)."""
        return {"HF_ENDPOINT": self.endpoint, "HF_TOKEN": self.token, "HF_HUB_OFFLINE": "0"}

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Every file of a repo at `revision` (branch or sha), read straight from disk, for assertions."""
        meta = self.store.load(repo_type, repo_id)
        sha = meta and meta["branches"].get(revision, revision)
        if sha not in (meta or {}).get("commits", {}):
            raise KeyError(f"no {repo_type} repo {repo_id} at revision {revision}")
        files = meta["commits"][sha]["files"]
        return {path: self.store.blob(e["sha256"]).read_bytes() for path, e in sorted(files.items())}

    # -- helpers for the routes --------------------------------------------------------------------------------

    def authorized(self, request: Request, required: bool) -> bool:
        """Whether the request carries our token; 401 for any other token, or for none when `required`."""
        auth = request.headers.get("authorization", "")
        if not auth:
            if required:
                raise HubError(401, "Invalid username or password.")
            return False
        if auth != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return True

    def repo(self, request: Request, repo_type: str, repo_id: str, write: bool = False) -> dict:
        """A repo's metadata; 404 RepoNotFound when missing, or private and the token is missing."""
        authed = self.authorized(request, required=write)
        meta = self.store.load(repo_type, repo_id)
        if meta is None or (meta["private"] and not authed):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return meta

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"

    def preupload_answer(self, path: str, entry: dict | None) -> dict:
        """How to upload `path`: "lfs" for `LFS_PATTERNS` with `lfs=True`, else "regular"; `oid` of the stored file
        (sha256 for LFS, git sha1 otherwise), which the client compares to skip unchanged files."""
        lfs = self.lfs and any(fnmatch.fnmatch(Path(path).name, p) for p in LFS_PATTERNS)
        oid = None if entry is None else entry["sha256"] if entry["lfs"] else entry["oid"]
        return {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}


def repo_type_of(plural: str) -> str:
    if plural not in REPO_TYPES:
        raise HubError(404, f"Unknown repo type {plural}")
    return REPO_TYPES[plural]


def build_app(hub: LocalHub) -> FastAPI:
    """The FastAPI app of `hub`: repo management, info, tree, preupload, commit, resolve (+ LFS) routes."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_exception_handler(HubError, lambda _request, exc: exc.response())
    app.add_exception_handler(RequestValidationError, lambda _r, exc: HubError(400, str(exc)).response())
    # Anything else would be a 500, which the client retries five times with backoff: answer 400 at once
    app.add_exception_handler(Exception, lambda _r, exc: HubError(400, f"LocalHub error: {exc!r}").response())
    add_repo_routes(app, hub)
    add_info_routes(app, hub)
    add_commit_routes(app, hub)
    add_resolve_routes(app, hub)
    from tests.hub_server_lfs import add_lfs_routes  # it imports this module

    add_lfs_routes(app, hub)
    return app


def body_repo(body: dict) -> tuple[str, str, dict]:
    """Repo type, id and body of a create/delete request (`name`, `organization`: the user's namespace if None)."""
    return body.get("type") or "model", f"{body.get('organization') or USER}/{body['name']}", body


def add_repo_routes(app: FastAPI, hub: LocalHub) -> None:
    """Health, whoami, create/delete repo, create branch, validate-yaml."""

    @app.get("/api/health")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/api/whoami-v2")
    async def whoami(request: Request) -> dict:
        hub.authorized(request, required=True)
        auth = {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}
        return {"type": "user", "id": "0" * 24, "name": USER, "fullname": "Local User", "orgs": [], "auth": auth}

    @app.post("/api/repos/create")
    async def create_repo(request: Request) -> JSONResponse:
        hub.authorized(request, required=True)
        repo_type, repo_id, body = body_repo(await request.json())
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"LocalHub serves model and dataset repos, not {repo_type}")
        url = hub.repo_url(repo_type, repo_id)
        if hub.store.load(repo_type, repo_id) is not None:
            return JSONResponse({"error": f"You already created this {repo_type} repo", "url": url}, status_code=409)
        private = bool(body.get("private")) or body.get("visibility") == "private"
        meta = {"private": private, "createdAt": now(), "branches": {}, "commits": {}}
        new_commit(meta, "main", {".gitattributes": hub.store.entry(GITATTRIBUTES)}, "initial commit")
        hub.store.save(repo_type, repo_id, meta)
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    @app.delete("/api/repos/delete")
    async def delete_repo(request: Request) -> dict:
        repo_type, repo_id, _ = body_repo(await request.json())
        hub.repo(request, repo_type, repo_id, write=True)
        hub.store.delete(repo_type, repo_id)
        return {}

    @app.post("/api/{plural}/{ns}/{name}/branch/{branch}")
    async def create_branch(request: Request, plural: str, ns: str, name: str, branch: str) -> dict:
        repo_type, repo_id = repo_type_of(plural), f"{ns}/{name}"
        body = await request.json() if await request.body() else {}
        meta = hub.repo(request, repo_type, repo_id, write=True)  # no await from here on: no interleaved commit
        if branch in meta["branches"]:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        meta["branches"][branch] = resolve(meta, body.get("startingPoint") or "main")
        hub.store.save(repo_type, repo_id, meta)
        return {}

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            card_data(body.get("content", "").encode())
        except yaml.YAMLError as exc:
            return JSONResponse({"errors": [{"message": str(exc)}], "warnings": []}, status_code=400)
        return JSONResponse({"errors": [], "warnings": []})


def sibling(path: str, entry: dict, blobs: bool) -> dict:
    """One `siblings` item of a model/dataset info (sizes and LFS info only with `?blobs=true`)."""
    if not blobs:
        return {"rfilename": path}
    pointer_size = len(lfs_pointer(entry["sha256"], entry["size"]))
    lfs = {"sha256": entry["sha256"], "size": entry["size"], "pointerSize": pointer_size}
    return {"rfilename": path, "size": entry["size"], "blobId": entry["oid"], "lfs": lfs if entry["lfs"] else None}


def tree_item(path: str, entry: dict | None) -> dict:
    """One item of a tree listing: a file (with `lfs` for LFS files) or, for `entry=None`, a directory."""
    if entry is None:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    item = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
    if entry["lfs"]:
        pointer_size = len(lfs_pointer(entry["sha256"], entry["size"]))
        item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": pointer_size}
    return item


def tree_items(files: dict[str, dict], folder: str, recursive: bool) -> list[dict]:
    """The files and directories under `folder` ("" = root), sorted by path; all depths when `recursive`."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    items: dict[str, dict | None] = {}
    for path, entry in files.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            items.setdefault(prefix + "/".join(parts[:i]), None)
        if recursive or len(parts) == 1:
            items[path] = entry
    if prefix and not items:
        raise HubError(404, f"{folder} does not exist", "EntryNotFound")
    return [tree_item(path, items[path]) for path in sorted(items)]


def add_info_routes(app: FastAPI, hub: LocalHub) -> None:
    """`GET /api/{models|datasets}/{repo}[/revision/{rev}]`, `.../commits/{rev}` and `.../tree/{rev}[/{path}]`."""

    def info(request: Request, plural: str, repo_id: str, revision: str) -> dict:
        repo_type = repo_type_of(plural)
        meta = hub.repo(request, repo_type, repo_id)
        sha = resolve(meta, revision)
        files = meta["commits"][sha]["files"]
        card = card_data(hub.store.read(files.get("README.md")))
        blobs = request.query_params.get("blobs", "").lower() == "true"
        out = {
            "_id": sha[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "private": meta["private"],
            "lastModified": meta["commits"][sha]["date"],
            "createdAt": meta["createdAt"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list((card or {}).get("tags") or []),
            "siblings": [sibling(p, e, blobs) for p, e in sorted(files.items())],
            "usedStorage": sum(e["size"] for e in files.values()),
        }
        if card is not None:
            out["cardData"] = card
            out.update({k: card[k] for k in ("library_name", "pipeline_tag") if k in card and repo_type == "model"})
        return out

    @app.get("/api/{plural}/{ns}/{name}")
    async def repo_info(request: Request, plural: str, ns: str, name: str) -> dict:
        return info(request, plural, f"{ns}/{name}", "main")

    @app.get("/api/{plural}/{ns}/{name}/revision/{revision}")
    async def repo_info_at(request: Request, plural: str, ns: str, name: str, revision: str) -> dict:
        return info(request, plural, f"{ns}/{name}", revision)

    @app.get("/api/{plural}/{ns}/{name}/commits/{revision}")
    async def commits(request: Request, plural: str, ns: str, name: str, revision: str) -> list[dict]:
        meta = hub.repo(request, repo_type_of(plural), f"{ns}/{name}")
        sha, history = resolve(meta, revision), []
        while sha is not None:
            commit = meta["commits"][sha]
            author = [{"user": USER}]
            history.append(
                {"id": sha, "title": commit["title"], "message": "", "date": commit["date"], "authors": author}
            )
            sha = commit["parent"]
        return history

    @app.get("/api/{plural}/{ns}/{name}/tree/{revision}")
    @app.get("/api/{plural}/{ns}/{name}/tree/{revision}/{folder:path}")
    async def tree(request: Request, plural: str, ns: str, name: str, revision: str, folder: str = "") -> Response:
        meta = hub.repo(request, repo_type_of(plural), f"{ns}/{name}")
        files = meta["commits"][resolve(meta, revision)]["files"]
        recursive = request.query_params.get("recursive", "").lower() == "true"
        items = tree_items(files, folder, recursive)
        start = int(request.query_params.get("cursor", "0"))
        page, headers = items[start : start + hub.page_size], {}
        if start + hub.page_size < len(items):
            next_url = request.url.include_query_params(cursor=str(start + hub.page_size))
            headers["Link"] = f'<{next_url}>; rel="next"'
        return JSONResponse(page, headers=headers)


def add_commit_routes(app: FastAPI, hub: LocalHub) -> None:
    """`POST /api/{models|datasets}/{repo}/preupload/{rev}` and `.../commit/{rev}` (NDJSON)."""

    @app.post("/api/{plural}/{ns}/{name}/preupload/{revision}")
    async def preupload(request: Request, plural: str, ns: str, name: str, revision: str) -> dict:
        meta = hub.repo(request, repo_type_of(plural), f"{ns}/{name}", write=True)
        sha = resolve(meta, revision)
        files = meta["commits"][sha]["files"]
        answers = [
            hub.preupload_answer(item["path"], files.get(item["path"])) for item in (await request.json())["files"]
        ]
        return {"files": answers, "commitOid": sha}

    @app.post("/api/{plural}/{ns}/{name}/commit/{revision}")
    async def commit(request: Request, plural: str, ns: str, name: str, revision: str) -> dict:
        repo_type, repo_id = repo_type_of(plural), f"{ns}/{name}"
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        meta = hub.repo(request, repo_type, repo_id, write=True)  # no await from here on: no interleaved commit
        if request.query_params.get("create_pr"):
            raise HubError(400, "LocalHub does not serve pull requests")
        if revision not in meta["branches"]:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        head = meta["branches"][revision]
        if header.get("parentCommit") not in (None, head):
            raise HubError(412, f"A commit has happened since. Please refresh and try again. (head is {head})")
        files = dict(meta["commits"][head]["files"])
        for line in lines:
            apply_operation(hub, files, line["key"], line["value"])
        sha = new_commit(meta, revision, files, header.get("summary", ""))
        hub.store.save(repo_type, repo_id, meta)
        return {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{hub.repo_url(repo_type, repo_id)}/commit/{sha}",
            "commitMessage": header.get("summary", ""),
            "hookOutput": "",
        }


def apply_operation(hub: LocalHub, files: dict[str, dict], key: str, value: dict) -> None:
    """Apply one NDJSON commit line (`file`, `lfsFile`, `deletedFile`, `deletedFolder`) to a path -> entry map."""
    path = value.get("path", "")
    if key != "header" and (not path or path.startswith("/") or ".." in path.split("/")):
        raise HubError(400, f"Invalid path in commit: {path!r}")
    if key == "file":
        files[path] = hub.store.entry(base64.b64decode(value["content"]))
    elif key == "lfsFile":
        blob = hub.store.blob(value["oid"])
        if not blob.is_file() or value.get("size", blob.stat().st_size) != blob.stat().st_size:
            raise HubError(400, f"LFS object {value['oid']} of {path} was never uploaded")
        files[path] = hub.store.entry(blob.read_bytes(), lfs=True)
    elif key == "deletedFile":
        if files.pop(path, None) is None:
            raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
    elif key == "deletedFolder":
        for name in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
            del files[name]
    elif key != "header":
        raise HubError(400, f"Unknown commit operation {key}")


def add_resolve_routes(app: FastAPI, hub: LocalHub) -> None:
    """`HEAD`/`GET /{repo}/resolve/{rev}/{path}` and `/datasets/{repo}/resolve/...`, served directly (no redirect)."""

    def serve(request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> FileResponse:
        meta = hub.repo(request, repo_type, repo_id)
        sha = resolve(meta, revision)
        entry = meta["commits"][sha]["files"].get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit=sha)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        return FileResponse(hub.store.blob(entry["sha256"]), headers=headers, media_type="application/octet-stream")

    @app.api_route("/datasets/{ns}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    async def resolve_dataset(request: Request, ns: str, name: str, revision: str, path: str) -> FileResponse:
        return serve(request, "dataset", f"{ns}/{name}", revision, path)

    @app.api_route("/{ns}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
    async def resolve_model(request: Request, ns: str, name: str, revision: str, path: str) -> FileResponse:
        return serve(request, "model", f"{ns}/{name}", revision, path)
