"""The TTS task's quality columns on real speech: DNSMOS, MCD against the recording, and CER through a listener."""

import jiwer
import numpy as np
import pytest

from speechpeft.backbones import builtin, load_frozen
from speechpeft.backbones.fingerprint import weights_fingerprint
from speechpeft.errors import InputError
from speechpeft.leaderboard.normalize import NORMALIZER, normalize_english
from speechpeft.tasks import tts
from speechpeft.tasks.base import Predictions
from speechpeft.tasks.runaway import token_cap
from speechpeft.tasks.tts import LISTENER, Listener, SpeechSynthesis
from tests.audio import spoken

# Real engine speech of texts the listener never saw with these voices, of different lengths (so a batch pads)
CLIPS = [
    ("turn on the kitchen lights", "espeak-en-us"),
    ("many husbands go broke on the money their wives save on sales", "flite-slt"),
    ("what is the weather like today", "festival-kal_diphone"),
]


@pytest.mark.slow
def test_tts_score_reports_every_column_and_what_listened(tiny_backbone_dirs, tmp_path):
    backbone = load_frozen(tiny_backbone_dirs["speecht5"], "tts", "fp32", device="cpu")
    task = SpeechSynthesis(backbone, listener=str(tiny_backbone_dirs["whisper"]))
    recording = spoken("turn on the lights", tmp_path)
    noisy = recording + np.random.default_rng(0).normal(0, 0.05, recording.shape).astype(np.float32)
    batch = Predictions(
        [recording, noisy], ["turn on the lights"] * 2, 0.1, extras=[{"reference_audio": recording}] * 2
    )
    metrics, items = task.score([batch])
    assert {"ovrl_mos", "sig_mos", "bak_mos", "p808_mos", "mcd", "cer"} <= set(metrics)
    assert items[0]["mcd"] == 0.0 and items[1]["mcd"] > 0.0  # the recording itself, then a noisy copy
    assert metrics["mcd"] == pytest.approx(items[1]["mcd"] / 2)
    assert all(isinstance(item["heard"], str) for item in items)  # what the (random, tiny) listener heard
    assert task.provenance() == {
        "listener": str(tiny_backbone_dirs["whisper"]), "listener_source": str(tiny_backbone_dirs["whisper"]),
        "listener_fingerprint": weights_fingerprint(tiny_backbone_dirs["whisper"]), "normalizer": NORMALIZER,
        "vocoder": "griffin-lim",
    }  # fmt: skip


def test_the_listener_is_whisper_tiny_en_unless_the_environment_names_another(monkeypatch):
    monkeypatch.delenv(tts.LISTENER_VARIABLE, raising=False)
    assert tts.default_listener() == LISTENER == "openai/whisper-tiny.en"
    monkeypatch.setenv(tts.LISTENER_VARIABLE, "speechpeft/tiny-whisper")  # what tests/conftest.py sets
    assert tts.default_listener() == "speechpeft/tiny-whisper"


@pytest.mark.slow
def test_the_default_listener_reads_real_engine_speech_alone_or_batched(tmp_path):
    """whisper-tiny.en, loaded offline, hears engine voices it was not trained on almost perfectly; each clip is
    padded to its 30 s window, so a clip's transcript is the same alone and in a batch of other lengths."""
    texts = [text for text, _ in CLIPS]
    audio = [spoken(text, tmp_path, voice=voice, name=str(i)) for i, (text, voice) in enumerate(CLIPS)]
    listener = Listener(LISTENER)
    batched = listener.hear(audio)
    assert batched == [listener.hear([clip])[0] for clip in audio]
    assert jiwer.cer(texts, [normalize_english(text) for text in batched]) < 0.1, batched
    provenance = listener.provenance()
    assert provenance["listener"] == LISTENER and provenance["listener_source"] == listener.backbone.source
    assert provenance["listener_fingerprint"] == weights_fingerprint(listener.backbone.source)


def test_a_listener_that_never_stops_is_cut_at_each_clips_own_cap(tiny_backbone_dirs):
    """The tiny random Whisper rarely ends a transcript: each clip stops at `token_cap` of its own length, the
    same in a batch as alone."""
    listener = Listener(str(tiny_backbone_dirs["whisper"]))
    rate = 16_000
    clips = [np.random.default_rng(seed).normal(0, 0.1, seconds * rate).astype(np.float32)
             for seed, seconds in ((0, 1), (1, 3))]  # fmt: skip
    batched = listener.token_ids(clips)
    assert batched == [listener.token_ids([clip])[0] for clip in clips]
    assert [len(ids) for ids in batched] == [token_cap(1.0), token_cap(3.0)]  # 12, 24 of 28 positions
    assert listener.hear(clips) == [listener.hear([clip])[0] for clip in clips]


def test_a_listener_that_is_not_whisper_is_refused(tiny_backbone_dirs):
    with pytest.raises(InputError, match="is a wav2vec2 model: name a Whisper checkpoint"):
        _ = Listener(str(tiny_backbone_dirs["wav2vec2"])).backbone


def test_a_listener_that_is_not_installed_leaves_out_the_cer_column(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(builtin, "WEIGHTS_DIR", tmp_path)  # speechpeft/tiny-whisper not shipped
    listener = Listener("speechpeft/tiny-whisper")
    assert listener.hear([np.zeros(16_000, dtype=np.float32)]) is None
    assert "no intelligibility (CER) column" in caplog.text
    assert listener.provenance()["listener_fingerprint"] is None
