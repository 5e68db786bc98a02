"""Training curves: a JSONL file always (what model cards read), TensorBoard too when it is installed."""

from __future__ import annotations

import json
import time
from pathlib import Path


class CurveLog:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "curves.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(directory / "tensorboard"))
        except ImportError:
            self.board = None

    def log(self, step: int, **values: float) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 1), **values}) + "\n")
        if self.board is not None:
            for name, value in values.items():
                self.board.add_scalar(name, value, step)
            self.board.flush()

    def read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []
