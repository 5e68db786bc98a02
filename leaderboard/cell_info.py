"""What a cell records besides its scores: the run's provenance, peak memory, adapter size."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import threading
from pathlib import Path

import psutil
import torch

from speechpeft.backbones.imported_card import cpu_model, git_commit

PACKAGES = ("speechpeft", "torch", "transformers", "peft", "datasets", "accelerate", "jiwer", "speechmos")
SAMPLE_SECONDS = 0.2


def run_info(record: dict, provenance: dict) -> dict:
    """Git commit, package versions, hardware, and what produced the numbers: the backbone (id, source directory,
    weight fingerprint, precision), the dataset, the window, and for TTS the listener and its fingerprint."""
    keep = ("backbone", "backbone_source", "backbone_fingerprint", "precision")
    return {"git_commit": git_commit(), "versions": versions(), "hardware": hardware(),
            **{k: record.get(k) for k in keep}, "dataset": record["data"]["dataset"],
            "train_options": record.get("options"), **provenance}  # fmt: skip


def versions() -> dict[str, str | None]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def hardware() -> dict:
    """CPU model, cores, torch threads, memory (bytes), the GPU's name when CUDA runs, and the platform."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "memory_bytes": psutil.virtual_memory().total, "gpu": gpu, "platform": platform.platform()}  # fmt: skip


def adapter_bytes(directory: Path) -> int:
    """Bytes of the adapter's weight files (safetensors): what a user downloads to use it."""
    return sum(f.stat().st_size for f in Path(directory).glob("*.safetensors"))


class PeakMemory:
    """Peak memory while the block runs, in bytes: on CUDA the allocator's peak; on the CPU the process's
    resident set, sampled every 0.2 s by a thread (a long-lived worker's `ru_maxrss` never goes down, so it
    would report an earlier cell's peak)."""

    def __enter__(self) -> PeakMemory:
        self.peak_bytes, self._stop = 0, threading.Event()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while True:
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if torch.cuda.is_available():
            self.peak_bytes = torch.cuda.max_memory_allocated()
