"""The grid: presets, layered settings, flags that narrow it, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechpeft.errors import InputError
from speechpeft.leaderboard.grid import Corpus, load_grid, preset_path
from speechpeft.leaderboard.results import rows
from speechpeft.train_options import TrainOptions

VARIANTS = ["frozen", "full", "lora", "adalora", "prefix", "pfeiffer", "houlsby"]


def test_the_default_preset_is_every_method_on_the_three_tasks_and_real_whisper():
    grid = load_grid(preset_path("default"))
    cells = grid.cells()
    assert len(cells) == 3 * 7 and list(grid.methods) == VARIANTS
    assert {c.backbone for c in cells if c.task in ("asr", "intent")} == {"openai/whisper-tiny.en"}
    assert {c.backbone for c in cells if c.task == "tts"} == {"speechpeft/tiny-speecht5"}
    houlsby = next(c for c in cells if c.variant == "houlsby" and c.task == "asr")
    assert houlsby.settings["method"] == "bottleneck" and houlsby.settings["bottleneck_style"] == "houlsby"
    assert houlsby.id == "asr/openai--whisper-tiny.en/houlsby/seed-0"


def test_quick_preset_uses_the_built_in_backbones():
    cells = load_grid(preset_path("quick")).cells()
    assert {c.backbone for c in cells} == {"speechpeft/tiny-whisper", "speechpeft/tiny-speecht5"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


BASE = """
[corpora.c]
synth = "--utterances 10 --seed 1"
[tasks.asr]
corpus = "c"
backbones = ["b"]
train = { steps = 5, lr = 1e-3 }
[tasks.asr.methods.full]
lr = 1e-5
[methods.frozen]
[methods.full]
lr = 1e-4
"""


def test_a_method_variant_sets_the_peft_knobs_as_train_does(tmp_path):
    knobs = '[methods.lora_wide]\nmethod = "lora"\nrank = 16\nlora_alpha = 32\ntarget_modules = ["all-linear"]\n'
    cell = next(c for c in load_grid(_write(tmp_path, BASE + knobs)).cells() if c.variant == "lora_wide")
    options = TrainOptions(
        task="asr", out=tmp_path / "a", dataset="d", backbone="b", **cell.settings
    ).adapter_options()
    assert (options.rank, options.alpha, options.target_modules) == (16, 32, ("all-linear",))


def test_settings_layer_task_then_method_then_the_tasks_override(tmp_path):
    grid = load_grid(_write(tmp_path, BASE))
    full = next(c for c in grid.cells() if c.variant == "full")
    frozen = next(c for c in grid.cells() if c.variant == "frozen")
    assert full.settings == {"method": "full", "steps": 5, "lr": 1e-5}
    assert frozen.settings == {"method": "frozen", "steps": 5, "lr": 1e-3}


def test_an_unknown_setting_is_refused_naming_the_table_and_the_known_settings(tmp_path):
    with pytest.raises(InputError, match=r"\[methods.full\]: unknown setting learning_rate.*lr"):
        load_grid(_write(tmp_path, BASE.replace("lr = 1e-4", "learning_rate = 1e-4")))


def test_a_task_whose_corpus_is_not_defined_is_refused(tmp_path):
    with pytest.raises(InputError, match="corpus 'd' is not one of"):
        load_grid(_write(tmp_path, BASE.replace('corpus = "c"', 'corpus = "d"')))


def test_bad_toml_and_a_missing_file_say_which_file(tmp_path):
    with pytest.raises(InputError, match="not valid TOML"):
        load_grid(_write(tmp_path, "[tasks"))
    with pytest.raises(InputError, match="no leaderboard config"):
        load_grid(tmp_path / "missing.toml")


def test_flags_narrow_the_grid_and_seeds_multiply_it(tmp_path):
    grid = load_grid(_write(tmp_path, BASE)).narrowed(variants=("full",), backbones=("x", "y"), seeds=3)
    assert [(c.backbone, c.seed) for c in grid.cells()] == [("x", 0), ("x", 1), ("x", 2), ("y", 0), ("y", 1),
                                                            ("y", 2)]  # fmt: skip
    with pytest.raises(InputError, match="unknown method lora: this preset has frozen, full"):
        load_grid(_write(tmp_path, BASE)).narrowed(variants=("lora",))


def test_a_changed_corpus_recipe_gets_a_new_directory():
    one, two = Corpus("c", "--utterances 10"), Corpus("c", "--utterances 11")
    assert one.path(Path("d")) != two.path(Path("d")) and one.path(Path("d")).name.startswith("c-")
    assert one.path(Path("d")) == Corpus("c", "--utterances  10").path(Path("d"))  # same flags, same corpus


def _result(variant: str, seed: int, status: str = "ok", wer: float = 0.2) -> dict:
    score = {"value": wer, "low": wer - 0.05, "high": wer + 0.05}
    return {"task": "asr", "backbone": "b", "variant": variant, "method": variant, "seed": seed, "status": status,
            "id": f"asr/b/{variant}/seed-{seed}",
            "error": {"message": "boom"} if status != "ok" else None,
            "training": {"trainable_parameters": 10, "adapter_bytes": 40, "seconds": 5.0 + seed, "steps": 3},
            "evaluation": {"metrics": {"wer": score}, "groups": {"v": {"utterances": 2, **score}}, "utterances": 4,
                           "latency": {"rtfx": 2.0, "median_seconds": 0.1}, "split": "test"}}  # fmt: skip


def test_rows_pool_seeds_and_mark_partial_and_failed_rows():
    table = rows([_result("lora", 0, wer=0.10), _result("lora", 1, wer=0.14), _result("full", 0, "failed"),
                  _result("prefix", 0), _result("prefix", 1, "failed")])  # fmt: skip
    lora, full, prefix = table
    assert lora["value"] == pytest.approx(0.12) and lora["spread"] == pytest.approx(0.028284, abs=1e-6)
    assert lora["low"] == pytest.approx(0.07) and lora["train_seconds"] == pytest.approx(5.5)
    assert lora["seeds"] == 2 and lora["status"] == "ok"
    assert full["status"] == "failed" and full["value"] is None and full["error"] == "boom"
    assert prefix["status"] == "partial" and prefix["seeds"] == 1 and prefix["spread"] is None


def test_a_misspelt_key_anywhere_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"\[tasks.asr\]: unknown key test-split"):
        load_grid(_write(tmp_path, BASE.replace('corpus = "c"\n', 'corpus = "c"\ntest-split = "x"\n')))
    with pytest.raises(InputError, match="unknown key sedes"):
        load_grid(_write(tmp_path, "sedes = [1]\n" + BASE))
