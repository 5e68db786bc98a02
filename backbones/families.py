"""The backbone families speechpeft ships specs for. One `register_backbone` call each."""

from __future__ import annotations

from speechpeft.backbones.spec import BackboneSpec, TaskModel, register_backbone

SAMPLE_RATE_16K = 16_000  # Hz

# Module-name suffixes shared by the transformer blocks of these families.
_ATTENTION_QV = ("q_proj", "v_proj")
_CLASSIFY_HEAD = ("projector", "classifier")
_CTC_VOCABULARY = (
    "CTC speech recognition needs the checkpoint's character vocabulary (vocab.json), which pretrained-only "
    "encoders such as facebook/wav2vec2-base do not have. Use a CTC fine-tuned checkpoint (e.g. "
    "facebook/wav2vec2-base-960h), or add to a local copy of the checkpoint a vocab.json mapping each character "
    'to an id below config.json\'s vocab_size, with "<pad>" (the CTC blank), "<unk>" and "|" (between words).'
)

register_backbone(
    BackboneSpec(
        family="whisper",
        description="Encoder-decoder ASR (log-mel encoder, text decoder). Encoder + pooled head for classification.",
        model_types=("whisper",),
        sample_rate=SAMPLE_RATE_16K,
        tasks={
            "asr": TaskModel("WhisperForConditionalGeneration", "WhisperProcessor"),
            "classify": TaskModel("WhisperForAudioClassification", "WhisperFeatureExtractor", _CLASSIFY_HEAD),
        },
        target_modules={
            "lora": _ATTENTION_QV,
            "adalora": _ATTENTION_QV,
            "prefix": ("self_attn",),
            "bottleneck_attention": ("self_attn",),
            "bottleneck_ffn": ("fc2",),
        },
        hub_examples=("openai/whisper-tiny", "openai/whisper-base", "openai/whisper-small"),
    )
)

register_backbone(
    BackboneSpec(
        family="speecht5",
        description="Unified speech/text encoder-decoder; text-to-speech with a mel decoder, and speech-to-text.",
        model_types=("speecht5",),
        sample_rate=SAMPLE_RATE_16K,
        tasks={
            "tts": TaskModel("SpeechT5ForTextToSpeech", "SpeechT5Processor"),
            "asr": TaskModel("SpeechT5ForSpeechToText", "SpeechT5Processor"),
        },
        target_modules={
            "lora": _ATTENTION_QV,
            "adalora": _ATTENTION_QV,
            "prefix": ("attention", "self_attn"),
            "bottleneck_attention": ("attention", "self_attn"),
            "bottleneck_ffn": ("feed_forward",),
        },
        hub_examples=("microsoft/speecht5_tts", "microsoft/speecht5_asr"),
    )
)

# FastSpeech 2 with Conformer blocks (transformers' port of ESPnet's): a non-autoregressive text encoder, duration,
# pitch and energy predictors, and a mel "decoder" that is another Conformer encoder (no causal attention, no
# cross-attention). Its attention names its projections linear_q/k/v/out and adds a relative position term.
# int8 leaves the predictors (their 1-wide output layers give log-durations that round to whole frames) and the
# mel projection in full precision: the backbone's own outputs, not stream layers.
register_backbone(
    BackboneSpec(
        family="fastspeech2_conformer",
        description="Non-autoregressive Conformer text-to-speech (FastSpeech 2): phoneme ids to a mel spectrogram.",
        model_types=("fastspeech2_conformer",),
        sample_rate=SAMPLE_RATE_16K,
        tasks={"tts": TaskModel("FastSpeech2ConformerModel", "SpeechT5Processor")},
        target_modules={
            "lora": ("linear_q", "linear_v"),
            "adalora": ("linear_q", "linear_v"),
            "prefix": ("self_attn",),
            "bottleneck_attention": ("self_attn",),
            "bottleneck_ffn": ("feed_forward",),  # the block's last FFN, after its conv (feed_forward_macaron: first)
        },
        int8_skip_modules=("duration_predictor", "pitch_predictor", "energy_predictor", "speech_decoder_postnet"),
        cast_float_inputs=("decoder",),  # the length regulator hands it fp32 frames whatever the model's dtype
    )
)


def _self_supervised_encoder(
    family: str,
    model_type: str,
    classes: str,
    examples: tuple[str, ...],
    lora_targets: tuple[str, ...] = _ATTENTION_QV,
    int8_skip: tuple[str, ...] = (),
) -> BackboneSpec:
    """wav2vec2, HuBERT and WavLM share one layout: a CNN feature encoder and transformer blocks."""
    return BackboneSpec(
        family=family,
        description=f"{classes} self-supervised speech encoder; sequence classification head, or CTC for ASR.",
        model_types=(model_type,),
        sample_rate=SAMPLE_RATE_16K,
        tasks={
            "classify": TaskModel(f"{classes}ForSequenceClassification", "Wav2Vec2FeatureExtractor", _CLASSIFY_HEAD),
            "asr": TaskModel(f"{classes}ForCTC", "Wav2Vec2Processor", ("lm_head",), processor_hint=_CTC_VOCABULARY),
        },
        target_modules={
            "lora": lora_targets,
            "adalora": lora_targets,
            "prefix": ("attention",),
            "bottleneck_attention": ("attention",),
            "bottleneck_ffn": ("feed_forward",),
        },
        hub_examples=examples,
        int8_skip_modules=int8_skip,
    )


register_backbone(
    _self_supervised_encoder(
        "wav2vec2", "wav2vec2", "Wav2Vec2", ("facebook/wav2vec2-base", "facebook/wav2vec2-base-960h")
    )
)
register_backbone(_self_supervised_encoder("hubert", "hubert", "Hubert", ("facebook/hubert-base-ls960",)))
# WavLM's attention hands its projections' raw `.weight` tensors to F.multi_head_attention_forward, so a
# wrapper around q_proj/v_proj (LoRA) is bypassed and int8 weights reach a float matmul: LoRA targets the
# feed-forward block instead, and int8 leaves the attention projections in full precision.
_WAVLM_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj", "gru_rel_pos_linear")
register_backbone(
    _self_supervised_encoder(
        "wavlm",
        "wavlm",
        "WavLM",
        ("microsoft/wavlm-base-plus",),
        lora_targets=("intermediate_dense", "output_dense"),
        int8_skip=_WAVLM_ATTENTION,
    )
)
