"""Short Whisper encoder windows (`backbones.window`) and the runaway-decoding guard (`tasks.runaway`)."""

import copy

import numpy as np
import pytest
import torch

from speechpeft.backbones import load_frozen
from speechpeft.backbones.window import check_window, windowed_extractor
from speechpeft.errors import InputError
from speechpeft.tasks.catalog import TASKS
from speechpeft.tasks.runaway import ran_away, repeats_ngram, token_cap
from tests.audio import speech_rows


def test_token_cap_allows_eight_tokens_a_second_and_at_least_twelve():
    assert token_cap(0.5) == 12 and token_cap(1.5) == 12 and token_cap(2.0) == 16 and token_cap(3.01) == 25


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([5, 5, 5], True),  # one token three times
        ([1, 2, 7, 8, 7, 8, 7, 8], True),  # a bigram three times, back to back
        ([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4], True),  # a 4-gram three times
        ([1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5], False),  # a 5-gram is longer than the guard looks
        ([5, 5, 6, 5, 5], False),  # never three in a row
        ([7, 8, 7, 8, 9, 7, 8], False),
        ([], False),
    ],
)
def test_repeated_ngrams(tokens, expected):
    assert repeats_ngram(tokens) is expected


def test_ran_away_on_the_cap_or_a_repeat():
    assert ran_away(list(range(12)), cap=12) and not ran_away(list(range(11)), cap=12)
    assert ran_away([3, 3, 3], cap=12)


def test_check_window_refuses_what_the_encoder_cannot_take(tiny_backbone_dirs):
    whisper = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")  # an 8 s window
    check_window(4.0, whisper.model)
    check_window(0.02, whisper.model)
    for seconds in (8.02, 0.0, 4.01):
        with pytest.raises(InputError, match=r"multiple of 0\.02 s"):
            check_window(seconds, whisper.model)
    with pytest.raises(InputError, match="Whisper backbones only"):
        load_frozen(tiny_backbone_dirs["wav2vec2"], "classify", "fp32", device="cpu", labels=["a", "b"],
                    window_seconds=4.0)  # fmt: skip


def _truncated_copy(model: torch.nn.Module, positions: int) -> torch.nn.Module:
    """The same weights with the positional table cut to `positions` rows: built by hand, no hooks."""
    short = copy.deepcopy(model)
    short.config.max_source_positions = positions
    encoder = short.model.encoder
    table = encoder.embed_positions.weight.data[:positions].clone()
    encoder.embed_positions = torch.nn.Embedding.from_pretrained(table, freeze=True)
    encoder.max_source_positions = positions
    return short


def test_a_short_window_runs_the_encoder_on_the_first_rows_of_its_positional_table(tiny_backbone_dirs):
    full = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    reference = _truncated_copy(full.model, 200)  # 4 s = 200 positions
    windowed = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu", window_seconds=4.0)
    torch.manual_seed(0)
    short_features, long_features = torch.randn(2, 80, 400), torch.randn(2, 80, 800)
    with torch.no_grad():
        expected = reference.model.encoder(short_features).last_hidden_state
        got = windowed.model.model.encoder(short_features).last_hidden_state
        assert got.shape == (2, 200, 32)
        torch.testing.assert_close(got, expected)
        # the full window still works, and the config is the checkpoint's own between calls
        torch.testing.assert_close(
            windowed.model.model.encoder(long_features).last_hidden_state,
            full.model.model.encoder(long_features).last_hidden_state,
        )
    assert windowed.model.config.max_source_positions == 400
    assert windowed.model.model.encoder.embed_positions.num_embeddings == 400
    assert windowed.model.state_dict().keys() == full.model.state_dict().keys()


def test_windowed_extractor_pads_to_the_short_window(tiny_backbone_dirs):
    extractor = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu").processor.feature_extractor
    short = windowed_extractor(extractor, 4.0)
    features = short(np.zeros(16_000, dtype=np.float32), sampling_rate=16_000, return_tensors="pt").input_features
    assert features.shape == (1, 80, 400) and extractor.n_samples == 8 * 16_000  # the original is untouched


def test_runaway_clips_are_decoded_again_at_the_full_window(tiny_backbone_dirs, tmp_path):
    """A random tiny Whisper never stops on its own: every clip hits its cap under the 4 s window and is redone
    at the full 8 s window, whose transcript is what plain full-window decoding gives."""
    rows = speech_rows([("yes", "espeak-en-us"), ("play some jazz music", "espeak-en-us")], tmp_path)
    windowed = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu", window_seconds=4.0)
    full = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    entry = TASKS.get("asr")
    short_task, full_task = entry.build(windowed, None), entry.build(full, None)
    batch = short_task.collate(list(rows))
    assert batch["input_features"].shape[-1] == 400  # both clips fit the short window
    with torch.no_grad():
        predictions = short_task.predict(windowed.model, batch)
        plain = full_task.predict(full.model, full_task.collate(list(rows)))
    assert [e["window_seconds"] for e in predictions.extras] == [8, 8]
    assert predictions.outputs == plain.outputs
    metrics, items = short_task.score([predictions])
    assert metrics["full_window_utterances"] == 2 and [i["window_seconds"] for i in items] == [8, 8]


def _frames_seen(model: torch.nn.Module) -> list[int]:
    """The mel length of every input the model's Whisper encoder runs on, appended as it runs."""
    seen: list[int] = []
    model.model.encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("input_features", args[0] if args else None).shape[-1]),
        with_kwargs=True,
    )
    return seen


def test_generate_runs_the_encoder_at_the_short_window_and_long_clips_apart(tiny_backbone_dirs, tmp_path):
    """`generate` reads the window from the config before the encoder runs and pads the input up to it: decoding
    must run inside `encoder_window`. A clip longer than the short window is decoded apart, at the full window,
    so the short clip beside it gets the same window as alone."""
    long_text = "turn on the kitchen lights and play some jazz music and what is the weather like"
    rows = speech_rows([("yes", "espeak-en-us"), (long_text, "espeak-en-us")], tmp_path)
    assert 4 * 16_000 < len(rows[1]["audio"].get_all_samples().data[0]) <= 8 * 16_000
    windowed = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu", window_seconds=4.0)
    seen = _frames_seen(windowed.model)
    task = TASKS.get("asr").build(windowed, None)
    with torch.no_grad():
        task.predict(windowed.model, task.collate(list(rows)))
    # the short clip at 4 s (400 frames); then the long clip and the short one that ran away, at 8 s
    assert seen[0] == 400 and set(seen[1:]) == {800}
    assert windowed.model.config.max_source_positions == 400


def test_every_decode_stops_at_its_clips_cap_whisper_and_speecht5(tiny_backbone_dirs, tmp_path):
    """A random tiny model never stops on its own: without a short window too, decoding stops at the clip's cap
    (a decoder step per token, the prompt's step first), and a clip's transcript is the same batched or alone.
    SpeechT5's config names its decoder positions `max_text_positions`."""
    rows = speech_rows([("yes", "espeak-en-us"), ("play some jazz music", "espeak-en-us")], tmp_path)
    for family in ("whisper", "speecht5-asr"):
        backbone = load_frozen(tiny_backbone_dirs[family], "asr", "fp32", device="cpu")
        task = TASKS.get("asr").build(backbone, None)
        steps: list[int] = []
        backbone.model.get_decoder().register_forward_hook(lambda *_, steps=steps: steps.append(1))
        with torch.no_grad():
            alone = task.predict(backbone.model, task.collate([rows[0]]))
            assert len(steps) <= token_cap(0.5) + 1, family  # "yes": a cap of 12 tokens
            together = task.predict(backbone.model, task.collate(list(rows)))
        assert together.outputs[0] == alone.outputs[0], family
