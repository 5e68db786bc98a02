"""The server reads adapters from its store (or the Hub), never from a path a client sends: an absolute path, `..`,
a link out of the store, or a store name that is also a directory where the server runs, as a request's `model` or
in POST /v1/adapters, is refused with OpenAI's error shape, loads nothing, and the server keeps serving.

A real uvicorn server on 127.0.0.1 over a real `AdapterBank` on the shipped tiny-whisper, with seeded random LoRA
adapters in the store and outside it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from speechpeft.adapters.bank import AdapterBank
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.hub import PublishWarning, publish_adapter
from speechpeft.server import create_app, decode_audio
from tests.audio import spoken_file
from tests.serving import serving

pytestmark = pytest.mark.slow

KEY = "paths-test-key"
WHISPER = "speechpeft/tiny-whisper"
STORED, PRELOADED = "asr/lora-a", "operator-chosen"  # PRELOADED: a directory outside the store, as `--adapters`
WAIT = 60  # seconds: the longest any request may take


@dataclass
class Served:
    bank: AdapterBank
    url: str
    store: Path
    outside: Path  # an adapter directory outside the store, which no client may load
    clip: bytes
    expected: str  # STORED's transcript of the clip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store, elsewhere = tmp_path_factory.mktemp("store"), tmp_path_factory.mktemp("elsewhere")
    outside = elsewhere / "lora-x"
    save_random_adapters(load_frozen(WHISPER, "asr", "fp32"), "lora", [store / STORED, outside, elsewhere / PRELOADED],
                         task="asr", scale=0.2, backbone_name=WHISPER)  # fmt: skip
    (store / "asr/link").symlink_to(outside, target_is_directory=True)
    bank = AdapterBank(store, device="cpu", precision="fp32", default_backbone=WHISPER)
    bank.load(elsewhere / PRELOADED, pin=True)  # what `speechpeft serve --adapters DIR` does
    clip = spoken_file("turn on the kitchen lights", tmp_path_factory.mktemp("clip")).read_bytes()
    expected = bank.transcribe(decode_audio(clip), adapter=STORED)
    with serving(create_app(bank, api_key=KEY)) as url:
        yield Served(bank, url, store, outside, clip, expected)


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT) as client:
        yield client


def transcribe(http: httpx.Client, served: Served, model: str) -> httpx.Response:
    return http.post("/v1/audio/transcriptions", files={"file": ("clip.flac", served.clip)}, data={"model": model})


def assert_refused(response: httpx.Response, status: int = 403, code: str = "model_not_allowed") -> None:
    """OpenAI's error shape, with our code and a reason that says what to do."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error", error
    assert error["code"] == code and "store" in error["message"], error


def assert_still_serving(http: httpx.Client, served: Served) -> None:
    """STORED answers with its own transcript, and nothing from outside the store is resident."""
    assert transcribe(http, served, STORED).json() == {"text": served.expected}
    assert {info.path for info in served.bank.resident()} <= {
        str(served.store / STORED), str(served.outside.parent / PRELOADED),
    }  # fmt: skip


def traversals(served: Served) -> list[str]:
    """Names that lead to the adapter outside the store, or out of it, as paths do."""
    climb = "../" * len(served.store.parts)
    return [
        str(served.outside), f"{served.store}/../{served.outside.parent.name}/lora-x", f"{climb}etc",
        f"asr/../../{served.outside.parent.name}/lora-x", f"./{STORED}", "~/lora-x", f"{climb}{served.outside}",
        "hf://../../etc", f"file://{served.outside}",
    ]  # fmt: skip


def test_a_path_as_model_is_refused_on_every_route(served: Served, http: httpx.Client) -> None:
    for model in traversals(served):
        assert_refused(transcribe(http, served, model))
        files = {"file": ("clip.flac", served.clip)}
        assert_refused(http.post("/v1/classify", files=files, data={"model": model}))
        assert_refused(http.post("/v1/audio/speech", json={"model": model, "input": "yes"}))
    assert_still_serving(http, served)


def test_the_openai_client_gets_a_permission_error(served: Served, http: httpx.Client) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0, timeout=WAIT)
    with pytest.raises(openai.PermissionDeniedError, match="never by path"):
        client.audio.transcriptions.create(model=str(served.outside), file=("clip.flac", served.clip))
    assert client.audio.transcriptions.create(model=STORED, file=("clip.flac", served.clip)).text == served.expected


def test_a_link_out_of_the_store_is_refused(served: Served, http: httpx.Client) -> None:
    response = transcribe(http, served, "asr/link")
    assert 400 <= response.status_code < 500 and "error" in response.json(), response.text
    assert_still_serving(http, served)


def test_a_store_name_that_is_also_a_directory_where_the_server_runs_is_refused(
    served: Served, http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bank tries a name as a path (from the working directory) before the store: the server must not let it."""
    shutil.copytree(served.outside, tmp_path / "asr/shadow")
    monkeypatch.chdir(tmp_path)
    assert_refused(transcribe(http, served, "asr/shadow"))
    assert_refused(http.post("/v1/adapters", json={"name": "asr/shadow"}))
    assert_still_serving(http, served)


def test_post_adapters_refuses_a_path_and_a_name_that_is_one(served: Served, http: httpx.Client) -> None:
    by_path = http.post("/v1/adapters", json={"name": "x", "path": str(served.outside)})
    assert_refused(by_path, code="adapter_paths_off")
    for name in traversals(served):
        assert_refused(http.post("/v1/adapters", json={"name": name}))
    assert http.post("/v1/adapters", json={"name": STORED}).json()["path"] == str(served.store / STORED)
    assert_still_serving(http, served)


def test_the_operators_adapters_serve_by_name_not_by_path(served: Served, http: httpx.Client) -> None:
    assert transcribe(http, served, PRELOADED).status_code == 200
    assert_refused(transcribe(http, served, str(served.outside.parent / PRELOADED)))


def test_paths_load_where_the_app_allows_them(served: Served) -> None:
    """`create_app(allow_adapter_paths=True)`: the operator trusts every client with the server's files."""
    with serving(create_app(served.bank, allow_adapter_paths=True)) as url, httpx.Client(base_url=url) as http:
        loaded = http.post("/v1/adapters", json={"name": "mine/x", "path": str(served.outside)}, timeout=WAIT)
        assert loaded.json()["path"] == str(served.outside), loaded.text
        assert transcribe(http, served, "mine/x").status_code == 200
        assert http.delete("/v1/adapters/mine/x").status_code == 200


def test_hub_repos_are_pulled_only_where_the_operator_allows_it(
    served: Served, http: httpx.Client, local_hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a client cannot make the server download: a repo the store lacks is a 404 and the Hub hears
    nothing. With `pull_from_hub` the same request pulls it into the store and it answers as the adapter does."""
    with pytest.warns(PublishWarning):  # a random adapter, with no evaluation to report
        publish_adapter(served.outside, "local-user/lora-x", endpoint=local_hub.endpoint, token=local_hub.token)
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    heard = len(local_hub.requests)
    for model in ("local-user/lora-x", "hf://local-user/lora-x"):
        refused = transcribe(http, served, model)
        assert refused.status_code == 404 and "--pull-from-hub" in refused.json()["error"]["message"], refused.text
    assert len(local_hub.requests) == heard and not (served.store / "local-user").exists()
    expected = served.bank.transcribe(decode_audio(served.clip), adapter=str(served.outside))
    try:
        with serving(create_app(served.bank, pull_from_hub=True)) as url, httpx.Client(base_url=url) as client:
            pulled = client.post("/v1/audio/transcriptions", files={"file": ("clip.flac", served.clip)},
                                 data={"model": "local-user/lora-x"}, timeout=WAIT)  # fmt: skip
        assert pulled.json() == {"text": expected}, pulled.text
        assert (served.store / "local-user/lora-x/speechpeft.json").is_file()
    finally:
        for name in ("local-user/lora-x", served.outside.name):
            if name in {info.name for info in served.bank.resident()}:
                served.bank.unload(name)
        shutil.rmtree(served.store / "local-user", ignore_errors=True)
