"""The installed `speechpeft` console script, run as a user would run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from speechpeft.backbones import BACKBONES
from speechpeft.cli import main

SPEECHPEFT = Path(sys.executable).parent / "speechpeft"  # the console script beside this interpreter


def run(*args: str) -> subprocess.CompletedProcess:
    assert SPEECHPEFT.exists(), "the console script is not installed: run `make setup`"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([SPEECHPEFT, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize(
    "command", [(), ("backbones",), ("backbones", "list"), ("backbones", "info"), ("data",), ("data", "synth")]
)
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: speechpeft"), result.stderr


def test_backbones_list_json_names_every_family():
    result = run("backbones", "list", "--json")
    families = {entry["family"]: entry for entry in json.loads(result.stdout)}
    assert set(families) == set(BACKBONES.names())
    assert families["speecht5"]["tasks"]["tts"]["model_class"] == "SpeechT5ForTextToSpeech"


def test_backbones_list_table(capsys):
    assert main(["backbones", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["family", "tasks", "sample", "rate", "examples"]
    assert any(line.startswith("whisper ") and "asr, classify" in line for line in lines)


def test_backbones_info_of_a_checkpoint_counts_parameters_without_loading(tiny_backbone_dirs, capsys):
    import transformers

    path = tiny_backbone_dirs["whisper"]
    assert main(["backbones", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    expected = transformers.WhisperForConditionalGeneration.from_pretrained(path).num_parameters()
    assert info["family"] == "whisper" and info["parameters"] == expected


def test_backbones_info_of_a_family(capsys):
    assert main(["backbones", "info", "wavlm"]) == 0
    out = capsys.readouterr().out
    assert "family: wavlm" in out and "lora: intermediate_dense, output_dense" in out


def test_unknown_family_is_one_line_naming_the_fix(capsys):
    assert main(["backbones", "info", "openai/whisper-nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speechpeft: error: backbone 'openai/whisper-nonexistent' is not a local directory")
    assert "Traceback" not in err


def test_data_synth_bad_flags_exit_2_with_the_reason():
    result = run("data", "synth", "--out", "x")
    assert result.returncode == 2 and "give exactly one of --utterances N or --hours H" in result.stderr


def test_data_synth_writes_a_loadable_dataset(tmp_path):
    out = tmp_path / "corpus"
    result = run("data", "synth", "--utterances", "8", "--voices", "adapt", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    corpus = datasets.load_from_disk(str(out))
    assert sum(len(split) for split in corpus.values()) == 8
    assert set(corpus["adapt"]["voice_group"]) == {"adapt"}
    again = run("data", "synth", "--utterances", "8", "--voices", "adapt", "--out", str(out))
    assert again.returncode == 2 and "already holds a dataset: pass --overwrite" in again.stderr


def _raising(error: Exception):
    def command(args):
        raise error

    return command


def test_a_library_error_is_one_line_saying_how_to_see_the_traceback(monkeypatch, capsys):
    from speechpeft import commands

    monkeypatch.setattr(commands, "backbones_list", _raising(ValueError("shapes (2, 3) and (4,) do not match")))
    assert main(["backbones", "list"]) == 1
    assert capsys.readouterr().err == (
        "speechpeft: error: unexpected ValueError: shapes (2, 3) and (4,) do not match "
        "(not an input check; rerun with -v for the traceback)\n"
    )


@pytest.mark.parametrize(
    "argv", [["backbones", "list", "-v"], ["backbones", "-v", "list"], ["backbones", "list", "--verbose"]]
)
def test_verbose_after_the_command_shows_the_traceback(monkeypatch, argv):
    from speechpeft import commands

    monkeypatch.setattr(commands, "backbones_list", _raising(ValueError("shapes do not match")))
    with pytest.raises(ValueError, match="shapes do not match"):
        main(argv)


def test_a_user_error_is_one_line_with_exit_2(monkeypatch, capsys):
    from speechpeft import commands
    from speechpeft.errors import UserError

    message = "no corpus in ./corpus: build one with `speechpeft data synth --out ./corpus`"
    monkeypatch.setattr(commands, "backbones_list", _raising(UserError(message)))
    assert main(["backbones", "list"]) == 2
    assert capsys.readouterr().err == f"speechpeft: error: {message}\n"


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["backbones", "info", "wavlm", "-v"], True),
        (["train", "--task", "asr", "--out", "adapter", "-v"], True),
        (["train", "-v", "--task", "asr", "--out", "adapter"], True),
        (["eval", "--adapter", "adapter", "--verbose"], True),
        (["data", "synth", "--out", "corpus", "--utterances", "8", "-v"], True),
        (["adapters", "list", "-v"], True),
        (["backbones", "pretrain", "tiny-whisper", "--corpus", "corpus", "--out", "run", "-v"], True),
        (["-v", "train", "--task", "asr", "--out", "adapter"], True),  # the subcommand must not reset it
        (["train", "--task", "asr", "--out", "adapter"], False),
    ],
)
def test_verbose_is_accepted_before_and_after_every_command(argv, verbose):
    from speechpeft.cli import build_parser

    assert build_parser().parse_args(argv).verbose is verbose


def test_verbose_after_train_reaches_the_command(monkeypatch, tmp_path, capsys):
    from speechpeft import commands

    seen = []
    monkeypatch.setattr(commands, "train_adapter", seen.append)
    assert main(["train", "--task", "asr", "--out", str(tmp_path / "adapter"), "-v"]) == 0
    assert seen[0].verbose is True and seen[0].options.out == tmp_path / "adapter"
    assert main(["backbones", "info", "wavlm", "-v"]) == 0
    assert "family: wavlm" in capsys.readouterr().out
