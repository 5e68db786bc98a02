"""tests/hub_server.py's LocalHub against the real, unmodified huggingface_hub client (HTTP on 127.0.0.1, no mocks)."""

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from huggingface_hub import (
    HfApi,
    HfFileMetadata,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFolder
from huggingface_hub.utils._runtime import is_xet_available
from safetensors.torch import save_file

from tests.hub_server import GITATTRIBUTES, USER, LocalHub

REPO = f"{USER}/speech-adapter"
README = "---\nlicense: mit\nlibrary_name: peft\ntags:\n- speech\n- lora\n---\n# A LoRA adapter\n"
PULLED = ["adapter_config.json", "adapter_model.safetensors"]


def adapter_folder(folder: Path) -> Path:
    """What a publish uploads: a card with YAML front matter, a JSON config, safetensors weights, a pickle."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(README)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    save_file(
        {"lora_A": torch.arange(12.0).reshape(3, 4), "lora_B": torch.ones(4, 3)}, folder / "adapter_model.safetensors"
    )
    (folder / "training_args.bin").write_bytes(bytes(range(256)) * 3)
    return folder


def local_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def round_trip(hub: LocalHub, tmp_path: Path, repo_type: str) -> tuple[dict[str, bytes], HfApi]:
    """create (twice) -> upload_folder (twice, then unchanged) -> list / info / snapshot / download by old sha."""
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    url = api.create_repo(REPO, repo_type=repo_type)
    assert (url.repo_id, url.repo_type) == (REPO, repo_type)
    assert api.create_repo(REPO, repo_type=repo_type, exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(REPO, repo_type=repo_type)
    assert conflict.value.response.status_code == 409

    folder = adapter_folder(tmp_path / "adapter")
    first_files = local_bytes(folder)
    first = api.upload_folder(folder_path=folder, repo_id=REPO, repo_type=repo_type)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, "peft_type": "LORA"}))
    second = api.upload_folder(folder_path=folder, repo_id=REPO, repo_type=repo_type)
    files = local_bytes(folder)
    assert len(first.oid) == len(second.oid) == 40 and first.oid != second.oid
    assert api.upload_folder(folder_path=folder, repo_id=REPO, repo_type=repo_type).oid == second.oid  # no-op

    assert sorted(api.list_repo_files(REPO, repo_type=repo_type)) == sorted([".gitattributes", *files])
    info = api.repo_info(REPO, repo_type=repo_type, files_metadata=True)
    assert info.sha == second.oid and info.private is False
    assert info.card_data.to_dict()["tags"] == ["speech", "lora"] and info.card_data.license == "mit"
    assert {s.rfilename: s.size for s in info.siblings if s.rfilename in files} == {
        p: len(b) for p, b in files.items()
    }

    cache = tmp_path / "cache"
    snapshot = Path(
        snapshot_download(
            REPO,
            repo_type=repo_type,
            endpoint=hub.endpoint,
            allow_patterns=["*.safetensors", "*.json"],
            cache_dir=cache,
        )
    )
    assert local_bytes(snapshot) == {name: files[name] for name in PULLED}
    old = hf_hub_download(
        REPO, "adapter_config.json", repo_type=repo_type, revision=first.oid, endpoint=hub.endpoint, cache_dir=cache
    )
    assert Path(old).read_bytes() == first_files["adapter_config.json"]

    assert hub.files(REPO, repo_type) == {".gitattributes": hub.files(REPO, repo_type)[".gitattributes"], **files}
    assert hub.files(REPO, repo_type, revision=first.oid)["adapter_config.json"] == first_files["adapter_config.json"]
    commits = api.list_repo_commits(REPO, repo_type=repo_type)
    assert [c.commit_id for c in commits][:2] == [second.oid, first.oid] and commits[-1].title == "initial commit"
    return files, api


def weights_metadata(hub: LocalHub, repo_type: str) -> HfFileMetadata:
    url = hf_hub_url(REPO, "adapter_model.safetensors", repo_type=repo_type, endpoint=hub.endpoint)
    return get_hf_file_metadata(url)


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_round_trip_through_the_xet_client_path(local_hub: LocalHub, tmp_path: Path, repo_type: str) -> None:
    """hf_xet installed and enabled: upload_folder takes the streamed pipeline; every file is "regular"."""
    assert is_xet_available() and not constants.HF_HUB_DISABLE_XET
    files, api = round_trip(local_hub, tmp_path, repo_type)
    assert not any("lfs" in path or "xet" in path for _, path in local_hub.requests)
    info = api.repo_info(REPO, repo_type=repo_type, files_metadata=True)
    assert all(s.lfs is None for s in info.siblings)
    meta = weights_metadata(local_hub, repo_type)
    assert meta.etag == hashlib.sha1(b"blob %d\0" % meta.size + files["adapter_model.safetensors"]).hexdigest()


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_round_trip_through_legacy_lfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_type: str) -> None:
    """HF_HUB_DISABLE_XET + lfs=True: the safetensors file goes through the LFS batch API, PUT and verify."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # is_xet_available() reads it at call time
    assert not is_xet_available()
    with LocalHub(tmp_path / "hub", lfs=True) as hub:
        files, api = round_trip(hub, tmp_path, repo_type)
        weights = files["adapter_model.safetensors"]
        sha256 = hashlib.sha256(weights).hexdigest()
        prefix = "/datasets/" if repo_type == "dataset" else "/"
        batch = ("POST", f"{prefix}{REPO}.git/info/lfs/objects/batch")
        lfs_calls = [r for r in hub.requests if "/info/lfs/" in r[1] or r[1].startswith("/lfs-upload/")]
        # Each upload_folder asks the batch API (the client drops unchanged files only after that step), but the
        # bytes go up once: the server answers "already stored" (no actions) for a known object
        assert lfs_calls == [
            batch,
            ("PUT", f"/lfs-upload/{sha256}"),
            ("POST", f"{prefix}{REPO}.git/info/lfs/objects/verify"),
            batch,
            batch,
        ]
        lfs = {s.rfilename: s.lfs for s in api.repo_info(REPO, repo_type=repo_type, files_metadata=True).siblings}
        assert lfs["adapter_model.safetensors"].sha256 == sha256 and lfs["training_args.bin"] is None
        meta = weights_metadata(hub, repo_type)  # X-Linked-Etag / X-Linked-Size, like the Hub's LFS files
        assert (meta.etag, meta.size) == (sha256, len(weights))


def test_private_repos_auth_and_errors(local_hub: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=local_hub.endpoint, token=local_hub.token)
    assert api.whoami()["name"] == USER
    api.create_repo(REPO, private=True)
    api.upload_file(path_or_fileobj=b'{"r": 4}', path_in_repo="adapter_config.json", repo_id=REPO)
    assert api.model_info(REPO).private is True

    anonymous = HfApi(endpoint=local_hub.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(REPO)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "adapter_config.json", endpoint=local_hub.endpoint, token=False, cache_dir=tmp_path)
    path = hf_hub_download(
        REPO, "adapter_config.json", endpoint=local_hub.endpoint, token=local_hub.token, cache_dir=tmp_path
    )
    assert Path(path).read_bytes() == b'{"r": 4}'

    wrong = HfApi(endpoint=local_hub.endpoint, token="hf_wrong_token")
    for write in (
        lambda: wrong.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO),
        lambda: wrong.create_repo(f"{USER}/other"),
        lambda: anonymous.create_repo(f"{USER}/other"),
    ):
        with pytest.raises(HfHubHTTPError) as refused:
            write()
        assert refused.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        wrong.whoami()
    assert list(local_hub.files(REPO)) == [".gitattributes", "adapter_config.json"]

    with pytest.raises(RemoteEntryNotFoundError):
        api.hf_hub_download(REPO, "missing.json", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.hf_hub_download(REPO, "adapter_config.json", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{USER}/missing")
    api.delete_repo(REPO)
    assert not api.repo_exists(REPO)


def test_tree_pagination_folders_and_branches(local_hub: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=local_hub.endpoint, token=local_hub.token)
    api.create_repo(REPO)
    folder = tmp_path / "nested"
    for name in ("a.json", "sub/b.json", "sub/deeper/c.json", "sub/deeper/d.json", "other/e.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    api.upload_folder(folder_path=folder, repo_id=REPO)
    local_hub.page_size, local_hub.requests[:] = 2, []
    assert sorted(api.list_repo_files(REPO)) == sorted([".gitattributes", *local_bytes(folder)])
    assert local_hub.requests == [("GET", f"/api/models/{REPO}/tree/main")] * 5  # 6 files + 3 folders, 2 a page
    top = {e.path: type(e) for e in api.list_repo_tree(REPO)}
    assert top["sub"] is RepoFolder and top["other"] is RepoFolder and "sub/b.json" not in top
    assert sorted(e.path for e in api.list_repo_tree(REPO, "sub")) == ["sub/b.json", "sub/deeper"]

    api.create_branch(REPO, branch="dev")
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="a.json", repo_id=REPO, revision="dev")
    assert local_hub.files(REPO, revision="dev")["a.json"] == b"dev only"
    assert api.hf_hub_download(REPO, "a.json", cache_dir=tmp_path) and local_hub.files(REPO)["a.json"] == b"a.json"
    api.delete_folder("sub", repo_id=REPO)
    assert sorted(local_hub.files(REPO)) == [".gitattributes", "a.json", "other/e.json"]


def test_concurrent_commits_all_land_and_bad_bodies_fail_fast(local_hub: LocalHub) -> None:
    api = HfApi(endpoint=local_hub.endpoint, token=local_hub.token)
    api.create_repo(REPO)
    with ThreadPoolExecutor(4) as pool:
        commits = list(
            pool.map(
                lambda i: api.upload_file(path_or_fileobj=b"%d" % i, path_in_repo=f"{i}.txt", repo_id=REPO), range(8)
            )
        )
    assert len({c.oid for c in commits}) == 8
    assert local_hub.files(REPO) == {".gitattributes": GITATTRIBUTES, **{f"{i}.txt": b"%d" % i for i in range(8)}}
    auth = {"authorization": f"Bearer {local_hub.token}"}
    started = time.monotonic()  # a handler error is a 400 at once, not a 500 the client would retry with backoff
    answer = httpx.post(f"{local_hub.endpoint}/api/models/{REPO}/commit/main", content=b"not json", headers=auth)
    assert answer.status_code == 400 and "LocalHub error" in answer.json()["error"]
    assert time.monotonic() - started < 2


def test_a_subprocess_downloads_through_hf_endpoint(local_hub: LocalHub, tmp_path: Path) -> None:
    """User code run with HF_ENDPOINT set (no endpoint argument anywhere) reaches the local hub."""
    api = HfApi(endpoint=local_hub.endpoint, token=local_hub.token)
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b'{"r": 2}', path_in_repo="adapter_config.json", repo_id=REPO)
    code = f"import huggingface_hub as h; print(open(h.hf_hub_download({REPO!r}, 'adapter_config.json')).read())"
    env = {**os.environ, **local_hub.env(), "HF_HOME": str(tmp_path / "hf_home")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"r": 2}'
    assert ("GET", f"/{REPO}/resolve/main/adapter_config.json") in local_hub.requests


def test_the_server_answers_only_while_entered(tmp_path: Path) -> None:
    hub = LocalHub(tmp_path / "hub").__enter__()
    assert hub.endpoint.startswith("http://127.0.0.1:")
    with httpx.Client() as client:  # a kept-alive connection must not hold the shutdown up
        assert client.get(f"{hub.endpoint}/api/health").json() == {"ok": True}
        assert hub.requests == [("GET", "/api/health")]
        started = time.monotonic()
        hub.__exit__(None, None, None)
        assert time.monotonic() - started < 5 and not hub._thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{hub.endpoint}/api/health")
