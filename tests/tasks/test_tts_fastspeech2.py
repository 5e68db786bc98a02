"""The TTS task on a (toy, random) FastSpeech2Conformer backbone: espeak-ng rows re-timed into exact labels,
the others left out and counted, a loss that trains, and free-running speech."""

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import transformers

from speechpeft.adapters.bank import AdapterBank
from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.backbones.pretrain import fastspeech2 as recipe
from speechpeft.backbones.pretrain.options import FastSpeech2PretrainOptions
from speechpeft.errors import InputError
from speechpeft.evaluation import load_trained
from speechpeft.tasks import data, tts_fastspeech2
from speechpeft.tasks.base import TASKS
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions
from speechpeft.tasks.tts_fastspeech2 import NOT_ESPEAK, FastSpeech2Synthesis

STATS = {"pitch": {"mean": 4.8, "std": 0.2, "unit": "log Hz"}, "energy": {"mean": 20.0, "std": 10.0, "unit": "L2"}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """12 utterances: espeak-en-us (a pretrain voice) and flite-slt (an adapt voice, which cannot be re-timed)."""
    out = tmp_path_factory.mktemp("fs2task") / "corpus"
    voices, splits = ("espeak-en-us", "flite-slt"), ("pretrain=0.5", "adapt=0.5")
    build_corpus(SynthOptions(out=out, utterances=12, voices=voices, splits=splits), progress=False)
    return out


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory) -> Path:
    """A random toy tiny-fastspeech2 as the recipe exports it: config with the "speechpeft" record + processor."""
    out = tmp_path_factory.mktemp("fs2task") / "model"
    options = FastSpeech2PretrainOptions(corpus=out, out=out, hidden=32, layers=1, heads=2, ffn=64)
    processor = recipe.phoneme_processor(out)
    config = recipe.fastspeech2_config(options, len(processor.tokenizer), recipe.speechpeft_record(options, STATS))
    torch.manual_seed(0)
    recipe.export_half(transformers.FastSpeech2ConformerModel(config), processor, out)
    return out


@pytest.fixture(scope="module")
def task(backbone_dir) -> FastSpeech2Synthesis:
    return TASKS.get("tts").build(load_frozen(backbone_dir, "tts", "fp32", device="cpu"), None)


@pytest.fixture(scope="module")
def usable(task, corpus):
    split = datasets.concatenate_datasets(list(datasets.load_from_disk(str(corpus)).values()))
    rows, left_out = data.task_rows(split, TASKS.get("tts").roles, TASKS.get("tts").context)
    assert left_out == {}
    usable, unusable = task.usable(data.at_sample_rate(rows, 16_000))
    assert unusable == {} and len(usable) == len(split)  # any row can be spoken and scored
    kept, untrainable = task.trainable(usable)
    return split, kept, untrainable


def test_the_tts_entry_builds_the_fastspeech2_task_and_keeps_the_synthesis_columns(task, usable):
    _, kept, _ = usable
    assert isinstance(task, FastSpeech2Synthesis) and task.voice == "espeak-en-us"
    assert set(kept.column_names) == {"audio", "text", "voice", "rate", "pitch"}


def test_espeak_rows_are_kept_and_the_others_counted(usable):
    split, kept, unusable = usable
    espeak = sum(v == "espeak-en-us" for v in split["voice"])
    assert 0 < espeak < len(split) and len(kept) == espeak
    assert unusable == {NOT_ESPEAK: len(split) - espeak}


def test_labels_line_up_with_each_clip_and_the_loss_trains(task, usable, backbone_dir):
    _, kept, _ = usable
    batch = task.collate([kept[i] for i in range(3)])
    frames = (batch["spectrogram_labels"] != -100).any(-1).sum(-1)
    assert torch.equal(batch["duration_labels"].sum(-1), frames)  # every mel frame belongs to one phoneme
    assert batch["input_ids"].shape == batch["pitch_labels"].shape[:2] == batch["energy_labels"].shape[:2]
    words = [task.phonemes(text) for text in batch["references"]]
    assert [task.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True) for ids, mask in
            zip(batch["input_ids"], batch["attention_mask"], strict=True)] == words  # fmt: skip
    model = load_frozen(backbone_dir, "tts", "fp32", device="cpu").model
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(4):
        loss = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_speech_is_free_running_one_utterance_at_a_time(task, usable):
    _, kept, _ = usable
    batch = task.collate([kept[i] for i in range(2)])
    task.backbone.model.train()
    predictions = task.predict(task.backbone.model, batch)
    assert task.backbone.model.training  # its mode is put back
    assert len(predictions.outputs) == 2 and all(a.dtype == np.float32 and a.ndim == 1 for a in predictions.outputs)
    alone = task.predict(task.backbone.model, task.collate([kept[1]])).outputs[0]
    np.testing.assert_array_equal(alone, predictions.outputs[1])  # no utterance depends on its batch
    tokens = batch["attention_mask"].sum(-1).tolist()
    for audio, extra, n in zip(predictions.outputs, predictions.extras, tokens, strict=True):
        assert isinstance(extra["capped"], bool) and len(audio) <= (15 * n + 4) * 256  # cut at 15 frames a token


def test_rows_it_cannot_learn_from_are_still_spoken_and_scored(task, corpus):
    split = datasets.concatenate_datasets(list(datasets.load_from_disk(str(corpus)).values()))
    flite = data.at_sample_rate(split.filter(lambda v: v == "flite-slt", input_columns=["voice"]), 16_000)
    batch = task.collate([flite[0], flite[1]])
    assert "duration_labels" not in batch  # nothing to learn from, but the text is spoken with the backbone's voice
    words = [task.phonemes(text) for text in batch["references"]]
    assert task.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True) == words
    assert len(task.predict(task.backbone.model, batch).outputs) == 2


def test_a_runaway_duration_is_capped_before_the_length_regulator(task):
    model, ids = task.backbone.model, task.tokenizer(task.phonemes("hello there"), return_tensors="pt").input_ids[0]
    predictor = model.duration_predictor.linear
    original = predictor.bias.detach().clone()
    try:
        with torch.no_grad():
            predictor.bias.fill_(30.0)  # exp(30) frames a token: without the cap, no memory would hold the mel
        audio, capped = task.speak(model, ids)
    finally:
        with torch.no_grad():
            predictor.bias.copy_(original)
    assert capped and len(audio) <= (tts_fastspeech2.MAX_FRAMES_PER_TOKEN * len(ids) + 4) * 256
    assert not task.speak(model, ids)[1]


def test_text_with_nothing_to_say_is_refused_naming_it(task):
    from speechpeft.text_input import TextInputError

    with pytest.raises(TextInputError, match=r"text 2 has nothing .* can speak"):
        task.speak_text(task.backbone.model, "?!...", what="text 2")


def test_rows_without_synthesis_columns_are_refused_with_the_fix(task, usable):
    _, kept, _ = usable
    with pytest.raises(InputError, match=r"lack voice, rate, pitch.*tiny-speecht5"):
        task.trainable(kept.remove_columns(["voice", "rate", "pitch"]))


def test_a_backbone_without_its_phonemizer_record_is_refused(backbone_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(backbone_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["speechpeft"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="pretrain tiny-fastspeech2"):
        TASKS.get("tts").build(load_frozen(copy, "tts", "fp32", device="cpu"), None)


def test_text_is_phonemised_with_the_backbones_voice_and_long_text_spoken_in_pieces(task, monkeypatch):
    model, text = task.backbone.model, "Turn the lights off. Then play 2 songs."
    ids = lambda piece: task.tokenizer(task.phonemes(piece), return_tensors="pt").input_ids[0]  # noqa: E731
    np.testing.assert_array_equal(task.speak_text(model, text), task.speak(model, ids(text))[0])
    monkeypatch.setattr(tts_fastspeech2, "MAX_PIECE_CHARACTERS", 25)
    pieces = [task.speak(model, ids(p))[0] for p in ("Turn the lights off.", "Then play 2 songs.")]
    np.testing.assert_array_equal(task.speak_text(model, text), np.concatenate(pieces))


def test_the_bank_speaks_each_text_with_its_own_adapter(task, backbone_dir, tmp_path):
    methods = [("lora", AdapterOptions(rank=2)), ("prefix", AdapterOptions(prefix_length=3))]
    for seed, (method, options) in enumerate(methods):
        backbone = load_frozen(backbone_dir, "tts", "fp32", device="cpu")
        save_random_adapters(backbone, method, [tmp_path / method], task="tts", options=options, scale=0.3,
                             seed=seed, backbone_name=str(backbone_dir))  # fmt: skip
    texts, names = ["yes", "play some jazz"], ["lora", "prefix"]
    got = AdapterBank(store=tmp_path, device="cpu").synthesize(texts, adapter=names, backbone=str(backbone_dir))
    for audio, text, name in zip(got, texts, names, strict=True):
        alone, model, _ = load_trained(tmp_path / name)
        np.testing.assert_allclose(audio, alone.speak_text(model, text), atol=1e-5)
        plain = task.speak_text(task.backbone.model, text)
        assert len(plain) != len(audio) or not np.allclose(plain, audio, atol=1e-3)  # the adapter changed the speech


def test_a_backbone_that_ships_a_vocoder_speaks_through_it(backbone_dir, tmp_path):
    from speechpeft.backbones.vocoder import hifigan

    copy = tmp_path / "model"
    shutil.copytree(backbone_dir, copy)
    config = transformers.SpeechT5HifiGanConfig(
        model_in_dim=80, sampling_rate=16_000, upsample_initial_channel=16, upsample_rates=[4, 4, 4, 4],
        upsample_kernel_sizes=[8, 8, 8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
        normalize_before=False,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.SpeechT5HifiGan(config).save_pretrained(copy / "vocoder")
    task = TASKS.get("tts").build(load_frozen(copy, "tts", "fp32", device="cpu"), None)
    ids = task.tokenizer(task.phonemes("hello there"), return_tensors="pt").input_ids[0]
    audio, _ = task.speak(task.backbone.model, ids)
    with torch.no_grad():
        mel = task.backbone.model.eval()(input_ids=ids[None]).spectrogram[0]
    np.testing.assert_allclose(audio, hifigan(mel, task.vocoder), atol=1e-6)
    assert len(audio) == len(mel) * 256 and task.provenance()["vocoder"] == str(copy / "vocoder")


def test_capped_utterances_are_counted_and_explained(task, caplog):
    from speechpeft.tasks.base import Predictions

    clip = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    extras = [{"reference_audio": clip, "capped": True}, {"reference_audio": clip, "capped": False}]
    with caplog.at_level("WARNING"):
        metrics, items = task.score([Predictions([clip, clip], ["yes", "no"], 0.1, extras=extras)])
    assert metrics["capped_utterances"] == 1 and [i["capped"] for i in items] == [True, False]
    assert "1 of 2 utterances had a predicted phoneme duration above 15 mel frames: capped there" in caplog.text
