"""`evaluate_task`: an utterance's record does not depend on the batch size nor on its place in the batch; and
`speechpeft eval` without --dataset checks the adapter's recorded dataset before it loads the model.

Each task is scored on real speech with batch size 1, then with batch size 3 over the rows in reverse order
(so every utterance sits elsewhere, among other clips, with padding). Exactly equal: texts, labels,
`seconds`, `capped`, the listener's transcript. Within a tight tolerance (float kernels on batches of other
shapes may round differently in the last bits): confidences, MCD and DNSMOS.
"""

import contextlib
import json
import shutil
from pathlib import Path

import datasets
import jiwer
import pytest
import torch

from speechpeft import evaluation
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.cli import main
from speechpeft.evaluation import evaluate_task, recorded_dataset
from speechpeft.tasks.base import seeded
from speechpeft.tasks.catalog import TASKS
from tests.audio import speech_rows
from tests.conftest import checkpoint_for

CLIPS = [  # different lengths, so a batch pads its shorter clips
    ("turn on the kitchen lights", "espeak-en-us"),
    ("play some jazz", "espeak-en-gb"),
    ("what is the weather like today", "flite-slt"),
    ("set an alarm", "espeak-en-us+f3"),
]
KEYWORDS = ["lights", "music", "weather", "alarm"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> datasets.Dataset:
    return speech_rows(CLIPS, tmp_path_factory.mktemp("speech"), keyword=KEYWORDS)


def records_alone_and_batched(task, model, rows: datasets.Dataset) -> tuple[list[dict], list[dict]]:
    """Per-utterance records with batch size 1, and with batch size 3 over the reversed rows (put back in order)."""
    _, alone = evaluate_task(task, model, rows, batch_size=1)
    _, batched = evaluate_task(task, model, rows.select(range(len(rows) - 1, -1, -1)), batch_size=3)
    return alone, batched[::-1]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["wav2vec2", "hubert"])
def test_asr_records_do_not_depend_on_batching(family, speech, tiny_backbone_dirs):
    # their CNN front-ends normalise over time (group norm), padded samples included: padding would change a clip
    backbone = load_frozen(checkpoint_for(tiny_backbone_dirs, family, "asr"), "asr", "fp32", device="cpu")
    task = TASKS.get("asr").build(backbone, None)
    alone, batched = records_alone_and_batched(task, backbone.model, speech)
    assert alone == batched  # hypotheses, word errors: all exact
    assert any(record["hypothesis"] for record in alone)  # the random tiny models do say something


@pytest.mark.slow
def test_classification_records_do_not_depend_on_batching(speech, tiny_backbone_dirs):
    backbone = load_frozen(tiny_backbone_dirs["hubert"], "classify", "fp32", device="cpu", labels=KEYWORDS)
    backbone.model.classifier.weight.mul_(100.0)  # a decisive head: the random one says 0.25 +- 0.002 to all
    task = TASKS.get("keyword").build(backbone, KEYWORDS)
    alone, batched = records_alone_and_batched(task, backbone.model, speech)
    assert [(r["label"], r["correct"]) for r in alone] == [(r["label"], r["correct"]) for r in batched]
    assert [r["confidence"] for r in alone] == pytest.approx([r["confidence"] for r in batched], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backbone_id", ["speechpeft/tiny-speecht5", "never-stopping"])
def test_tts_records_do_not_depend_on_batching(backbone_id, speech, tiny_backbone_dirs, capfd):
    """The shipped backbone stops by itself (its prenet dropout and Griffin-Lim's phases are seeded per
    utterance); a random one told never to stop is cut at a cap that depends on its own text only."""
    source = tiny_backbone_dirs["speecht5"] if backbone_id == "never-stopping" else backbone_id
    backbone = load_frozen(source, "tts", "fp32", device="cpu")
    if backbone_id == "never-stopping":
        torch.nn.init.zeros_(backbone.model.speech_decoder_postnet.prob_out.weight)
        torch.nn.init.constant_(backbone.model.speech_decoder_postnet.prob_out.bias, -10.0)  # stop probability ~0
    task = TASKS.get("tts").build(backbone, None)
    rows = speech.select([1, 3] if backbone_id == "never-stopping" else [0, 1, 2])  # short texts: short caps
    alone, batched = records_alone_and_batched(task, backbone.model, rows)
    exact = ("reference", "seconds", "capped", "heard")
    assert [{k: r.get(k) for k in exact} for r in alone] == [{k: r.get(k) for k in exact} for r in batched]
    for one, other in zip(alone, batched, strict=True):
        close = ("mcd", "ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
        assert [one[k] for k in close] == pytest.approx([other[k] for k in close], rel=1e-5, abs=1e-3)
    assert "attention mask" not in capfd.readouterr().err  # the listener is given its batch's mask
    if backbone_id == "never-stopping":
        assert all(r.get("capped") for r in alone) and len({r["seconds"] for r in alone}) == len(alone)


def test_seeding_forks_only_the_generator_of_the_models_gpu(monkeypatch):
    """Forking every visible GPU's generator would create a CUDA context on each, from every process."""
    queried = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: queried.append(device) or torch.zeros(1))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: None)
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: None)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    with seeded(torch.device("cuda", 2), 0):
        drawn = torch.rand(3)
    with seeded(torch.device("cpu"), 0):
        assert torch.equal(torch.rand(3), drawn)
    assert queried == [2]


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory) -> Path:
    """A LoRA adapter on the shipped tiny-whisper (its record names no dataset, as `random_init` writes it)."""
    out = tmp_path_factory.mktemp("adapter") / "lora"
    backbone = load_frozen("speechpeft/tiny-whisper", "asr", "fp32", device="cpu")
    save_random_adapters(backbone, "lora", [out], task="asr")
    return out


def adapter_on(tiny_adapter: Path, dataset: str | None, directory: Path) -> Path:
    """A copy of `tiny_adapter` in `directory` whose record says it trained on `dataset`."""
    adapter = Path(shutil.copytree(tiny_adapter, directory / "adapter"))
    record = json.loads((adapter / "speechpeft.json").read_text())
    (adapter / "speechpeft.json").write_text(json.dumps({**record, "data": {"dataset": dataset}}))
    return adapter


@pytest.mark.parametrize(
    "dataset, says",
    [(None, "records no dataset to score on"),  # e.g. `random_init`
     ("data/leaderboard/accent-421baf79", "'data/leaderboard/accent-421baf79', a path that is not here"),  # pulled
     ("./corpus", "'./corpus', a path that is not here")],
)  # fmt: skip
def test_eval_without_a_dataset_names_the_flag_before_loading_the_model(
    dataset, says, tiny_adapter, tmp_path, monkeypatch, capsys
):
    adapter = adapter_on(tiny_adapter, dataset, tmp_path)
    monkeypatch.chdir(tmp_path)  # not where the adapter trained: its relative path is not under here
    monkeypatch.setattr(evaluation, "load_trained", lambda *args, **kwargs: pytest.fail("loaded the model first"))
    assert main(["eval", "--adapter", str(adapter)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"speechpeft: error: adapter {adapter} ") and says in error
    assert error.endswith(": pass --dataset DIR_OR_HUB_ID\n")


@pytest.mark.parametrize("dataset", ["corpus", "./corpus", "local-user/accent-corpus"])
def test_a_recorded_dataset_that_is_here_or_may_be_on_the_hub_is_kept(dataset, tiny_adapter, tmp_path, monkeypatch):
    adapter = adapter_on(tiny_adapter, dataset, tmp_path)
    (tmp_path / "corpus").mkdir()
    monkeypatch.chdir(tmp_path)
    assert recorded_dataset(adapter) == dataset


@pytest.mark.parametrize("name", ["whisper-basic", "whisper-english"])
def test_eval_scores_after_the_normalizer_asked_for(name, tiny_adapter, tmp_path):
    """`speechpeft eval --normalizer`: the summary's WER is jiwer's over both sides through transformers' own Whisper
    normaliser, computed here apart from speechpeft's code, and the summary names it."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    clips = [("It's twenty five percent off!", "espeak-en-us"), ("Turn on the kitchen lights.", "espeak-en-gb")]
    datasets.DatasetDict({"test": speech_rows(clips, tmp_path / "clips")}).save_to_disk(str(tmp_path / "data"))
    out = tmp_path / "eval"
    assert main(["eval", "--adapter", str(tiny_adapter), "--dataset", str(tmp_path / "data"), "--split", "test",
                 "--out", str(out), "--normalizer", name]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    items = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    normalize = BasicTextNormalizer() if name == "whisper-basic" else EnglishTextNormalizer({})
    references = [normalize(i["reference"]).strip() for i in items]
    hypotheses = [normalize(i["hypothesis"]).strip() for i in items]
    assert summary["normalizer"] == name and len(items) == 2
    assert summary["metrics"]["wer"] == pytest.approx(jiwer.wer(references, hypotheses))
    assert [i["reference_words"] for i in items] == [len(r.split()) for r in references]


def test_eval_follows_the_record_and_says_how_to_override_it(tiny_adapter, tmp_path, capsys):
    """Without flags, eval scores as the adapter trained: its normaliser, and its dataset streamed with its cap; a
    backbone directory that moved is named, with --backbone as the way out."""
    clips = [("turn on the lights", "espeak-en-us"), ("play some jazz", "espeak-en-gb")]
    datasets.DatasetDict({"test": speech_rows(clips, tmp_path / "clips")}).save_to_disk(str(tmp_path / "data"))
    adapter = Path(shutil.copytree(tiny_adapter, tmp_path / "adapter"))
    record = json.loads((adapter / "speechpeft.json").read_text())
    record |= {"backbone": str(tmp_path / "moved"), "backbone_resolved_as": "directory",
               "options": {**record.get("options", {}), "normalizer": "whisper-basic"},
               "data": {"dataset": str(tmp_path / "data"), "streamed_max_rows": 1}}  # fmt: skip
    (adapter / "speechpeft.json").write_text(json.dumps(record))
    assert main(["eval", "--adapter", str(adapter)]) == 2
    assert f"trained on the backbone directory {tmp_path / 'moved'}, which is not here" in capsys.readouterr().err
    assert main(["eval", "--adapter", str(adapter), "--backbone", "speechpeft/tiny-whisper"]) == 0
    output = capsys.readouterr()
    assert (
        "streaming split 'test' too, its first 1 rows" in output.err
        and "after the whisper-basic normaliser" in output.out
    )
    summary = json.loads((adapter / "eval" / "test" / "summary.json").read_text())
    assert (summary["normalizer"], summary["streamed_max_rows"], summary["utterances"]) == ("whisper-basic", 1, 1)
