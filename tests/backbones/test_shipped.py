"""The backbones shipped inside the package load by name, offline, and do their job on real speech."""

import jiwer
import torch

from speechpeft.backbones import load_frozen
from speechpeft.backbones.pretrain.card import transcribe
from speechpeft.backbones.pretrain.speecht5 import SPEAKER_EMBEDDING_DIM
from speechpeft.backbones.vocoder import griffin_lim
from tests.audio import spoken

# From the pretraining corpus's test split (never in its training text): a command and a sentence
SENTENCES = ["set an alarm for seven thirty", "many husbands go broke on the money their wives save on sales"]


def test_tiny_whisper_transcribes_a_pretraining_voice(tmp_path):
    backbone = load_frozen("speechpeft/tiny-whisper", "asr", "fp32", device="cpu")
    assert backbone.spec.family == "whisper" and not any(p.requires_grad for p in backbone.model.parameters())
    audio = [spoken(text, tmp_path, voice="espeak-en-us", name=str(i)) for i, text in enumerate(SENTENCES)]
    heard, _ = transcribe(backbone, audio)
    assert jiwer.cer(SENTENCES, heard) < 0.15, heard  # the card: 6 % CER on the pretraining voices


def test_tiny_speecht5_speaks_for_as_long_as_the_voice_it_learned(tmp_path):
    """It aligns and stops: the length tracks the real voice's recording of the same unseen sentence. (How
    intelligible it is, is measured in its card: whisper-tiny.en reads little of it.)"""
    backbone = load_frozen("speechpeft/tiny-speecht5", "tts", "fp32", device="cpu")
    ids = backbone.processor(text=SENTENCES[1], return_tensors="pt").input_ids
    torch.manual_seed(0)  # SpeechT5's prenet dropout stays on at inference
    with torch.no_grad():
        mel = backbone.model.generate_speech(ids, torch.zeros(1, SPEAKER_EMBEDDING_DIM), maxlenratio=15.0)
    audio = griffin_lim(mel, backbone.processor.feature_extractor)
    recorded = spoken(SENTENCES[1], tmp_path, voice="espeak-en-us")
    assert 0.7 < len(audio) / len(recorded) < 1.4 and audio.std() > 0.01  # speech-length sound, not silence
