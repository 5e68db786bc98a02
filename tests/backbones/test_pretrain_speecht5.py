"""The tiny-speecht5 recipe for a few steps, and the Griffin-Lim vocoder on a real recording."""

import json

import numpy as np
import pytest
import soundfile
import torch
import transformers

from speechpeft.backbones import load_frozen
from speechpeft.backbones.fingerprint import weights_fingerprint
from speechpeft.backbones.pretrain import speecht5 as recipe
from speechpeft.backbones.pretrain.card_tts import remeasure_tts, ship_tts
from speechpeft.backbones.vocoder import griffin_lim
from speechpeft.tasks.corpus import render
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions
from speechpeft.tasks.corpus.plan import Utterance

TINY = {"hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "batch_size": 4, "warmup": 2, "eval_utterances": 3,
        "threads": 1}  # fmt: skip


@pytest.mark.slow
def test_pretrain_speecht5_trains_exports_resumes_and_ships(tmp_path, tiny_backbone_dirs):
    corpus = tmp_path / "corpus"
    one_voice = SynthOptions(out=corpus, utterances=30, voices=("espeak-en-us",), splits=("pretrain=0.7", "test=0.3"))
    build_corpus(one_voice, progress=False)
    options = recipe.SpeechT5PretrainOptions(corpus=corpus, out=tmp_path / "run", steps=4, eval_every=2, **TINY)
    best = recipe.pretrain_speecht5(options)
    assert best["step"] in (2, 4) and best["mel_l1"] > 0 and best["length_ratio"] > 0

    backbone = load_frozen(tmp_path / "run" / "model", "tts", "fp32", device="cpu")
    assert isinstance(backbone.model, transformers.SpeechT5ForTextToSpeech)
    ids = backbone.processor(text="turn it up", return_tensors="pt").input_ids
    assert backbone.processor.tokenizer.decode(ids[0], skip_special_tokens=True) == "turn it up"

    recipe.pretrain_speecht5(recipe.SpeechT5PretrainOptions(**{**options.__dict__, "steps": 6}))
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 6

    asr = str(tiny_backbone_dirs["whisper"])
    shipped = ship_tts(tmp_path / "run", corpus, asr=asr, weights_dir=tmp_path, sentences=2)
    facts = json.loads((shipped / "speechpeft_card.json").read_text())["measured"]
    assert facts["sentences"] == 2 and 1.0 <= facts["dnsmos_of_reference_recordings"]["ovrl_mos"] <= 5.0
    assert 1.0 <= facts["dnsmos"]["ovrl_mos"] <= 5.0 and facts["cer"] > 0
    assert facts["asr"] == asr and facts["asr_fingerprint"] == weights_fingerprint(asr)
    card = (shipped / "README.md").read_text()
    assert "| tiny-speecht5 + Griffin-Lim |" in card and "| espeak-en-us recordings |" in card
    assert f"Measured by `speechpeft backbones ship tiny-speecht5 --run {tmp_path / 'run'}" in card

    training = json.loads((shipped / "speechpeft_card.json").read_text())["training"]
    remeasure_tts(corpus, asr=asr, weights_dir=tmp_path, sentences=2)
    again = json.loads((shipped / "speechpeft_card.json").read_text())
    assert again["training"] == training and again["measured"]["examples"] == facts["examples"]  # seeded: same speech
    card = (shipped / "README.md").read_text()
    assert f"Measured by `speechpeft backbones remeasure tiny-speecht5 --corpus {corpus} --asr {asr}`" in card


def test_mel_batches_pad_to_the_reduction_factor(tmp_path):
    mels = recipe.MelSet(np.ones((7, 80), dtype=np.float16), np.array([0, 3, 7]), ["ab", "abc"])
    tokenizer = recipe.char_tokenizer(["ab", "abc"], tmp_path)
    processor = transformers.SpeechT5Processor(transformers.SpeechT5FeatureExtractor(), tokenizer)
    batch = recipe.make_batch(processor, mels, np.array([0, 1]), reduction=3)
    assert batch["labels"].shape == (2, 6, 80)  # 4 frames, padded up to a multiple of 3
    assert (batch["labels"][0, 3:] == -100).all() and (batch["labels"][1, :4] == 1).all()
    assert batch["speaker_embeddings"].shape == (2, recipe.SPEAKER_EMBEDDING_DIM)


def test_griffin_lim_inverts_speecht5_features(tmp_path):
    """Analysis then Griffin-Lim gives a waveform of the same length whose mel is close to the original."""
    voice = Utterance("0", "the quick brown fox", "sentence", "", "[]", "", "espeak-en-us", "espeak-ng", "pretrain",
                      "pretrain", 1.0, 1.0)  # fmt: skip
    audio, rate = soundfile.read(render.render_clip(voice, tmp_path), dtype="float32")
    extractor = transformers.SpeechT5FeatureExtractor()
    mel = torch.from_numpy(extractor(audio_target=audio, sampling_rate=rate)["input_values"][0])
    waveform = griffin_lim(mel, extractor)
    assert abs(len(waveform) - len(audio)) <= extractor.sample_stride * 2
    again = torch.from_numpy(extractor(audio_target=waveform, sampling_rate=rate)["input_values"][0])
    frames = min(len(mel), len(again))
    assert (again[:frames] - mel[:frames]).abs().mean() < 0.35  # log10 units: within about a factor of 2
