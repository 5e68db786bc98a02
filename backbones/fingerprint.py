"""A fingerprint of a backbone's weight files, recorded with every adapter trained on it.

An adapter only means something on the exact weights it was trained on: `speechpeft.json` keeps this
hash so loading an adapter onto other weights can be detected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time


def weights_fingerprint(directory: str | Path) -> str:
    """sha256 over the directory's safetensors files (names and bytes, in name order)."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {directory}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def local_weights_dir(source: str) -> Path | None:
    """The local directory holding `source`'s weights: itself, or its Hugging Face cache snapshot."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True, allow_patterns=["*.safetensors", "*.json"]))
    except Exception:  # not cached: no fingerprint rather than a failed training run
        return None


def check_trained_on(record: dict, source: str, adapter: str | Path) -> None:
    """Refuse an adapter (its `speechpeft.json` record) trained on other weights than those at `source`.

    Raises InputError naming the adapter; passes when either side has no local weights to fingerprint.
    """
    from speechpeft.errors import InputError

    weights = local_weights_dir(source)
    expected = record.get("backbone_fingerprint")
    if expected and weights and weights_fingerprint(weights) != expected:
        raise InputError(
            f"adapter {adapter} was trained on other weights of {record['backbone']!r} (fingerprint "
            f"{expected[:19]}...): load it on the backbone it was trained on"
        )
