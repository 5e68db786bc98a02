"""Tiny random backbones built in-process and saved to disk, so tests exercise `from_pretrained`.

Each builder writes a complete checkpoint directory (config, safetensors weights, processor)
exactly as a Hub repository would hold it, at a size that loads in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers as tf

from speechpeft.backbones.pretrain.speecht5 import char_tokenizer
from speechpeft.backbones.pretrain.tokenizer import ENDOFTEXT, STARTOFTRANSCRIPT, train_whisper_tokenizer

TEXTS = ["turn on the kitchen lights", "what is the weather like", "play some jazz music", "set an alarm", "yes", "no"]
NUM_LABELS = 3
SMALL_TRANSFORMER = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "hidden_size": 32}
SMALL_CONV = {"conv_dim": (32, 32), "conv_stride": (5, 4), "conv_kernel": (10, 4)}


def save_tiny_whisper(directory: Path, window_seconds: int = 8) -> Path:
    """Whisper with `window_seconds` windows (100 mel frames a second = 2 x max_source_positions): 8 s by default,
    longer than every clip of the small test corpora, which a shorter window would leave out."""
    tokenizer = train_whisper_tokenizer(TEXTS, vocab_size=300)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (ENDOFTEXT, STARTOFTRANSCRIPT)}
    config = tf.WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_source_positions=50 * window_seconds, max_target_positions=32, pad_token_id=ids[ENDOFTEXT],
        bos_token_id=ids[ENDOFTEXT], eos_token_id=ids[ENDOFTEXT], decoder_start_token_id=ids[STARTOFTRANSCRIPT],
        classifier_proj_size=16, num_labels=NUM_LABELS,
    )  # fmt: skip
    torch.manual_seed(0)
    tf.WhisperForConditionalGeneration(config).save_pretrained(directory)
    extractor = tf.WhisperFeatureExtractor(feature_size=80, chunk_length=window_seconds)
    tf.WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def save_tiny_speecht5(directory: Path, task: str = "tts") -> Path:
    """SpeechT5 for text-to-speech or, like microsoft/speecht5_asr, a separate checkpoint for speech-to-text."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = char_tokenizer(TEXTS, directory)
    config = tf.SpeechT5Config(
        vocab_size=len(tokenizer), hidden_size=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, speech_decoder_prenet_units=32,
        speech_decoder_postnet_units=32, speech_decoder_postnet_layers=2, speaker_embedding_dim=16,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, encoder_max_relative_position=16,
        max_speech_positions=400, max_text_positions=64, **SMALL_CONV,
        # as in the shipped tiny-speecht5: with 2 layers, LayerDrop (0.1) drops both in 1 % of steps, and
        # SpeechT5's guided-attention loss then has no cross-attention to read and raises
        decoder_layerdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model_class = tf.SpeechT5ForTextToSpeech if task == "tts" else tf.SpeechT5ForSpeechToText
    model_class(config).save_pretrained(directory)
    tf.SpeechT5Processor(feature_extractor=tf.SpeechT5FeatureExtractor(), tokenizer=tokenizer).save_pretrained(
        directory
    )
    return directory


def save_tiny_ssl_encoder(
    directory: Path, family: str = "wav2vec2", upper_case: bool = False, attention_mask: bool = True
) -> Path:
    """wav2vec2, HuBERT or WavLM with a CTC head over a character vocabulary.

    `upper_case` spells the vocabulary "A".."Z" (with `do_lower_case` false) and `attention_mask=False` makes
    the extractor return no mask, both as facebook/wav2vec2-base-960h does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'" if upper_case else "abcdefghijklmnopqrstuvwxyz'"
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters)}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = tf.Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), do_lower_case=False)
    config_class, model_class = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2ForCTC),
        "hubert": (tf.HubertConfig, tf.HubertForCTC),
        "wavlm": (tf.WavLMConfig, tf.WavLMForCTC),
    }[family]
    config = config_class(
        vocab_size=len(vocab), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=16, num_labels=NUM_LABELS, pad_token_id=0, **SMALL_TRANSFORMER, **SMALL_CONV,
    )  # fmt: skip
    torch.manual_seed(0)
    model_class(config).save_pretrained(directory)
    extractor = tf.Wav2Vec2FeatureExtractor(return_attention_mask=attention_mask)
    tf.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


# pitch and energy statistics a tiny FastSpeech 2 normalises its labels with (a pretrained one measures its corpus)
FASTSPEECH2_STATS = {"pitch": {"mean": 4.8, "std": 0.2, "unit": "log Hz"},
                     "energy": {"mean": 20.0, "std": 10.0, "unit": "L2"}}  # fmt: skip


def save_tiny_fastspeech2(directory: Path) -> Path:
    """FastSpeech2ConformerModel as `speechpeft backbones pretrain tiny-fastspeech2` exports it (phoneme processor,
    the "speechpeft" record of phonemiser and statistics in config.json, float16 weights), one layer of width 32."""
    from speechpeft.backbones.pretrain import fastspeech2 as recipe
    from speechpeft.backbones.pretrain.options import FastSpeech2PretrainOptions

    options = FastSpeech2PretrainOptions(corpus=directory, out=directory, hidden=32, layers=1, heads=2, ffn=64)
    processor = recipe.phoneme_processor(directory)
    record = recipe.speechpeft_record(options, FASTSPEECH2_STATS)
    config = recipe.fastspeech2_config(options, len(processor.tokenizer), record)
    torch.manual_seed(0)
    recipe.export_half(tf.FastSpeech2ConformerModel(config), processor, directory)
    return directory
