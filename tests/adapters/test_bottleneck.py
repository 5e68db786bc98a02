"""Bottleneck adapters on PEFT's tuner base: where they go, how big they are, and that they start as identity."""

import pytest
import torch

from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.bottleneck import BottleneckConfig, BottleneckLayer
from speechpeft.adapters.catalog import METHODS
from speechpeft.backbones import load_frozen
from tests.adapters.test_prefix import seq2seq_inputs
from tests.conftest import checkpoint_for


def wrapped(model) -> dict[str, BottleneckLayer]:
    return {name: m for name, m in model.named_modules() if isinstance(m, BottleneckLayer)}


@pytest.mark.parametrize("family", ["whisper", "speecht5"])
@pytest.mark.parametrize("style", ["pfeiffer", "houlsby"])
def test_placement_size_and_identity_at_start(family, style, tiny_backbone_dirs):
    backbone = load_frozen(checkpoint_for(tiny_backbone_dirs, family, "asr"), "asr", "fp32", device="cpu")
    inputs, ids = seq2seq_inputs(backbone), torch.tensor([[2, 5, 6, 7]])
    inputs = {k: v[:1] for k, v in inputs.items()}
    with torch.no_grad():
        reference = backbone.model(**inputs, decoder_input_ids=ids).logits
    model = METHODS.get("bottleneck").attach(backbone, AdapterOptions(bottleneck_style=style, reduction_factor=4))
    layers = wrapped(model)
    attention = [n for n in layers if n.rsplit(".", 1)[-1] in ("self_attn", "attention")]
    layer_count = sum(1 for n, _ in model.named_modules() if n.rsplit(".", 2)[-2:-1] == ["layers"])
    assert len(attention) == (layer_count if style == "houlsby" else 0)  # Houlsby: one per layer's attention
    assert len(layers) - len(attention) == layer_count  # both: one per layer's feed-forward block
    width = model.config.d_model if family == "whisper" else model.config.hidden_size
    per_adapter = 2 * width * (width // 4) + width // 4 + width  # down and up projections with biases
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == per_adapter * len(layers)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, decoder_input_ids=ids).logits, reference)  # up starts at zero


def test_adapters_switch_and_disable_through_peft(tiny_backbone_dirs):
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    inputs, ids = seq2seq_inputs(backbone), torch.tensor([[2, 5, 6, 7]] * 2)
    tuner = METHODS.get("bottleneck").attach(backbone, AdapterOptions())
    with torch.no_grad():
        for layer in wrapped(tuner).values():
            layer.bottleneck_up["default"].bias.fill_(0.5)
        trained = tuner(**inputs, decoder_input_ids=ids).logits
        tuner.peft_config["second"] = BottleneckConfig(target_modules=["fc2"])
        tuner.inject_adapter(tuner.model, "second")  # a second, fresh (identity) adapter beside the first
        tuner.set_adapter("second")
        identity = tuner(**inputs, decoder_input_ids=ids).logits
        tuner.set_adapter("default")
        torch.testing.assert_close(tuner(**inputs, decoder_input_ids=ids).logits, trained)
        tuner.disable_adapter_layers()
        torch.testing.assert_close(tuner(**inputs, decoder_input_ids=ids).logits, identity)
    assert not torch.allclose(trained, identity)
