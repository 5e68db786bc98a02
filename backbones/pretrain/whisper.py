"""Pretrain `speechpeft/tiny-whisper`: the WhisperForConditionalGeneration architecture, from scratch, on CPU.

Recipe (what makes a small attention model align within the hour rather than never, see FACTS.md):
- a CTC head on the encoder, trained jointly (loss = (1 - w) * attention + w * CTC), which forces the
  encoder to carry monotonic, letter-level information the decoder's cross-attention can lock onto;
- a short-utterance curriculum: the longest clip allowed grows from `curriculum_start_seconds` to the
  full chunk over `curriculum_steps`;
- a 6 s chunk (Whisper's encoder needs a fixed 2 x max_source_positions frames), bf16 autocast,
  features computed once into a memory-mapped file.
Everything resumes from the last checkpoint: same options, same batches, same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import jiwer
import numpy as np
import torch
import transformers
from transformers.models.whisper.modeling_whisper import shift_tokens_right

from speechpeft.backbones.pretrain import tokenizer as tok
from speechpeft.backbones.pretrain.features import FeatureSet, build_features
from speechpeft.backbones.pretrain.loop import Recipe, export_half, options_record, train, warmup_cosine
from speechpeft.backbones.pretrain.options import WhisperPretrainOptions
from speechpeft.errors import InputError

SAMPLE_RATE = 16_000  # Hz
MEL_BINS = 80
FRAMES_PER_SECOND = 100  # hop of 160 samples = 10 ms


def whisper_config(
    options: WhisperPretrainOptions, tokenizer: transformers.PreTrainedTokenizerBase
) -> transformers.WhisperConfig:
    eot = tokenizer.convert_tokens_to_ids(tok.ENDOFTEXT)
    return transformers.WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=MEL_BINS, d_model=options.d_model,
        encoder_layers=options.layers, decoder_layers=options.layers,
        encoder_attention_heads=options.heads, decoder_attention_heads=options.heads,
        encoder_ffn_dim=options.ffn, decoder_ffn_dim=options.ffn,
        max_source_positions=round(options.chunk_seconds * FRAMES_PER_SECOND) // 2, max_target_positions=128,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids(tok.STARTOFTRANSCRIPT),
        begin_suppress_tokens=None, suppress_tokens=None, dropout=0.1, tie_word_embeddings=True,
    )  # fmt: skip


def generation_config(config: transformers.WhisperConfig, tokenizer) -> transformers.GenerationConfig:
    """English-only Whisper prompting: <|startoftranscript|><|notimestamps|>, greedy, no empty output."""
    return transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id,
        no_timestamps_token_id=tokenizer.convert_tokens_to_ids(tok.NOTIMESTAMPS), is_multilingual=False,
        begin_suppress_tokens=[config.eos_token_id], max_length=config.max_target_positions,
    )  # fmt: skip


@dataclass
class Prepared:
    tokenizer: transformers.PreTrainedTokenizerBase
    extractor: transformers.WhisperFeatureExtractor
    train: FeatureSet
    evals: dict[str, FeatureSet]  # voice group -> held-out sentences in those voices


def prepare(options: WhisperPretrainOptions) -> Prepared:
    """Tokenizer and features, built once into `out/data` and reused by every later (resumed) run."""
    corpus = datasets.load_from_disk(str(options.corpus))
    longest = options.chunk_seconds - 0.05
    # input_columns: filter on metadata only, without decoding any audio
    train_rows = corpus["pretrain"].filter(lambda d: d <= longest, input_columns="duration")
    data = options.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    if options.init_from:  # the model's vocabulary, whatever this corpus's text would give
        tokenizer = transformers.WhisperTokenizerFast.from_pretrained(options.init_from)
        tokenizer.save_pretrained(data / "tokenizer")
    elif (data / "tokenizer").exists():
        tokenizer = transformers.WhisperTokenizerFast.from_pretrained(data / "tokenizer")
    else:
        tokenizer = tok.train_whisper_tokenizer(list(train_rows["text"]), options.vocab_size)
        tokenizer.save_pretrained(data / "tokenizer")
    extractor = transformers.WhisperFeatureExtractor(feature_size=MEL_BINS, chunk_length=int(options.chunk_seconds))
    train = build_features(train_rows, extractor, data / "train.npy", "train features")
    evals = {}
    for group in ("pretrain", "adapt"):
        wanted = lambda g, d, k, group=group: g == group and d <= longest and k != "keyword"  # noqa: E731
        rows = corpus["test"].filter(wanted, input_columns=["voice_group", "duration", "kind"])
        rows = rows.shuffle(seed=options.seed).select(range(min(options.eval_utterances, len(rows))))
        evals[group] = build_features(rows, extractor, data / f"test-{group}.npy", f"test features ({group})")
    return Prepared(tokenizer, extractor, train, evals)


def batch_indices(options: WhisperPretrainOptions, durations: np.ndarray, step: int) -> np.ndarray:
    """The batch for `step`: a pure function of (seed, step), so a resumed run sees the same batches."""
    ramp = min(1.0, step / max(1, options.curriculum_steps))
    longest = options.curriculum_start_seconds + ramp * (options.chunk_seconds - options.curriculum_start_seconds)
    eligible = np.flatnonzero(durations <= longest)
    rng = np.random.default_rng([options.seed, step])
    return np.sort(rng.choice(eligible, size=min(options.batch_size, len(eligible)), replace=False))


def spec_augment(features: np.ndarray, durations: np.ndarray, options: WhisperPretrainOptions,
                 rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """SpecAugment without time warping: zero random mel bands and spans of each clip's speech, in place.

    Zero is the normalised log-mel's middle, so a mask reads as a flat, uninformative patch; the decoder
    can no longer recite a memorised sentence from a few clear frames.
    """
    for row, seconds in enumerate(durations):
        frames = int(seconds * FRAMES_PER_SECOND)
        for _ in range(options.freq_masks):
            width = rng.integers(0, 11)
            start = rng.integers(0, MEL_BINS - width + 1)
            features[row, start : start + width, :frames] = 0
        for _ in range(options.time_masks):
            width = rng.integers(0, max(1, frames // 20) + 1)
            start = rng.integers(0, max(1, frames - width + 1))
            features[row, :, start : start + width] = 0
    return features


def make_batch(prepared: Prepared, indices: np.ndarray, options: WhisperPretrainOptions,
               step: int) -> dict[str, torch.Tensor]:  # fmt: skip
    texts = [prepared.train.texts[i] for i in indices]
    ids = [prepared.tokenizer(t).input_ids[1:] for t in texts]  # drop <|startoftranscript|>: the model prepends it
    ctc = [prepared.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    labels = torch.full((len(ids), max(map(len, ids))), -100)
    for row, seq in enumerate(ids):
        labels[row, : len(seq)] = torch.tensor(seq)
    durations = prepared.train.durations[indices]
    features = np.asarray(prepared.train.features[indices], dtype=np.float32)
    features = spec_augment(features, durations, options, np.random.default_rng([options.seed, step, 1]))
    return {
        "input_features": torch.from_numpy(features),
        "labels": labels,
        "ctc_targets": torch.tensor([t for seq in ctc for t in seq]),
        "ctc_target_lengths": torch.tensor([len(seq) for seq in ctc]),
        "encoder_lengths": torch.from_numpy(durations * FRAMES_PER_SECOND / 2).ceil().long(),
    }


def losses(model, ctc_head: torch.nn.Linear, batch: dict[str, torch.Tensor],
           label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Attention (decoder cross-entropy) and CTC losses from one encoder pass."""
    encoded = model.model.encoder(batch["input_features"]).last_hidden_state
    config = model.config  # the decoder input is the labels shifted right, as Whisper builds it from `labels`
    inputs = shift_tokens_right(batch["labels"], config.pad_token_id, config.decoder_start_token_id)
    logits = model(encoder_outputs=(encoded,), decoder_input_ids=inputs).logits  # no `labels`: no second loss
    attention = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(),
                                                  ignore_index=-100, label_smoothing=label_smoothing)  # fmt: skip
    log_probs = ctc_head(encoded).float().log_softmax(-1).transpose(0, 1)  # [frames, batch, vocab + blank]
    lengths = batch["encoder_lengths"].clamp(max=encoded.shape[1])
    ctc = torch.nn.functional.ctc_loss(log_probs, batch["ctc_targets"], lengths, batch["ctc_target_lengths"],
                                       blank=ctc_head.out_features - 1, zero_infinity=True)  # fmt: skip
    return attention, ctc


def transcribe(model, tokenizer, features: np.ndarray, precision: str, batch: int = 32) -> list[str]:
    model.eval()
    texts = []
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, len(features), batch):
            chunk = torch.from_numpy(np.asarray(features[start : start + batch], dtype=np.float32))
            ids = model.generate(input_features=chunk)
            texts += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return texts


def evaluate(model, prepared: Prepared, precision: str) -> dict[str, float]:
    metrics = {}
    for group, fs in prepared.evals.items():
        hypotheses = transcribe(model, prepared.tokenizer, fs.features, precision)
        metrics[f"wer_{group}"] = jiwer.wer(fs.texts, hypotheses)
        metrics[f"cer_{group}"] = jiwer.cer(fs.texts, hypotheses)
    return metrics


def build_model(
    options: WhisperPretrainOptions, tokenizer
) -> tuple[transformers.WhisperForConditionalGeneration, torch.nn.Linear]:
    """A fresh model from the options' shape, or the `--init-from` model; the CTC head is always new."""
    torch.manual_seed(options.seed)
    if options.init_from:
        model = transformers.WhisperForConditionalGeneration.from_pretrained(
            options.init_from, torch_dtype=torch.float32, use_safetensors=True
        )
    else:
        model = transformers.WhisperForConditionalGeneration(whisper_config(options, tokenizer))
        model.generation_config = generation_config(model.config, tokenizer)
    if model.config.max_source_positions * 2 != options.chunk_seconds * FRAMES_PER_SECOND:
        raise InputError(f"--init-from {options.init_from} takes {model.config.max_source_positions * 2} frames: "
                         f"pass the --chunk-seconds it was trained with")  # fmt: skip
    ctc_head = torch.nn.Linear(model.config.d_model, len(tokenizer) + 1)  # last class: the CTC blank
    return model, ctc_head


def pretrain_whisper(options: WhisperPretrainOptions) -> dict:
    """Train (resuming from `out/checkpoint` if present); the best model by WER is exported to `out/model`."""
    torch.set_num_threads(options.threads)
    prepared = prepare(options)
    model, ctc_head = build_model(options, prepared.tokenizer)

    def step_losses(step: int) -> dict[str, torch.Tensor]:
        batch = make_batch(prepared, batch_indices(options, prepared.train.durations, step), options, step)
        attention, ctc = losses(model, ctc_head, batch, options.label_smoothing)
        return {
            "loss": (1 - options.ctc_weight) * attention + options.ctc_weight * ctc,
            "attention": attention,
            "ctc": ctc,
        }

    recipe = Recipe(
        name="tiny-whisper", modules={"model": model, "ctc_head": ctc_head}, losses=step_losses,
        learning_rate=lambda step: warmup_cosine(options, step), score="wer_pretrain",
        evaluate=lambda: evaluate(model, prepared, options.precision),
        export=lambda: export_half(model, whisper_processor(prepared), options.out / "model"),
        options=options_record(options),
    )  # fmt: skip
    return train(recipe, options.out, options.steps, options.eval_every, options.precision == "bf16")


def whisper_processor(prepared: Prepared) -> transformers.WhisperProcessor:
    return transformers.WhisperProcessor(feature_extractor=prepared.extractor, tokenizer=prepared.tokenizer)
