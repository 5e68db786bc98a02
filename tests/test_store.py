"""The local adapter store: names map to directories below a root the user sets; list, show, rm."""

import json

import pytest
import torch
from safetensors.torch import save_file

from speechpeft.cli import main
from speechpeft.store import adapter_path, list_adapters, resolve_adapter, store_root


def fake_adapter(directory, task="asr", method="lora"):
    """An adapter directory as `speechpeft train` leaves it (record and weights), without training one."""
    directory.mkdir(parents=True)
    save_file({"w": torch.zeros(250)}, str(directory / "adapter_model.safetensors"))
    record = {"task": task, "method": method, "backbone": "speechpeft/tiny-whisper", "trainable_parameters": 250,
              "validation": {"wer": 0.25}}  # fmt: skip
    (directory / "speechpeft.json").write_text(json.dumps(record))


def test_store_root_comes_from_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEECHPEFT_ADAPTERS", str(tmp_path / "env"))
    assert store_root() == tmp_path / "env" and store_root(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("SPEECHPEFT_ADAPTERS")
    assert store_root().parts[-3:] == ("share", "speechpeft", "adapters")


def test_names_are_checked():
    with pytest.raises(ValueError, match="use lowercase words joined by '/'"):
        adapter_path("ASR/../up")


def test_list_show_and_remove(tmp_path, capsys):
    fake_adapter(tmp_path / "asr" / "lora-flite-awb")
    fake_adapter(tmp_path / "intent" / "adalora", task="intent", method="adalora")
    assert [a["name"] for a in list_adapters(tmp_path)] == ["asr/lora-flite-awb", "intent/adalora"]
    assert list_adapters(tmp_path)[0]["size_bytes"] > 1000

    assert main(["adapters", "list", "--store", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "task", "method", "backbone", "trainable", "size", "validation"]
    assert table[1].startswith("asr/lora-flite-awb") and "wer 0.250" in table[1]
    assert main(["adapters", "show", "intent/adalora", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "adalora"
    assert resolve_adapter("asr/lora-flite-awb", tmp_path) == tmp_path / "asr" / "lora-flite-awb"

    assert main(["adapters", "rm", "asr/lora-flite-awb", "--store", str(tmp_path)]) == 0
    assert not (tmp_path / "asr" / "lora-flite-awb").exists()
    assert main(["adapters", "show", "asr/lora-flite-awb", "--store", str(tmp_path)]) == 2
    assert "stored adapters: intent/adalora" in capsys.readouterr().err


def test_train_needs_exactly_one_destination(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--task", "asr"])
    assert "either a directory (--out DIR) or a store name (--name TASK/NAME)" in capsys.readouterr().err


def test_train_refuses_to_overwrite_a_directory_that_is_not_an_adapter(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        main(["train", "--task", "asr", "--out", str(tmp_path / "runs")])
    assert "exists and is not an adapter directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--task", "asr", "--out", str(tmp_path / "new"), "--validation-split", "adapt"])
    assert "--validation-split is the training split" in capsys.readouterr().err
    assert (tmp_path / "runs" / "precious.txt").read_text() == "keep me"
