"""A small intent grid on a tiny test backbone, for the end-to-end leaderboard tests."""

from __future__ import annotations

from pathlib import Path


def small_grid(
    tmp_path: Path, backbone: Path, steps: int = 2, methods: tuple[str, ...] = ("frozen", "prefix")
) -> Path:
    """Write `tmp_path/grid.toml`: intent on 36 synthesised commands, `steps` training steps (validated at the end)
    with each of `methods` at its defaults; returns its path."""
    path = tmp_path / "grid.toml"
    sections = "".join(f"[methods.{name}]\n" for name in methods)
    path.write_text(f"""
data_dir = "{tmp_path / "data"}"
latency_utterances = 1
[corpora.small]
synth = "--utterances 36 --voices adapt --kinds command=1 --splits adapt=0.7 test=0.3 --seed 2"
[tasks.intent]
corpus = "small"
backbones = ["{backbone}"]
train = {{ split = "adapt", steps = {steps}, batch_size = 4, eval_every = {steps} }}
{sections}""")
    return path
