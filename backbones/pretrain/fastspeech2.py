"""Pretrain `speechpeft/tiny-fastspeech2`: FastSpeech2ConformerModel from scratch on one espeak-ng voice.

FastSpeech 2 (https://arxiv.org/abs/2006.04558) with Conformer blocks, as transformers implements it (ESPnet's):
non-autoregressive, so it needs each input token's duration in mel frames. They come exact from libespeak-ng
itself (`phoneme_features`), with token-averaged pitch and energy; no aligner is trained. Input: one character
per espeak phoneme, words separated by spaces, through a sentencepiece `char` tokenizer held by a
`SpeechT5Processor` with SpeechT5's feature extractor (the mel targets), so nothing outside transformers is needed
to load it. Word boundaries and `</s>` are tokens of zero frames. The best step is picked by teacher-forced mel L1
on sentences held out of the pretrain split (not the test split, which measures the shipped model).
Design and budget: `backbones/pretrain/fastspeech2_plan.md`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import numpy as np
import sentencepiece
import torch
import transformers

from speechpeft.backbones.pretrain.loop import Recipe, export_half, options_record, train, warmup_cosine
from speechpeft.backbones.pretrain.options import FastSpeech2PretrainOptions
from speechpeft.backbones.pretrain.phoneme_features import (
    HOP_LENGTH,
    PhonemeFeatures,
    PhonemeLabels,
    build_phoneme_features,
    normalisation,
    normalise,
)
from speechpeft.backbones.pretrain.voice_data import hold_out, voice_pretrain_rows
from speechpeft.errors import InputError
from speechpeft.tasks.corpus.espeak_timing import WORD_SEPARATOR, phoneme_tokens
from speechpeft.tasks.corpus.render import SAMPLE_RATE
from speechpeft.tasks.rows import Rule, sift, warn_left_out

MAX_TEXT_CHARACTERS = 120  # as tiny-speecht5: the corpus's sentences, commands and keywords, not paragraphs
BUCKET_BATCHES = 8  # a batch is drawn from the utterances of a bucket this many batches wide, sorted by length
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3  # pad 0: FastSpeech2Conformer's embedding keeps index 0 at zero
WORD_PIECE = "\u2581"  # sentencepiece's word boundary


def phoneme_tokenizer(directory: Path) -> transformers.SpeechT5Tokenizer:
    """A sentencepiece `char` model over every token of the phoneme inventory (`phoneme_tokens()`), so its ids
    depend on the inventory only, never on a corpus. No normalisation: NFKC would rewrite some tokens (ĳ, ŀ)."""
    model, inventory = io.BytesIO(), "".join(phoneme_tokens().values())
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([inventory]), model_writer=model, model_type="char", vocab_size=len(inventory) + 5,
        hard_vocab_limit=False, character_coverage=1.0, normalization_rule_name="identity",
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID, minloglevel=2,
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spm_char.model").write_bytes(model.getvalue())
    return transformers.SpeechT5Tokenizer(str(directory / "spm_char.model"))


def phoneme_processor(directory: Path) -> transformers.SpeechT5Processor:
    """The run's processor (phoneme tokenizer + SpeechT5's mel extractor), made once and reloaded after."""
    if (directory / "spm_char.model").exists():
        return transformers.SpeechT5Processor.from_pretrained(directory)
    processor = transformers.SpeechT5Processor(transformers.SpeechT5FeatureExtractor(), phoneme_tokenizer(directory))
    processor.save_pretrained(directory)
    return processor


def token_layout(phonemes: str, tokenizer: transformers.SpeechT5Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [T] of a `phoneme_text`, and per token the index of its phoneme (-1: a word boundary or `</s>`).

    Raises ValueError if the tokens do not spell the phonemes one by one (a character missing from the model)."""
    ids = tokenizer(phonemes).input_ids
    letters = phonemes.replace(WORD_SEPARATOR, "")
    owners, next_phoneme = [], 0
    for piece in tokenizer.convert_ids_to_tokens(ids):
        if piece in (WORD_PIECE, tokenizer.eos_token):
            owners.append(-1)
            continue
        if next_phoneme >= len(letters) or piece != letters[next_phoneme]:
            raise ValueError(f"the tokenizer spells {phonemes!r} as {tokenizer.convert_ids_to_tokens(ids)}")
        owners.append(next_phoneme)
        next_phoneme += 1
    if next_phoneme != len(letters):
        raise ValueError(f"the tokenizer left phonemes of {phonemes!r} out")
    return np.asarray(ids, dtype=np.int64), np.asarray(owners, dtype=np.int64)


@dataclass
class LabelledUtterance:
    """One utterance as the model takes it: per token, ids and labels (0 where the token is no phoneme)."""

    ids: np.ndarray  # int64 [T]
    durations: np.ndarray  # int64 [T], frames (summing to the mel's frames)
    pitch: np.ndarray  # float32 [T], normalised log F0
    energy: np.ndarray  # float32 [T], normalised energy
    mel: np.ndarray | None = None  # float32 [frames, 80] log10, when the caller has it


def token_labels(labels: PhonemeLabels, mel: np.ndarray | None, tokenizer, stats: dict) -> LabelledUtterance:
    """A phoneme's duration, pitch and energy (normalised by `stats`) on its token, 0 on the others (word
    boundaries, `</s>`). Raises ValueError when the tokenizer does not spell the phonemes (`token_layout`)."""
    ids, owners = token_layout(labels.phonemes, tokenizer)
    own = owners >= 0
    per_token = []
    for values in (labels.durations.astype(np.int64), normalise(labels.pitch, stats["pitch"]),
                   normalise(labels.energy, stats["energy"])):  # fmt: skip
        spread = np.zeros(len(ids), dtype=values.dtype)
        spread[own] = values[owners[own]]
        per_token.append(spread)
    return LabelledUtterance(ids, *per_token, mel=mel)


def pad_batch(utterances: list[LabelledUtterance]) -> dict[str, torch.Tensor]:
    """Padded model inputs: input_ids [B, T] (pad 0), attention_mask [B, T], duration_labels [B, T],
    pitch_labels and energy_labels [B, T, 1], spectrogram_labels [B, frames, 80] (log10 mel; pad -100)."""
    count, tokens = len(utterances), max(len(u.ids) for u in utterances)
    batch = {
        "input_ids": torch.full((count, tokens), PAD_ID, dtype=torch.long),
        "attention_mask": torch.zeros(count, tokens, dtype=torch.long),
        "duration_labels": torch.zeros(count, tokens, dtype=torch.long),
        "pitch_labels": torch.zeros(count, tokens, 1),
        "energy_labels": torch.zeros(count, tokens, 1),
        "spectrogram_labels": torch.full((count, max(len(u.mel) for u in utterances), 80), -100.0),
    }
    for b, u in enumerate(utterances):
        n = len(u.ids)
        batch["input_ids"][b, :n] = torch.from_numpy(u.ids)
        batch["attention_mask"][b, :n] = 1
        batch["duration_labels"][b, :n] = torch.from_numpy(u.durations)
        batch["pitch_labels"][b, :n, 0] = torch.from_numpy(u.pitch)
        batch["energy_labels"][b, :n, 0] = torch.from_numpy(u.energy)
        batch["spectrogram_labels"][b, : len(u.mel)] = torch.from_numpy(u.mel)
    return batch


@dataclass
class Examples:
    """Rows of a feature store, labelled per token; their mels stay in the (memory-mapped) store."""

    features: PhonemeFeatures
    rows: np.ndarray  # indices into `features`
    utterances: list[LabelledUtterance]

    def __len__(self) -> int:
        return len(self.rows)

    def frames(self) -> np.ndarray:
        return np.diff(self.features.frame_offsets)[self.rows]


def examples(features: PhonemeFeatures, rows: np.ndarray, tokenizer, stats: dict) -> Examples:
    """Token-level labels of `rows` (`token_labels`)."""
    return Examples(features, rows, [token_labels(features.labels(int(row)), None, tokenizer, stats) for row in rows])


def make_batch(data: Examples, positions: np.ndarray) -> dict[str, torch.Tensor]:
    """`pad_batch` of the utterances at `positions`, their mels read from the store."""
    return pad_batch([replace(data.utterances[p], mel=data.features.mel(int(data.rows[p]))) for p in positions])


def batch_positions(frames: np.ndarray, seed: int, step: int, batch_size: int) -> np.ndarray:
    """The utterances of `step`'s batch, a pure function of (seed, step), so a resumed run sees the same batches.

    Utterances sorted by length are cut into buckets `BUCKET_BATCHES` batches wide; one bucket is drawn (in
    proportion to its size, so every utterance is equally likely) and the batch from it without replacement:
    little padding, and the model still sees every length."""
    order = np.argsort(frames, kind="stable")
    size = min(batch_size, len(order))
    buckets = np.array_split(order, max(1, len(order) // (size * BUCKET_BATCHES)))
    rng = np.random.default_rng([seed, step])
    bucket = buckets[rng.choice(len(buckets), p=[len(b) / len(order) for b in buckets])]
    return rng.choice(bucket, size=size, replace=False)


def loss_parts(output, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loss's parts, for the curves: mel L1 after the postnet (log10 units), and the MSE of log(1 + duration),
    pitch and energy (normalised units) over real tokens. Train-mode outputs (durations in the log domain)."""
    mel_mask, tokens = batch["spectrogram_labels"] != -100, batch["attention_mask"].bool()
    spectrogram = output.spectrogram[:, : mel_mask.shape[1]]
    log_durations = torch.log1p(batch["duration_labels"].float())
    return {
        "mel_l1": (spectrogram[mel_mask] - batch["spectrogram_labels"][mel_mask]).abs().mean(),
        "duration_mse": ((output.duration_outputs - log_durations)[tokens] ** 2).mean(),
        "pitch_mse": ((output.pitch_outputs - batch["pitch_labels"])[tokens] ** 2).mean(),
        "energy_mse": ((output.energy_outputs - batch["energy_labels"])[tokens] ** 2).mean(),
    }


@contextmanager
def teacher_forced(model: torch.nn.Module) -> Iterator[None]:
    """Train mode (the model reads its labels only then) with dropout and BatchNorm frozen: deterministic."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout | torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train()


def evaluate(model, held_out: Examples, batch_size: int) -> dict[str, float]:
    """Teacher-forced loss parts on the held-out sentences (`mel_l1` picks the best step), averaged over batches
    weighted by their utterances."""
    totals: dict[str, float] = {}
    with teacher_forced(model):
        for start in range(0, len(held_out), batch_size):
            positions = np.arange(start, min(start + batch_size, len(held_out)))
            batch = make_batch(held_out, positions)
            output = model(**batch)
            parts = {"loss": output.loss, **loss_parts(output, batch)}
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + value.item() * len(positions) / len(held_out)
    return totals


def fastspeech2_config(options: FastSpeech2PretrainOptions, vocab_size: int, record: dict):
    """The architecture of the plan (§7): Conformer encoder and decoder, a linear FFN (kernel 1), two-layer
    variance predictors as wide as the model; `record` (phonemiser, feature and pitch/energy statistics) is kept
    in config.json under "speechpeft", so adapter training computes identical labels."""
    width, drop = options.hidden, options.dropout
    return transformers.FastSpeech2ConformerConfig(
        vocab_size=vocab_size, hidden_size=width, num_mel_bins=80, reduction_factor=1,
        encoder_layers=options.layers, decoder_layers=options.layers, encoder_num_attention_heads=options.heads,
        decoder_num_attention_heads=options.heads, encoder_linear_units=options.ffn,
        decoder_linear_units=options.ffn, positionwise_conv_kernel_size=1, decoder_kernel_size=options.decoder_kernel,
        duration_predictor_channels=width, pitch_predictor_channels=width, energy_predictor_channels=width,
        pitch_predictor_layers=2, speech_decoder_postnet_units=width,
        encoder_dropout_rate=drop, encoder_positional_dropout_rate=drop, encoder_attention_dropout_rate=drop,
        decoder_dropout_rate=drop, decoder_positional_dropout_rate=drop, decoder_attention_dropout_rate=drop,
        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, speechpeft=record,
    )  # fmt: skip


def speechpeft_record(options: FastSpeech2PretrainOptions, stats: dict) -> dict:
    """What a user of the model needs to make its inputs and labels, stored in its config.json."""
    return {
        "phonemizer": {"engine": "espeak-ng", "voice": options.voice, "word_separator": WORD_SEPARATOR,
                       "tokens": phoneme_tokens()},  # espeak mnemonic -> input character
        "features": {"sampling_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH, "mel": "SpeechT5FeatureExtractor log10"},
        **stats,
    }  # fmt: skip


def voice_rows(corpus_dir: Path, voice: str) -> tuple[datasets.Dataset, dict[str, int]]:
    """The pretrain rows spoken by `voice` whose text fits, and the count of those left out as too long.

    Raises InputError as `voice_pretrain_rows`, and when every text is too long."""
    rows = voice_pretrain_rows(corpus_dir, voice)
    rows, left_out = sift(rows, [Rule("text_too_long", ("text",), lambda t: len(t) > MAX_TEXT_CHARACTERS)])
    if len(rows) == 0:
        raise InputError(f"every pretrain text of {voice} in {corpus_dir} is over {MAX_TEXT_CHARACTERS} characters: "
                         "synthesise a corpus of sentences and commands (`make tts-corpus`)")  # fmt: skip
    return rows, left_out


def prepare(options: FastSpeech2PretrainOptions) -> tuple[transformers.SpeechT5Processor, Examples, Examples, dict]:
    """Processor, training and held-out examples, and the pitch/energy statistics of the training rows."""
    rows, left_out = voice_rows(options.corpus, options.voice)
    data = options.out / "data"
    processor = phoneme_processor(data / "processor")
    features = build_phoneme_features(rows, processor.feature_extractor, data / "pretrain", options.feature_jobs,
                                      left_out)  # fmt: skip
    warn_left_out(features.left_out, len(features), "pretrain")
    if len(features) == 0:
        raise InputError(f"no {options.voice} row of {options.corpus} could be timed: {features.left_out}; render the "
                         "corpus again with this machine's espeak-ng (`speechpeft data synth`)")  # fmt: skip
    train_rows, held_rows = hold_out(features.texts, options.eval_utterances, options.seed)
    stats = normalisation(features, train_rows)
    train_data, held_out = (examples(features, r, processor.tokenizer, stats) for r in (train_rows, held_rows))
    return processor, train_data, held_out, stats


def pretrain_fastspeech2(options: FastSpeech2PretrainOptions) -> dict:
    """Train (resuming from `out/checkpoint`); the best model by held-out mel L1 is exported to `out/model` in
    float16 with its processor. Returns the best step's metrics."""
    torch.set_num_threads(options.threads)
    processor, train_data, held_out, stats = prepare(options)
    torch.manual_seed(options.seed)
    config = fastspeech2_config(options, len(processor.tokenizer), speechpeft_record(options, stats))
    model = transformers.FastSpeech2ConformerModel(config)
    frames = train_data.frames()

    def step_losses(step: int) -> dict[str, torch.Tensor]:
        batch = make_batch(train_data, batch_positions(frames, options.seed, step, options.batch_size))
        output = model(**batch)
        return {"loss": output.loss, **{k: v.detach() for k, v in loss_parts(output, batch).items()}}

    recipe = Recipe(
        name="tiny-fastspeech2", modules={"model": model}, losses=step_losses,
        learning_rate=lambda step: warmup_cosine(options, step), score="mel_l1",
        evaluate=lambda: evaluate(model, held_out, options.batch_size),
        export=lambda: export_half(model, processor, options.out / "model"), options=options_record(options),
    )  # fmt: skip
    return train(recipe, options.out, options.steps, options.eval_every, options.precision == "bf16")
