"""The tiny-fastspeech2 recipe on a toy config: its features, batches, 20 steps, exact resume and its options."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import transformers

from speechpeft.backbones.pretrain import fastspeech2 as recipe
from speechpeft.backbones.pretrain import phoneme_features as features_module
from speechpeft.backbones.pretrain.options import FastSpeech2PretrainOptions
from speechpeft.backbones.pretrain.phoneme_features import (
    build_phoneme_features,
    frame_energy,
    frame_log_f0,
    per_phoneme_mean,
)
from speechpeft.backbones.pretrain.state import load_state
from speechpeft.cli import main
from speechpeft.errors import InputError
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.espeak_timing import EspeakTimingError, phoneme_tokens
from speechpeft.tasks.corpus.options import SynthOptions
from tests.backbones.resume import assert_resume_is_exact

TOY = {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "batch_size": 4, "warmup": 2, "eval_utterances": 3,
       "threads": 1, "feature_jobs": 1, "lr": 3e-3}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """30 utterances of espeak-en-us: 16 in the pretrain split."""
    out = tmp_path_factory.mktemp("fs2") / "corpus"
    options = SynthOptions(out=out, utterances=30, voices=("espeak-en-us",), splits=("pretrain=0.7", "test=0.3"))
    build_corpus(options, progress=False)
    return out


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    """A run directory whose features are computed: runs copy its `data/` so each test does not redo them."""
    out = tmp_path_factory.mktemp("fs2") / "prepared"
    recipe.prepare(FastSpeech2PretrainOptions(corpus=corpus, out=out, **TOY))
    return out / "data"


@pytest.fixture(scope="module")
def pretrain_rows(corpus) -> datasets.Dataset:
    return datasets.load_from_disk(str(corpus))["pretrain"]


def toy_options(corpus: Path, prepared: Path, out: Path, **changes) -> FastSpeech2PretrainOptions:
    shutil.copytree(prepared, out / "data")
    return FastSpeech2PretrainOptions(corpus=corpus, out=out, **{**TOY, **changes})


@pytest.mark.slow  # the first to build the corpus and its features (8 s)
def test_features_are_what_they_claim(prepared, pretrain_rows):
    store = features_module.load_phoneme_features(prepared / "pretrain")
    assert len(store) == len(pretrain_rows) == 16 and store.left_out == {}
    extractor = transformers.SpeechT5FeatureExtractor()
    for i in range(len(store)):
        span, phonemes = store.phoneme_range(i), store.phonemes[i].replace(" ", "")
        assert store.durations[span].sum() == len(store.mel(i))  # every mel frame belongs to one phoneme
        assert len(store.pitch[span]) == len(store.energy[span]) == len(phonemes) == span.stop - span.start
    row = pretrain_rows[0]
    audio = row["audio"].get_all_samples().data[0].numpy()
    mel = extractor(audio_target=audio, sampling_rate=16_000)["input_values"][0]
    assert store.ids[0] == row["id"] and len(mel) == 1 + len(audio) // 256
    np.testing.assert_allclose(store.mel(0), mel, atol=2e-3)  # float16 storage
    durations = store.durations[store.phoneme_range(0)]
    np.testing.assert_allclose(store.pitch[store.phoneme_range(0)],
                               per_phoneme_mean(frame_log_f0(audio, len(mel)), durations), rtol=1e-6)  # fmt: skip
    energy = store.energy[store.phoneme_range(0)]
    np.testing.assert_allclose(energy, per_phoneme_mean(frame_energy(audio, extractor, len(mel)), durations))
    voiced = store.pitch[~np.isnan(store.pitch)]
    assert math.log(50) < voiced.min() and voiced.max() < math.log(400)  # a male voice, log Hz (StoneMask refines)
    assert np.isnan(store.energy).sum() == (store.durations == 0).sum()  # NaN: a phoneme with no frame
    assert (store.energy[store.durations > 0] > 0).all()
    mnemonics = {token: mnemonic for mnemonic, token in phoneme_tokens().items()}
    pauses = np.array([mnemonics[c] == "_:" for p in store.phonemes for c in p.replace(" ", "")])
    voiced_energy = store.energy[~np.isnan(store.pitch)]
    assert np.nanmax(store.energy[pauses]) < np.median(voiced_energy) / 2  # durations line up with the audio


def test_per_phoneme_mean_skips_missing_values_and_empty_phonemes():
    frames = np.array([1.0, 2.0, np.nan, 4.0, 5.0, np.nan])
    means = per_phoneme_mean(frames, np.array([2, 0, 3, 1, 0]))
    np.testing.assert_array_equal(means, np.array([1.5, np.nan, 4.5, np.nan, np.nan], dtype=np.float32))


def test_rows_that_cannot_be_timed_exactly_are_left_out_and_counted(pretrain_rows, tmp_path, monkeypatch):
    rows = pretrain_rows.select(range(4))
    changed, untimed = rows["id"][1], rows["text"][3]
    rows = rows.map(lambda r: {"rate": r["rate"] * 1.2 if r["id"] == changed else r["rate"]})
    timings = features_module.phoneme_timings

    def engine(text, *args):
        if text == untimed:
            raise EspeakTimingError("libespeak-ng crashed")
        return timings(text, *args)

    monkeypatch.setattr(features_module, "phoneme_timings", engine)
    store = build_phoneme_features(rows, transformers.SpeechT5FeatureExtractor(), tmp_path / "f", progress=False,
                                   left_out={"text_too_long": 2})  # fmt: skip
    assert store.ids == [rows["id"][0], rows["id"][2]]
    assert store.left_out == {"text_too_long": 2, "timing_length_mismatch": 1, "no_phoneme_timings": 1}
    meta = json.loads((tmp_path / "f" / "rows.json").read_text())
    assert meta["left_out_ids"] == {"no_phoneme_timings": [rows["id"][3]], "timing_length_mismatch": [changed]}


def test_feature_extraction_resumes_at_the_first_missing_shard(pretrain_rows, prepared, tmp_path, monkeypatch):
    rows, calls = pretrain_rows.select(range(5)), []
    extract = features_module.extract_rows

    def interrupted(chunk, extractor, jobs):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return extract(chunk, extractor, jobs)

    monkeypatch.setattr(features_module, "SHARD_ROWS", 2)
    monkeypatch.setattr(features_module, "extract_rows", interrupted)
    extractor = transformers.SpeechT5FeatureExtractor()
    with pytest.raises(KeyboardInterrupt):
        build_phoneme_features(rows, extractor, tmp_path / "f", progress=False)
    store = build_phoneme_features(rows, extractor, tmp_path / "f", progress=False)
    assert calls == [2, 2, 2, 1]  # shard 0 was kept, shard 1 redone, then shard 2
    whole = features_module.load_phoneme_features(prepared / "pretrain")
    assert store.ids == whole.ids[:5] and store.phonemes == whole.phonemes[:5]
    np.testing.assert_array_equal(store.mels, whole.mels[: whole.frame_offsets[5]])
    np.testing.assert_array_equal(store.durations, whole.durations[: whole.phoneme_offsets[5]])


def test_feature_store_refuses_shards_of_other_rows(pretrain_rows, tmp_path):
    extractor, directory = transformers.SpeechT5FeatureExtractor(), tmp_path / "f"
    directory.mkdir()
    (directory / "plan.json").write_text(json.dumps({"rows": 1, "ids_sha1": "0", "shard_rows": 64, "hop": 256}))
    with pytest.raises(InputError, match="features of other rows or settings"):
        build_phoneme_features(pretrain_rows.select(range(2)), extractor, directory, progress=False)


def test_tokens_spell_the_phonemes_and_word_boundaries_take_no_frames(tmp_path):
    tokenizer = recipe.phoneme_tokenizer(tmp_path)
    ids, owners = recipe.token_layout("Dā kat", tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["▁", "D", "ā", "▁", "k", "a", "t", "</s>"]
    assert owners.tolist() == [-1, 0, 1, -1, 2, 3, 4, -1]
    inventory = "".join(phoneme_tokens().values())
    assert recipe.token_layout(inventory, tokenizer)[1].tolist() == [-1, *range(len(inventory)), -1]
    assert tokenizer.pad_token_id == recipe.PAD_ID == 0 and len(tokenizer) == len(inventory) + 5


def test_batches_are_a_function_of_seed_and_step_and_come_from_one_length_bucket():
    frames = np.arange(100, 420, 5)  # 64 utterances: two buckets of 8 batches of 4
    first = recipe.batch_positions(frames, seed=0, step=7, batch_size=4)
    assert first.tolist() == recipe.batch_positions(frames, seed=0, step=7, batch_size=4).tolist()
    assert first.tolist() != recipe.batch_positions(frames, seed=0, step=8, batch_size=4).tolist()
    for step in range(20):
        lengths = frames[recipe.batch_positions(frames, seed=1, step=step, batch_size=4)]
        assert len(set(lengths)) == 4 and lengths.max() - lengths.min() < 32 * 5


def test_batch_labels_line_up_with_the_mel_frames(prepared, pretrain_rows, tmp_path):
    store = features_module.load_phoneme_features(prepared / "pretrain")
    stats = features_module.normalisation(store, np.arange(len(store)))
    data = recipe.examples(store, np.arange(len(store)), recipe.phoneme_tokenizer(tmp_path), stats)
    batch = recipe.make_batch(data, np.array([0, 3, 5]))
    frames = (batch["spectrogram_labels"] != -100).all(dim=-1).sum(dim=1)
    assert batch["duration_labels"].sum(dim=1).tolist() == frames.tolist() == data.frames()[[0, 3, 5]].tolist()
    assert batch["pitch_labels"].shape == (*batch["input_ids"].shape, 1) == batch["energy_labels"].shape
    boundaries = batch["input_ids"] == recipe.phoneme_tokenizer(tmp_path).convert_tokens_to_ids("▁")
    assert (batch["duration_labels"][boundaries] == 0).all() and (batch["pitch_labels"][boundaries] == 0).all()


@pytest.mark.slow
def test_twenty_steps_lower_the_training_loss_and_export_half_precision(corpus, prepared, tmp_path):
    options = toy_options(corpus, prepared, tmp_path / "run", steps=20, eval_every=10)
    processor, train_data, _, stats = recipe.prepare(options)
    config = recipe.fastspeech2_config(options, len(processor.tokenizer), recipe.speechpeft_record(options, stats))
    torch.manual_seed(options.seed)
    model = transformers.FastSpeech2ConformerModel(config)  # the run's initial weights
    before = recipe.evaluate(model, train_data, batch_size=16)
    best = recipe.pretrain_fastspeech2(options)
    load_state(tmp_path / "run" / "checkpoint", {"model": model}, torch.optim.AdamW(model.parameters()))
    after = recipe.evaluate(model, train_data, batch_size=16)
    assert after["loss"] < 0.8 * before["loss"] and after["mel_l1"] < before["mel_l1"]
    assert best["step"] in (10, 20) and set(best) >= {"mel_l1", "duration_mse", "pitch_mse", "energy_mse"}

    exported = transformers.FastSpeech2ConformerModel.from_pretrained(tmp_path / "run" / "model")
    assert exported.dtype == torch.float16 and exported.config.speechpeft["pitch"] == stats["pitch"]
    assert exported.config.speechpeft["phonemizer"]["voice"] == "espeak-en-us"
    loaded = transformers.SpeechT5Processor.from_pretrained(tmp_path / "run" / "model")
    assert loaded.tokenizer("Dā kat").input_ids == processor.tokenizer("Dā kat").input_ids


@pytest.mark.slow
def test_resume_after_a_stop_is_bit_identical_to_an_uninterrupted_run(corpus, prepared, tmp_path, monkeypatch):
    runs = {n: toy_options(corpus, prepared, tmp_path / n, steps=4, eval_every=2) for n in ("whole", "stopped")}
    assert_resume_is_exact(lambda out: recipe.pretrain_fastspeech2(runs[out.name]), tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [({"voice": "flite-slt"}, "--voice flite-slt"), ({"hidden": 33}, "--hidden 33 must be a multiple of --heads"),
     ({"decoder_kernel": 4}, "--decoder-kernel 4"), ({"dropout": 1.0}, "--dropout 1.0"),
     ({"dropout": float("nan")}, "--dropout nan"), ({"feature_jobs": 0}, "--feature-jobs"),
     ({"layers": 0}, "--layers"), ({"lr": float("inf")}, "--lr inf"), ({"precision": "fp8"}, "--precision")],
)  # fmt: skip
def test_bad_options_are_refused_naming_the_flag(changes, flag, tmp_path):
    with pytest.raises(InputError, match=flag.replace("+", r"\+")):
        FastSpeech2PretrainOptions(corpus=tmp_path, out=tmp_path / "run", **changes)


def test_bad_flags_on_the_command_line_name_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backbones", "pretrain", "tiny-fastspeech2", "--corpus", str(tmp_path), "--out", str(tmp_path / "r"),
              "--dropout", "1.5"])  # fmt: skip
    assert exit_.value.code == 2 and "--dropout 1.5: must be at least 0 and below 1" in capsys.readouterr().err


def test_a_corpus_without_the_voice_is_refused(corpus, tmp_path):
    options = replace(FastSpeech2PretrainOptions(corpus=corpus, out=tmp_path / "run", **TOY), voice="espeak-en-gb")
    with pytest.raises(InputError, match="no pretrain utterances by voice 'espeak-en-gb'"):
        recipe.prepare(options)


def test_the_command_line_runs_the_recipe(corpus, prepared, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(prepared, out / "data")
    toy = [f"--{k.replace('_', '-')}={v}" for k, v in TOY.items()]
    assert main(["backbones", "pretrain", "tiny-fastspeech2", "--corpus", str(corpus), "--out", str(out),
                 "--steps", "2", "--eval-every", "2", *toy]) == 0  # fmt: skip
    printed = capsys.readouterr().out  # the loop writes "step 2: ..." before the JSON of the best step
    assert json.loads(printed[printed.index("{") :])["step"] == 2 and (out / "model" / "spm_char.model").exists()


@pytest.mark.slow
def test_ship_copies_the_model_and_its_vocoder_measures_and_resolves_by_name(
    corpus, prepared, tmp_path, monkeypatch, tiny_backbone_dirs
):
    from speechpeft.backbones import builtin, load_frozen
    from speechpeft.backbones.pretrain.card_tts import ship_tts
    from speechpeft.backbones.pretrain.hifigan import pretrain_hifigan
    from speechpeft.backbones.pretrain.options import HifiGanPretrainOptions
    from speechpeft.tasks.tts import build

    recipe.pretrain_fastspeech2(toy_options(corpus, prepared, tmp_path / "run", steps=2, eval_every=2))
    vocoder = {"channels": 16, "segment_frames": 16, "batch_size": 2, "eval_utterances": 2, "threads": 1}
    pretrain_hifigan(HifiGanPretrainOptions(corpus=corpus, out=tmp_path / "voc", steps=2, eval_every=2, **vocoder))
    asr = str(tiny_backbone_dirs["whisper"])
    shipped = ship_tts(tmp_path / "run", corpus, asr=asr, weights_dir=tmp_path / "weights", name="tiny-fastspeech2",
                       sentences=2, vocoder_run=tmp_path / "voc")  # fmt: skip
    facts = json.loads((shipped / "speechpeft_card.json").read_text())
    assert facts["measured"]["sentences"] == 2 and facts["vocoder"]["steps"] == 2
    assert 1.0 <= facts["measured"]["dnsmos"]["ovrl_mos"] <= 5.0 and facts["measured"]["cer"] > 0
    card = (shipped / "README.md").read_text()
    assert "| tiny-fastspeech2 + HiFi-GAN |" in card and "| espeak-en-us recordings |" in card
    assert f"speechpeft backbones pretrain tiny-hifigan --corpus {corpus} --out {tmp_path / 'voc'}" in card
    assert f"--vocoder-run {tmp_path / 'voc'}" in card and "--voices espeak-en-us" in card
    monkeypatch.setattr(builtin, "WEIGHTS_DIR", tmp_path / "weights")
    task = build(load_frozen("speechpeft/tiny-fastspeech2", "tts", "fp32", device="cpu"))
    assert task.vocoder is not None and task.provenance()["vocoder"] == str(shipped / "vocoder")
