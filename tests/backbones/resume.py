"""One check both TTS recipes' tests use: a run stopped after a checkpoint and resumed ends bit-identical to an
uninterrupted one (weights, optimizer moments and RNG, by the checkpoint's tensors)."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechpeft.backbones.pretrain import loop


def assert_resume_is_exact(pretrain: Callable[[Path], object], tmp_path: Path, monkeypatch) -> None:
    """`pretrain(out)` runs 4 steps with a checkpoint every 2 into `out`; one run goes through, another is stopped
    at its third step (after the step-2 checkpoint, as Ctrl-C would) and run again."""
    pretrain(tmp_path / "whole")
    step = loop._step

    def stop_at_third(recipe_, optimizer, params, index, bf16):
        if index == 2:
            raise KeyboardInterrupt
        return step(recipe_, optimizer, params, index, bf16)

    monkeypatch.setattr(loop, "_step", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "stopped")
    assert json.loads((tmp_path / "stopped" / "checkpoint" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(loop, "_step", step)
    pretrain(tmp_path / "stopped")  # resumes at step 2
    a = load_file(str(tmp_path / "whole" / "checkpoint" / "state.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "checkpoint" / "state.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "stopped" / "checkpoint" / "state.json").read_text())["step"] == 4
