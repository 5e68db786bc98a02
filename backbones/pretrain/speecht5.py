"""Pretrain `speechpeft/tiny-speecht5`: SpeechT5ForTextToSpeech from scratch on one synthetic voice.

Recipe (FACTS.md: it aligns within minutes on this CPU): character input (a sentencepiece `char`
model), log10 mel targets from SpeechT5's own feature extractor, reduction factor 2, SpeechT5's
guided-attention loss (a diagonal prior on cross-attention), a zero speaker embedding (one voice).
The best step is picked by teacher-forced mel L1 on held-out sentences; the vocoder is Griffin-Lim
(`speechpeft.backbones.vocoder`), which needs no training and no download.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import sentencepiece
import torch
import transformers
from tqdm.auto import tqdm

from speechpeft.backbones.pretrain.loop import Recipe, export_half, options_record, train, warmup_cosine
from speechpeft.backbones.pretrain.options import SpeechT5PretrainOptions
from speechpeft.errors import InputError

SPEAKER_EMBEDDING_DIM = 16
MAX_TEXT_CHARACTERS = 120


@dataclass
class MelSet:
    """Variable-length log-mel targets stored end to end, with their texts."""

    mels: np.ndarray  # [total frames, 80] float16
    offsets: np.ndarray  # [N + 1]
    texts: list[str]

    def mel(self, index: int) -> np.ndarray:
        return np.asarray(self.mels[self.offsets[index] : self.offsets[index + 1]], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.texts)


def char_tokenizer(texts: list[str], directory: Path) -> transformers.SpeechT5Tokenizer:
    """A sentencepiece model over characters (ids as in microsoft/speecht5_tts: bos 0, pad 1, eos 2, unk 3)."""
    model = io.BytesIO()
    alphabet = "abcdefghijklmnopqrstuvwxyz' "
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([*texts, alphabet]), model_writer=model, model_type="char",
        vocab_size=len(alphabet) + 4, hard_vocab_limit=False, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
    )  # fmt: skip
    path = directory / "spm_char.model"
    path.write_bytes(model.getvalue())
    return transformers.SpeechT5Tokenizer(str(path))


def build_mels(rows: datasets.Dataset, extractor: transformers.SpeechT5FeatureExtractor, path: Path) -> MelSet:
    if not path.with_suffix(".json").exists():
        mels = []
        for clip in tqdm(rows["audio"], desc=f"mel targets ({path.stem})", unit="clip"):
            audio = clip.get_all_samples().data[0].numpy()
            mels.append(extractor(audio_target=audio, sampling_rate=16_000)["input_values"][0].astype(np.float16))
        np.save(path, np.concatenate(mels))
        offsets = np.concatenate([[0], np.cumsum([len(m) for m in mels])]).tolist()
        path.with_suffix(".json").write_text(json.dumps({"offsets": offsets, "texts": list(rows["text"])}))
    meta = json.loads(path.with_suffix(".json").read_text())
    return MelSet(np.load(path, mmap_mode="r"), np.asarray(meta["offsets"]), meta["texts"])


def prepare(options: SpeechT5PretrainOptions) -> tuple[transformers.SpeechT5Processor, MelSet, MelSet]:
    corpus = datasets.load_from_disk(str(options.corpus))
    wanted = lambda voice, text: voice == options.voice and len(text) <= MAX_TEXT_CHARACTERS  # noqa: E731
    train_rows = corpus["pretrain"].filter(wanted, input_columns=["voice", "text"])
    test_rows = corpus["test"].filter(wanted, input_columns=["voice", "text"])
    if len(train_rows) == 0:
        raise InputError(f"no pretrain utterances by voice {options.voice!r} in {options.corpus}")
    test_rows = test_rows.shuffle(seed=options.seed).select(range(min(options.eval_utterances, len(test_rows))))
    data = options.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    if (data / "processor" / "spm_char.model").exists():
        processor = transformers.SpeechT5Processor.from_pretrained(data / "processor")
    else:
        (data / "processor").mkdir(exist_ok=True)
        tokenizer = char_tokenizer(list(train_rows["text"]), data / "processor")
        processor = transformers.SpeechT5Processor(transformers.SpeechT5FeatureExtractor(), tokenizer)
        processor.save_pretrained(data / "processor")
    extractor = processor.feature_extractor
    return (
        processor,
        build_mels(train_rows, extractor, data / "train.npy"),
        build_mels(test_rows, extractor, data / "test.npy"),
    )


def speecht5_config(options: SpeechT5PretrainOptions, vocab_size: int) -> transformers.SpeechT5Config:
    return transformers.SpeechT5Config(
        vocab_size=vocab_size, hidden_size=options.hidden, encoder_layers=options.layers,
        decoder_layers=options.layers, encoder_attention_heads=options.heads, decoder_attention_heads=options.heads,
        encoder_ffn_dim=options.ffn, decoder_ffn_dim=options.ffn, num_mel_bins=80,
        reduction_factor=options.reduction_factor, speech_decoder_prenet_units=options.hidden,
        speech_decoder_postnet_units=options.hidden, speaker_embedding_dim=SPEAKER_EMBEDDING_DIM,
        use_guided_attention_loss=True, guided_attention_loss_num_heads=min(2, options.heads),
        max_text_positions=MAX_TEXT_CHARACTERS + 8, max_speech_positions=1200,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        # LayerDrop can skip every decoder layer of a small model, leaving the guided-attention loss nothing
        encoder_layerdrop=0.0, decoder_layerdrop=0.0,
    )  # fmt: skip


def make_batch(processor, mels: MelSet, indices: np.ndarray, reduction: int) -> dict[str, torch.Tensor]:
    texts = [mels.texts[i] for i in indices]
    inputs = processor.tokenizer(texts, padding=True, return_tensors="pt")
    targets = [mels.mel(i) for i in indices]
    frames = max(len(t) for t in targets)
    frames += -frames % reduction  # the decoder predicts `reduction` frames per step
    labels = torch.full((len(targets), frames, targets[0].shape[1]), -100.0)
    for row, target in enumerate(targets):
        labels[row, : len(target)] = torch.from_numpy(target)
    speakers = torch.zeros(len(texts), SPEAKER_EMBEDDING_DIM)
    return {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask, "labels": labels,
            "speaker_embeddings": speakers}  # fmt: skip


def evaluate(model, processor, test: MelSet, options: SpeechT5PretrainOptions) -> dict[str, float]:
    """Teacher-forced mel L1 on held-out sentences (the score), and free-running length ratio."""
    model.eval()
    indices = np.arange(len(test))
    batch = make_batch(processor, test, indices, options.reduction_factor)
    with torch.no_grad():
        predicted = model(**batch).spectrogram
        mask = batch["labels"] != -100
        l1 = (predicted[mask] - batch["labels"][mask]).abs().mean().item()
        ratios = []
        for i in indices[:4]:
            ids = processor.tokenizer(test.texts[i], return_tensors="pt").input_ids
            speech = model.generate_speech(ids, torch.zeros(1, SPEAKER_EMBEDDING_DIM), maxlenratio=15.0)
            ratios.append(len(speech) / len(test.mel(i)))
    return {"mel_l1": l1, "length_ratio": float(np.mean(ratios))}


def pretrain_speecht5(options: SpeechT5PretrainOptions) -> dict:
    """Train (resuming from `out/checkpoint`); the best model by held-out mel L1 is exported to `out/model`."""
    torch.set_num_threads(options.threads)
    processor, train_mels, test_mels = prepare(options)
    torch.manual_seed(options.seed)
    config = speecht5_config(options, len(processor.tokenizer))
    config._attn_implementation = "eager"  # the guided-attention loss reads cross-attention weights; SDPA returns none
    model = transformers.SpeechT5ForTextToSpeech(config)

    def step_losses(step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([options.seed, step])
        indices = rng.choice(len(train_mels), size=min(options.batch_size, len(train_mels)), replace=False)
        return {"loss": model(**make_batch(processor, train_mels, indices, options.reduction_factor)).loss}

    recipe = Recipe(
        name="tiny-speecht5", modules={"model": model}, losses=step_losses,
        learning_rate=lambda step: warmup_cosine(options, step), score="mel_l1",
        evaluate=lambda: evaluate(model, processor, test_mels, options),
        export=lambda: export_half(model, processor, options.out / "model"), options=options_record(options),
    )  # fmt: skip
    return train(recipe, options.out, options.steps, options.eval_every, options.precision == "bf16")
