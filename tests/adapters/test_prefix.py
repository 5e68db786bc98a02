"""Prefix tuning's two routes into attention: prefixes change what the model computes, vanish when
disabled, and give the same outputs with a KV cache (step by step, as `generate` runs) as without one."""

import pytest
import torch

from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.catalog import METHODS
from speechpeft.adapters.prefix import plan
from speechpeft.backbones import load_frozen
from tests.conftest import checkpoint_for

OPTIONS = AdapterOptions(prefix_length=3)


def seq2seq_inputs(backbone) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    if backbone.spec.family == "whisper":
        config = backbone.model.config
        return {"input_features": torch.randn(2, config.num_mel_bins, 2 * config.max_source_positions)}
    return {"input_values": torch.randn(2, 4000), "attention_mask": torch.ones(2, 4000, dtype=torch.long)}


def logits_without_and_with_cache(model, inputs, ids) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced logits in one pass, and the same positions decoded one token at a time with the cache."""
    with torch.no_grad():
        full = model(**inputs, decoder_input_ids=ids, use_cache=False).logits
        encoded = model.get_encoder()(**inputs)
        cache, steps = None, []
        for t in range(ids.shape[1]):
            out = model(encoder_outputs=encoded, attention_mask=inputs.get("attention_mask"),
                        decoder_input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True)  # fmt: skip
            cache = out.past_key_values
            steps.append(out.logits)
    return full, torch.cat(steps, dim=1)


def set_active(model, name):
    for module in model.modules():
        if hasattr(module, "speechpeft_active"):
            module.speechpeft_active = name


@pytest.mark.parametrize("family", ["whisper", "speecht5"])
@pytest.mark.parametrize("encoder", [False, True])
def test_prefixed_decoding_is_the_same_with_and_without_cache(family, encoder, tiny_backbone_dirs):
    backbone = load_frozen(checkpoint_for(tiny_backbone_dirs, family, "asr"), "asr", "fp32", device="cpu")
    inputs, ids = seq2seq_inputs(backbone), torch.tensor([[2, 5, 6, 7, 8], [2, 9, 10, 11, 12]])
    reference, _ = logits_without_and_with_cache(backbone.model, inputs, ids)
    model = METHODS.get("prefix").attach(backbone, AdapterOptions(prefix_length=3, prefix_encoder=encoder))
    full, stepwise = logits_without_and_with_cache(model, inputs, ids)
    assert not torch.allclose(full, reference, atol=1e-3)  # the prefix is really attended to
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-4)
    set_active(model, None)
    torch.testing.assert_close(logits_without_and_with_cache(model, inputs, ids)[0], reference)


def test_prefixed_speech_decoder_is_the_same_with_and_without_cache(tiny_backbone_dirs):
    """SpeechT5 TTS (hooks route): the decoder layers after the prenet, in one pass and frame by frame."""
    backbone = load_frozen(tiny_backbone_dirs["speecht5"], "tts", "fp32", device="cpu")
    model = METHODS.get("prefix").attach(backbone, AdapterOptions(prefix_length=3, prefix_encoder=True))
    decoder = model.speecht5.decoder.wrapped_decoder
    torch.manual_seed(0)
    hidden, encoded = torch.randn(2, 6, model.config.hidden_size), torch.randn(2, 9, model.config.hidden_size)
    with torch.no_grad():
        full = decoder(hidden_states=hidden, encoder_hidden_states=encoded, use_cache=False).last_hidden_state
        cache, steps = None, []
        for t in range(hidden.shape[1]):
            step = hidden[:, t : t + 1]
            out = decoder(hidden_states=step, encoder_hidden_states=encoded, cache=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.last_hidden_state)
        speaker = torch.zeros(1, model.config.speaker_embedding_dim)
        speech = model.generate_speech(torch.tensor([[0, 5, 6, 7, 2]]), speaker)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert speech.ndim == 2 and speech.shape[1] == model.config.num_mel_bins


@pytest.mark.parametrize(("family", "task"), [("whisper", "asr"), ("speecht5", "tts"), ("wav2vec2", "asr")])
def test_prefix_parameter_count_follows_the_formula(family, task, tiny_backbone_dirs):
    """2 (keys, values) x prefix length x width, per prefixed attention module; plus the task head."""
    backbone = load_frozen(checkpoint_for(tiny_backbone_dirs, family, task), task, "fp32", device="cpu")
    heads = backbone.spec.task(task).head_modules
    head = sum(p.numel() for n, p in backbone.model.named_parameters() if n.split(".")[0] in heads)
    layout = plan(backbone, encoder=False)
    widths = [backbone.model.get_submodule(n).k_proj.out_features for n in layout.modules]
    model = METHODS.get("prefix").attach(backbone, OPTIONS)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == head + sum(2 * 3 * w for w in widths)
    assert layout.route == ("hooks" if family == "speecht5" else "interface")
