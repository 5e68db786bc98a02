"""Adapter files that are damaged, inconsistent or hostile are refused with a clear error on both load paths:
`speechpeft eval`'s (`load_trained`: the method attached to the backbone, then its weights) and the bank's
(`read_weights`: the tensors read straight from the file).

The adapters are real ones saved with random weights (`save_random_adapters`) on the shipped tiny Whisper, as a
three-label classifier so that every method also saves a task head; each test damages a copy with the tools a
user or an attacker would use (safetensors' own API, truncation, a flipped byte, a hand-edited JSON).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from speechpeft.adapter_dir import RECORD, CorruptAdapterError, read_record
from speechpeft.adapters.bank import AdapterBank
from speechpeft.adapters.bank_weights import read_weights
from speechpeft.adapters.base import CONFIG_FILE, WEIGHTS_FILE, AdapterOptions
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.errors import InputError, MissingInputError
from speechpeft.evaluation import load_trained

WHISPER, SPEECHT5 = "speechpeft/tiny-whisper", "speechpeft/tiny-speecht5"
LABELS = ["lights", "music", "weather"]
METHODS = ("lora", "adalora", "prefix", "bottleneck", "frozen")
PEFT_METHODS = ("lora", "adalora")
PEFT_HEAD = "base_model.model.classifier.bias"  # the head's bias, as each method's file names it
HEAD_BIAS = {"lora": PEFT_HEAD, "adalora": PEFT_HEAD, "bottleneck": "model.classifier.bias",
             "prefix": "classifier.bias", "frozen": "classifier.bias"}  # fmt: skip
PACKAGE = Path(__file__).resolve().parents[2]
SOURCES = ("speechpeft", "adapters", "backbones", "tasks", "leaderboard")


def on_eval(directory: Path) -> object:
    return load_trained(directory, device="cpu")


def in_bank(directory: Path) -> object:
    return read_weights(directory, read_record(directory)["method"], torch.device("cpu"))


PATHS = {"eval": on_eval, "bank": in_bank}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One intact classification adapter per method, plus an ASR LoRA adapter (`asr-lora`)."""
    root = tmp_path_factory.mktemp("intact")
    options = AdapterOptions(rank=2, steps=10)
    for method in METHODS:
        backbone = load_frozen(WHISPER, "classify", "fp32", device="cpu", labels=LABELS)
        save_random_adapters(backbone, method, [root / method], task="intent", labels=LABELS, options=options,
                             backbone_name=WHISPER)  # fmt: skip
    save_random_adapters(load_frozen(WHISPER, "asr", "fp32", device="cpu"), "lora", [root / "asr-lora"], task="asr",
                         options=options, backbone_name=WHISPER)  # fmt: skip
    return {path.name: path for path in root.iterdir()}


@pytest.fixture
def copy_of(saved: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    """A copy of a saved adapter to damage (each call a new one)."""
    return lambda name: Path(shutil.copytree(saved[name], Path(tempfile.mkdtemp(dir=tmp_path)) / name))


def edit_weights(directory: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Rewrite the weights file with safetensors' own API after `change` edits its tensors in place."""
    tensors = load_file(str(directory / WEIGHTS_FILE))
    change(tensors)
    save_file(tensors, str(directory / WEIGHTS_FILE))


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def head_width(directory: Path) -> int:
    """The classifier's input width (its weight is [labels, width])."""
    return next(
        t.shape[1] for k, t in load_file(str(directory / WEIGHTS_FILE)).items() if k.endswith("classifier.weight")
    )


def unlisted(directory: Path) -> Path:
    """The adapter as saved before records listed their tensors: only the loaders' own checks remain."""
    edit_json(directory / RECORD, lambda record: record.pop("tensors"))
    return directory


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_intact_adapters_load_with_or_without_a_tensor_list(copy_of, method, path):
    PATHS[path](copy_of(method))
    PATHS[path](unlisted(copy_of(method)))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_a_tensor_deleted_from_the_file_is_refused_by_name(copy_of, method, path):
    """The task head's bias deleted with safetensors' API: before, it stayed at its random initial value."""
    adapter = copy_of(method)
    edit_weights(adapter, lambda tensors: tensors.pop(HEAD_BIAS[method]))
    with pytest.raises(CorruptAdapterError, match=rf"{WEIGHTS_FILE} does not match .* lacks {HEAD_BIAS[method]}"):
        PATHS[path](adapter)


@pytest.mark.parametrize("method", METHODS)
def test_without_a_tensor_list_eval_still_refuses_what_the_method_would_have_saved(copy_of, method):
    adapter = unlisted(copy_of(method))
    edit_weights(adapter, lambda tensors: tensors.pop(HEAD_BIAS[method]))
    with pytest.raises(CorruptAdapterError, match=f"does not match what its (config attaches to this backbone|method "
                                                  f"puts in this model): it lacks {HEAD_BIAS[method]}"):  # fmt: skip
        on_eval(adapter)


@pytest.mark.parametrize("method", METHODS)
def test_without_a_tensor_list_the_bank_refuses_what_the_config_implies(copy_of, method):
    """Our own configs list their tensors; a PEFT file must hold both halves of every LoRA matrix."""
    adapter = unlisted(copy_of(method))
    lost = HEAD_BIAS[method] if method not in PEFT_METHODS else None

    def drop(tensors: dict[str, torch.Tensor]) -> None:
        nonlocal lost
        lost = lost or next(k for k in sorted(tensors) if k.endswith(("lora_B.weight", "lora_B")))
        tensors.pop(lost)

    edit_weights(adapter, drop)
    with pytest.raises(CorruptAdapterError, match=re.escape(lost.removeprefix("base_model.model."))):
        in_bank(adapter)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_a_tensor_of_another_shape_is_refused_with_both_shapes(copy_of, method, path):
    adapter = copy_of(method)
    weight = HEAD_BIAS[method].replace(".bias", ".weight")
    width = head_width(adapter)
    edit_weights(adapter, lambda tensors: tensors.update({weight: torch.zeros(len(LABELS) + 1, width)}))
    with pytest.raises(CorruptAdapterError, match=re.escape(f"shapes: {weight} [4, {width}] (expected [3, {width}])")):
        PATHS[path](adapter)


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def header_flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[12:16] = bytes(b ^ 0xFF for b in data[12:16])  # inside the JSON header, past its 8-byte length
    path.write_bytes(bytes(data))


def not_safetensors(path: Path) -> None:
    path.write_text("<html>404 Not Found</html>")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("damage", [truncated, header_flipped, not_safetensors, lambda p: p.write_bytes(b"")])
def test_a_truncated_or_corrupt_weights_file_is_refused(copy_of, damage, path):
    adapter = copy_of("lora")
    damage(adapter / WEIGHTS_FILE)
    with pytest.raises(
        CorruptAdapterError, match=f"{WEIGHTS_FILE} is truncated or corrupt .*: save the adapter again"
    ):
        PATHS[path](adapter)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["lora", "prefix"])
@pytest.mark.parametrize(
    ("broken", "error", "says"),
    [
        (lambda d: (d / CONFIG_FILE).unlink(), MissingInputError, f"has no {CONFIG_FILE}"),
        (lambda d: (d / CONFIG_FILE).write_text('{"peft_type": "LORA", '), CorruptAdapterError, "is not valid JSON"),
        (lambda d: (d / CONFIG_FILE).write_text("[1, 2]"), CorruptAdapterError, "holds a JSON list, not an object"),
        (lambda d: (d / RECORD).write_bytes(b"\xff\xfe{"), CorruptAdapterError, f"{RECORD} is not valid JSON"),
        (lambda d: (d / WEIGHTS_FILE).unlink(), MissingInputError, f"has no {WEIGHTS_FILE}"),
        (lambda d: edit_json(d / CONFIG_FILE, lambda c: c.update(peft_type="ADALORA") if "peft_type" in c
                             else c.update(speechpeft_method="bottleneck")),
         CorruptAdapterError, "is a config for '(adalora|bottleneck)', but the record says"),
    ],
    ids=["no-config", "config-cut", "config-list", "record-bytes", "no-weights", "config-of-another-method"],
)  # fmt: skip
def test_a_missing_or_malformed_config_or_record_is_refused(copy_of, method, path, broken, error, says):
    adapter = copy_of(method)
    broken(adapter)
    with pytest.raises(error, match=says):
        PATHS[path](adapter)


def test_saved_options_that_do_not_fit_are_refused(copy_of):
    adapter = copy_of("prefix")
    edit_json(adapter / CONFIG_FILE, lambda config: config["options"].update(prefix_length="long", layers=3))
    with pytest.raises(CorruptAdapterError, match=f"{CONFIG_FILE}: options that do not fit"):
        on_eval(adapter)


@pytest.mark.parametrize("field", ["backbone", "task", "method"])
def test_a_record_naming_no_backbone_task_or_method_is_refused_before_any_loading(copy_of, tmp_path, field):
    adapter = copy_of("lora")
    edit_json(adapter / RECORD, lambda record: record.pop(field))
    with pytest.raises(CorruptAdapterError, match=f"{RECORD} does not name its {field}"):
        on_eval(adapter)
    bank = AdapterBank(tmp_path / "store", device="cpu")
    with pytest.raises(CorruptAdapterError, match=f"{RECORD} does not name its {field}"):
        bank.load(adapter)
    assert bank.backbones() == []  # refused before a backbone loaded for it


class Payload:
    """A pickle that, once loaded, creates the file `marker`: what a hostile `.bin` would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["adapter_model.bin", "training_args.pt", "optimizer.pkl", "ADAPTER.PTH"])
@pytest.mark.parametrize("instead", [False, True], ids=["beside", "instead"])
def test_pickled_files_are_refused_and_never_loaded(copy_of, tmp_path, path, name, instead):
    """A pickle beside the weights, or in place of them (where PEFT would fall back to `adapter_model.bin`)."""
    adapter, marker = copy_of("lora"), tmp_path / "code-ran"
    (adapter / name).write_bytes(pickle.dumps({"base_model.model.classifier.weight": Payload(marker)}))
    if instead:
        (adapter / WEIGHTS_FILE).unlink()
    with pytest.raises(CorruptAdapterError, match=f"holds pickled files \\({name}\\), which can run code"):
        PATHS[path](adapter)
    assert not marker.exists()


def test_an_adapter_recorded_for_another_backbone_is_refused(copy_of):
    """An ASR LoRA adapter of the tiny Whisper whose record names the tiny SpeechT5: PEFT finds q/v projections
    there too, of other names and sizes."""
    adapter = copy_of("asr-lora")
    edit_json(adapter / RECORD, lambda record: record.update(backbone=SPEECHT5))
    with pytest.raises(CorruptAdapterError, match=r"does not (match|fit).*trained on another backbone"):
        on_eval(adapter)


def widened(tensors: dict[str, torch.Tensor], key: str, dim: int) -> list[int]:
    """Give tensor `key` 8 more columns (dim 1) or rows (dim 0) of zeros; its new shape."""
    grown = list(tensors[key].shape)
    grown[dim] += 8
    tensors[key] = torch.zeros(grown)
    return grown


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> AdapterBank:
    """One real bank for the module: each backbone loads once."""
    return AdapterBank(tmp_path_factory.mktemp("store"), device="cpu")


@pytest.mark.parametrize("method", METHODS)
def test_tensors_that_hold_together_but_do_not_fit_the_backbone_are_refused_by_the_bank(copy_of, bank, method):
    """A file and a record that agree, made for wider modules than this backbone's (the record's list edited
    too): the bank refuses it before any request meets it, naming the tensor's and the module's shapes."""
    adapter, key, dim, says = copy_of(method), HEAD_BIAS[method].replace(".bias", ".weight"), 1, "module's"
    if method in PEFT_METHODS:
        names = sorted(load_file(str(adapter / WEIGHTS_FILE)))
        key, says = next(k for k in names if k.endswith(("lora_A.weight", "lora_A"))), "layer"
    elif method == "prefix":
        key, dim, says = (
            next(k for k in sorted(load_file(str(adapter / WEIGHTS_FILE))) if "prefix" in k),
            2,
            "attention",
        )
    shapes = {}
    edit_weights(adapter, lambda tensors: shapes.update({key: widened(tensors, key, dim)}))
    edit_json(adapter / RECORD, lambda record: record["tensors"].update(shapes))
    with pytest.raises(CorruptAdapterError, match=rf"does not fit {WHISPER}: .*{says}"):
        bank.load(adapter, name=f"wide-{method}")
    assert bank.load(copy_of(method), name=f"intact-{method}").method == method


def test_a_label_map_that_does_not_fit_the_saved_head_is_refused(copy_of):
    adapter = copy_of("bottleneck")
    edit_json(adapter / RECORD, lambda record: record.update(labels=[*LABELS, "alarm"]))
    width = head_width(adapter)
    with pytest.raises(
        CorruptAdapterError, match=re.escape(f"classifier.weight [3, {width}] (expected [4, {width}])")
    ):
        on_eval(adapter)


@pytest.mark.parametrize("path", PATHS)
def test_a_peft_file_smuggling_a_backbone_weight_is_refused(copy_of, path):
    """A tensor for a backbone weight no LoRA adapter changes, added to the file and to the record's list alike."""
    adapter, smuggled = copy_of("lora"), "base_model.model.model.encoder.layers.0.fc1.weight"
    edit_weights(adapter, lambda tensors: tensors.update({smuggled: torch.zeros(64, 16)}))
    edit_json(adapter / RECORD, lambda record: record["tensors"].update({smuggled: [64, 16]}))
    says = f"holds unexpected {smuggled}" if path == "eval" else "model.encoder.layers.0.fc1, which its config neither"
    with pytest.raises(CorruptAdapterError, match=re.escape(says)):
        PATHS[path](adapter)


def test_corrupt_adapter_errors_are_input_errors():
    """The CLI prints them as one line with exit status 2; the server answers 4xx."""
    assert issubclass(CorruptAdapterError, InputError)


def test_the_package_never_unpickles_nor_runs_a_checkpoints_code():
    """No `torch.load` without `weights_only=True`, no `pickle` loading, no NumPy pickles, no remote code."""
    banned = re.compile(r"torch\.load\((?![^)]*weights_only=True)|pickle\.loads?\(|allow_pickle=True|"
                        r"trust_remote_code=True|import pickle|from pickle")  # fmt: skip
    found = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
             for folder in SOURCES for path in sorted((PACKAGE / folder).rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if banned.search(line)]  # fmt: skip
    assert not found, "\n".join(found)
