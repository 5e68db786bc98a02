"""Convert a CTranslate2 Whisper model (the faster-whisper layout) into a transformers checkpoint directory.

The result is what `WhisperForConditionalGeneration.save_pretrained` and `WhisperProcessor.save_pretrained`
would write for the same weights: `config.json`, `model.safetensors` (float32; the float16 source widens
exactly), `generation_config.json`, and the tokenizer and feature extractor files. Architecture sizes come
from the tensor shapes, special token ids from the tokenizer's added tokens, suppression lists and alignment
heads from CTranslate2's `config.json`. The weight names follow CTranslate2's Whisper spec
(`ctranslate2/specs/whisper_spec.py`) and its converter from transformers
(`ctranslate2/converters/transformers.py`, `WhisperLoader`), run backwards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

from speechpeft.backbones.ct2_file import Ct2Model, read_ct2
from speechpeft.errors import InputError

TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps, right after <|notimestamps|>
MAX_INITIAL_TIMESTAMP_INDEX = 50  # openai/whisper: the first timestamp is at most 1 s in
_LANGUAGE = re.compile(r"<\|[a-z]{2,3}(_[a-z]+)?\|>|<\|haw\|>|<\|yue\|>")
GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU (exact, erf-based)
_OPTIONS = {  # CTranslate2 spec flags -> the only value transformers' Whisper implements
    "decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0, "decoder/activation": GELU,
    "decoder/start_from_zero_embedding": 0, "encoder/activation": GELU,
}  # fmt: skip


def convert_whisper(model: bytes, model_file: Path, ct2_config: Path, tokenizer_file: Path, out: Path) -> None:
    """Write a transformers Whisper checkpoint converted from CTranslate2 files into the directory `out`.

    `model` holds the bytes of the CTranslate2 `model.bin` (`model_file` names it in errors). Raises InputError
    when it is not a Whisper spec or uses options transformers' Whisper lacks.
    """
    ct2 = read_ct2(model, model_file)
    if ct2.spec != "WhisperSpec":
        raise InputError(f"{model_file} holds a {ct2.spec}, not a WhisperSpec")
    _check_options(ct2, model_file)
    tokens = _special_tokens(tokenizer_file)
    extra = json.loads(ct2_config.read_text())
    config = whisper_config(ct2, tokens, extra)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state_dict(ct2, config), str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out)
    generation_config(config, tokens, extra).save_pretrained(out)
    whisper_processor(tokenizer_file, tokens, config).save_pretrained(out)


def _check_options(ct2: Ct2Model, path: Path) -> None:
    """transformers' Whisper is pre-norm with unscaled embeddings, learned positions, exact GELU, float weights
    and an output projection tied to the embeddings; refuse anything else rather than convert it wrongly."""
    v = ct2.variables
    for name, value in _OPTIONS.items():
        if name in v and int(v[name]) != value:
            raise InputError(f"{path}: {name} = {int(v[name])}; transformers' Whisper needs {value}")
    quantized = sorted(name for name, array in v.items() if array.ndim > 1 and array.dtype.kind != "f")
    if quantized:  # int8/int16 weights come with a separate scale: widening them alone would be wrong
        raise InputError(f"{path}: {quantized[0]} is {v[quantized[0]].dtype}; convert from a float16/float32 model")
    projection, embeddings = v.get("decoder/projection/weight"), v.get("decoder/embeddings/weight")
    if projection is not None and projection is not embeddings and not np.array_equal(projection, embeddings):
        raise InputError(f"{path}: decoder/projection is not tied to decoder/embeddings, as Whisper's is")


def _special_tokens(tokenizer_file: Path) -> dict[str, int]:
    """Every added token of the tokenizer (`<|endoftext|>`, `<|startoftranscript|>`, languages, tasks ...)."""
    added = json.loads(tokenizer_file.read_text())["added_tokens"]
    return {token["content"]: token["id"] for token in added}


def _layers(ct2: Ct2Model, stack: str) -> int:
    return len({name.split("/")[1] for name in ct2.variables if re.match(rf"{stack}/layer_\d+/", name)})


def whisper_config(ct2: Ct2Model, tokens: dict[str, int], extra: dict) -> transformers.WhisperConfig:
    """The architecture, read from the tensor shapes, and the token ids, read from the tokenizer."""
    v = ct2.variables
    eos, sot = tokens["<|endoftext|>"], tokens["<|startoftranscript|>"]
    return transformers.WhisperConfig(
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=v["encoder/conv1/weight"].shape[0],
        encoder_layers=_layers(ct2, "encoder"), decoder_layers=_layers(ct2, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]), decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=eos, bos_token_id=sot, eos_token_id=eos, decoder_start_token_id=sot,
        suppress_tokens=None, begin_suppress_tokens=None,  # generation settings live in generation_config.json
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        architectures=["WhisperForConditionalGeneration"],
    )  # fmt: skip


def state_dict(ct2: Ct2Model, config: transformers.WhisperConfig) -> dict[str, torch.Tensor]:
    """transformers' parameter names -> float32 tensors (fused q|k|v and k|v projections split)."""
    v, out = ct2.variables, {}
    for stack in ("encoder", "decoder"):
        prefix = f"model.{stack}"
        out[f"{prefix}.embed_positions.weight"] = v[f"{stack}/position_encodings/encodings"]
        out |= _norm(v, f"{stack}/layer_norm", f"{prefix}.layer_norm")
        layers = config.encoder_layers if stack == "encoder" else config.decoder_layers
        for i in range(layers):
            out |= _layer(v, f"{stack}/layer_{i}", f"{prefix}.layers.{i}", cross=stack == "decoder")
    for conv in ("conv1", "conv2"):
        out |= {f"model.encoder.{conv}.{p}": v[f"encoder/{conv}/{p}"] for p in ("weight", "bias")}
    out["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]  # proj_out is tied to it
    return {name: torch.from_numpy(np.array(array, dtype=np.float32)) for name, array in out.items()}


def _layer(v: dict[str, np.ndarray], src: str, dst: str, *, cross: bool) -> dict[str, np.ndarray]:
    out = _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    out |= _split(v, f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
    out |= _linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
    if cross:
        out |= _norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        out |= _linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        out |= _split(v, f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}_proj" for p in "kv"])
        out |= _linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
    out |= _norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    out |= _linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1")
    out |= _linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2")
    return out


def _norm(v: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _linear(v: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": v[f"{src}/weight"], f"{dst}.bias": v[f"{src}/bias"]}


def _split(v: dict[str, np.ndarray], src: str, dsts: list[str]) -> dict[str, np.ndarray]:
    """A projection fused along its output dimension, split in order; k_proj has no bias (stored as zeros)."""
    weights, biases = np.split(v[f"{src}/weight"], len(dsts)), np.split(v[f"{src}/bias"], len(dsts))
    out = {}
    for dst, weight, bias in zip(dsts, weights, biases, strict=True):
        out[f"{dst}.weight"] = weight
        if dst.endswith("k_proj"):
            if np.any(bias):
                raise InputError(f"{src}: the key projection has a non-zero bias, which Whisper does not have")
        else:
            out[f"{dst}.bias"] = bias
    return out


def generation_config(
    config: transformers.WhisperConfig, tokens: dict[str, int], extra: dict
) -> transformers.GenerationConfig:
    """Whisper's generation settings as transformers' `WhisperForConditionalGeneration.generate` reads them."""
    multilingual = config.vocab_size >= 51865
    fields = dict(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, max_length=config.max_target_positions,
        suppress_tokens=list(extra["suppress_ids"]), begin_suppress_tokens=list(extra["suppress_ids_begin"]),
        no_timestamps_token_id=tokens["<|notimestamps|>"], prev_sot_token_id=tokens["<|startofprev|>"],
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX, alignment_heads=extra.get("alignment_heads"),
        is_multilingual=multilingual, return_timestamps=False,
    )  # fmt: skip
    if multilingual:
        fields["lang_to_id"] = {t: i for t, i in tokens.items() if _LANGUAGE.fullmatch(t)}
        fields["task_to_id"] = {task: tokens[f"<|{task}|>"] for task in ("transcribe", "translate")}
    return transformers.GenerationConfig(**fields)


def whisper_processor(
    tokenizer_file: Path, tokens: dict[str, int], config: transformers.WhisperConfig
) -> transformers.WhisperProcessor:
    """A fast tokenizer with every added token registered as special, `<|endoftext|>` as pad, and the 1501
    timestamp tokens after `<|notimestamps|>` (not special, as on the Hub), plus the 30 s feature extractor."""
    eos = "<|endoftext|>"
    specials = [t for t, _ in sorted(tokens.items(), key=lambda item: item[1]) if t != eos]
    tokenizer = transformers.WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_file), unk_token=eos, bos_token=eos, eos_token=eos, pad_token=eos,
        additional_special_tokens=specials, predict_timestamps=False,
    )  # fmt: skip
    first = tokens["<|notimestamps|>"] + 1
    stamps = [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS)]
    tokenizer.add_tokens([transformers.AddedToken(s, lstrip=False, rstrip=False, normalized=False) for s in stamps])
    if tokenizer.convert_tokens_to_ids(stamps[0]) != first or len(tokenizer) > config.vocab_size:
        raise InputError(f"the tokenizer's timestamp tokens do not start at id {first} within {config.vocab_size}")
    extractor = transformers.WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return transformers.WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)
