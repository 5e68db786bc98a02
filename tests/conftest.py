"""Shared fixtures. The suite is offline and CPU-only unless a test is marked otherwise."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import reads it
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# TTS scoring listens with the fast scratch-trained tiny-whisper (also in subprocesses); tests/tasks/test_tts.py
# runs the real default listener, openai/whisper-tiny.en, by name
os.environ.setdefault("SPEECHPEFT_TTS_LISTENER", "speechpeft/tiny-whisper")

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from tests import tiny_backbones

if TYPE_CHECKING:  # a local Hugging Face Hub for publish/pull tests, imported lazily: FastAPI and uvicorn
    from tests.hub_server import LocalHub

BACKBONE_FAMILIES = ("whisper", "speecht5", "wav2vec2", "hubert", "wavlm")


@pytest.fixture(scope="session")
def tiny_backbone_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved tiny random checkpoint per backbone family (two for SpeechT5, as on the Hub), built once."""
    root = tmp_path_factory.mktemp("backbones")
    return {
        "whisper": tiny_backbones.save_tiny_whisper(root / "whisper"),
        "speecht5": tiny_backbones.save_tiny_speecht5(root / "speecht5"),
        "speecht5-asr": tiny_backbones.save_tiny_speecht5(root / "speecht5-asr", "asr"),
        **{f: tiny_backbones.save_tiny_ssl_encoder(root / f, f) for f in ("wav2vec2", "hubert", "wavlm")},
        "fastspeech2_conformer": tiny_backbones.save_tiny_fastspeech2(root / "fastspeech2_conformer"),
    }


def checkpoint_for(dirs: dict[str, Path], family: str, task: str) -> Path:
    return dirs.get(f"{family}-{task}", dirs[family])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_net = pytest.mark.skip(reason="needs the Hugging Face Hub (set SPEECHPEFT_NETWORK_TESTS=1)")
    network = os.environ.get("SPEECHPEFT_NETWORK_TESTS") == "1"
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "network" in item.keywords and not network:
            item.add_marker(skip_net)


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator["LocalHub"]:
    """A started `LocalHub(tmp_path / "hub")`, with huggingface_hub online for the test: the suite sets
    HF_HUB_OFFLINE=1, which huggingface_hub reads from `huggingface_hub.constants` at call time and PEFT from the
    environment. Pass `endpoint=local_hub.endpoint` in-process; give subprocesses `local_hub.env()`."""
    from huggingface_hub import constants

    from tests.hub_server import LocalHub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with LocalHub(tmp_path / "hub") as hub:
        yield hub


# Property-based tests (tests/reliability/test_properties.py): the same bounded examples on every run, no
# per-example deadline (the first call of a validator may import torch). HYPOTHESIS_PROFILE=dev explores more.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True, database=None)
settings.register_profile("dev", max_examples=1000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
