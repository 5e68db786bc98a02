"""Every adapter method on FastSpeech2ConformerModel (the `fastspeech2_conformer` family), on a tiny random one
saved with its SpeechT5Processor: loading at each precision, one teacher-forced training step that moves the
adapter's weights only, save and load back, the bank serving several adapters in one batch, and the prefix's
relative attention against a reference written out position by position."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import transformers as tf

from speechpeft.adapter_dir import save_adapter
from speechpeft.adapters import prefix
from speechpeft.adapters.bank import AdapterBank
from speechpeft.adapters.base import AdapterOptions, trainable_parameters, trainables_in_fp32
from speechpeft.adapters.catalog import METHODS
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.backbones.pretrain.fastspeech2 import phoneme_processor
from speechpeft.train import train_mode

HIDDEN, FFN, MELS = 32, 64, 80
OPTIONS = {  # method name in the tests -> (method, options)
    "lora": ("lora", AdapterOptions(rank=2)),
    "adalora": ("adalora", AdapterOptions(rank=2, steps=10)),
    "prefix": ("prefix", AdapterOptions(prefix_length=3, prefix_encoder=True)),
    "bottleneck": ("bottleneck", AdapterOptions(bottleneck_style="houlsby", reduction_factor=4)),
}
TRAINED_NAMES = {"lora": "lora_", "adalora": "lora_", "prefix": prefix.SLOT, "bottleneck": "bottleneck_"}


def save_tiny_fastspeech2(directory: Path) -> Path:
    """FastSpeech2ConformerModel as `backbones/pretrain/fastspeech2.py` configures it (linear FFN, relative
    positions, Conformer convolution and macaron FFN), one encoder and one decoder layer of width 32."""
    processor = phoneme_processor(directory)
    config = tf.FastSpeech2ConformerConfig(
        vocab_size=len(processor.tokenizer), hidden_size=HIDDEN, num_mel_bins=MELS, encoder_layers=1,
        decoder_layers=1, encoder_num_attention_heads=2, decoder_num_attention_heads=2, encoder_linear_units=FFN,
        decoder_linear_units=FFN, positionwise_conv_kernel_size=1, decoder_kernel_size=5,
        duration_predictor_channels=HIDDEN, pitch_predictor_channels=HIDDEN, energy_predictor_channels=HIDDEN,
        pitch_predictor_layers=2, speech_decoder_postnet_units=HIDDEN, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    tf.FastSpeech2ConformerModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_fastspeech2(tmp_path_factory.mktemp("fastspeech2") / "tiny")


def labelled_batch() -> dict[str, torch.Tensor]:
    """Two rows, the second padded: ids [2, 6] (pad 0), durations summing to each row's frames (9 and 5),
    pitch and energy [2, 6, 1], log-mel labels [2, 9, 80] (-100 past a row's frames)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 0, 0]])
    durations = torch.tensor([[2, 1, 3, 2, 1, 0], [1, 2, 2, 0, 0, 0]])
    spectrogram = torch.randn(2, 9, MELS, generator=generator)
    spectrogram[1, 5:] = -100.0
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "duration_labels": durations,
            "pitch_labels": torch.randn(2, 6, 1, generator=generator),
            "energy_labels": torch.randn(2, 6, 1, generator=generator), "spectrogram_labels": spectrogram}  # fmt: skip


def mel(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The postnet's mel spectrogram, teacher-forced, [rows, 9, 80]: train mode (the model reads its duration
    labels only then) with dropout and batch norm in eval mode. The model is left in eval mode."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout | torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    with torch.no_grad():
        spectrogram = model(**batch).spectrogram
    model.eval()
    return spectrogram


def record_for(checkpoint: Path, method: str) -> dict:
    return {"backbone": str(checkpoint), "task": "tts", "task_kind": "tts", "method": method, "options": {}}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_loads_frozen_at_each_precision_and_speaks(checkpoint, precision):
    backbone = load_frozen(checkpoint, "tts", precision, device="cpu")
    assert backbone.spec.family == "fastspeech2_conformer" and isinstance(backbone.processor, tf.SpeechT5Processor)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    ids = backbone.processor(text=["ab c", "d"], return_tensors="pt", padding=True)
    with torch.no_grad(), backbone.autocast():
        speech = backbone.model(input_ids=ids.input_ids, attention_mask=ids.attention_mask).spectrogram
    assert speech.shape[0] == 2 and speech.shape[2] == MELS and torch.isfinite(speech).all()
    if precision == "int8":  # the predictors and the mel projection stay in full precision
        kept = backbone.model.speech_decoder_postnet.feat_out, backbone.model.duration_predictor.linear
        assert all(type(layer) is torch.nn.Linear for layer in kept)
        assert type(backbone.model.decoder.conformer_layers[0].self_attn.linear_q) is not torch.nn.Linear


@pytest.mark.parametrize("name", list(OPTIONS))
def test_one_step_moves_only_the_adapter_and_the_saved_adapter_reloads(name, checkpoint, tmp_path):
    """Teacher-forced training (`train_mode`: frozen batch norms keep their statistics) changes the adapter's
    tensors and nothing else in the state dict; the saved adapter on a fresh backbone gives the same mel."""
    method, options = OPTIONS[name]
    model = METHODS.get(method).attach(load_frozen(checkpoint, "tts", "fp32", device="cpu"), options)
    batch, before = labelled_batch(), {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(TRAINED_NAMES[name] in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_mode(model)
    model(**batch).loss.backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
    optimizer.step()
    if METHODS.get(method).after_step is not None:
        METHODS.get(method).after_step(model, 0)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= trainable, sorted(changed - trainable)[:3]
    save_adapter(model, tmp_path / name, record_for(checkpoint, method), METHODS.get(method).save)
    reloaded = METHODS.get(method).load(load_frozen(checkpoint, "tts", "fp32", device="cpu"), tmp_path / name)
    torch.testing.assert_close(mel(reloaded, batch), mel(model, batch), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # free-running: the adapter's own durations
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        torch.testing.assert_close(reloaded(**inputs).spectrogram, model(**inputs).spectrogram)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_every_method_trains_in_fp32_on_reduced_precision_backbones(precision, name, checkpoint):
    """A bf16 backbone (under its autocast) or bitsandbytes int8 linears: fp32 adapter weights get gradients."""
    method, options = OPTIONS[name]
    backbone = load_frozen(checkpoint, "tts", precision, device="cpu")
    model = METHODS.get(method).attach(backbone, options)
    trainables_in_fp32(model)
    train_mode(model)
    with backbone.autocast():
        loss = model(**labelled_batch()).loss
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and all(p.dtype == torch.float32 and p.grad is not None for p in trainable)
    assert sum(p.grad.abs().sum() for p in trainable) > 0


def test_parameter_counts_follow_each_methods_formula(checkpoint):
    """Per layer (1 encoder + 1 decoder): LoRA r (d + d) on linear_q and linear_v; AdaLoRA init_r (d + d + 1) on
    both; a prefix 2 P d per attention; Houlsby adapters 2 d (d / 4) + d / 4 + d after attention and FFN."""
    d, layers = HIDDEN, 2
    expected = {"lora": layers * 2 * 2 * (d + d), "adalora": layers * 2 * 3 * (d + d + 1),
                "prefix": layers * 2 * 3 * d, "bottleneck": layers * 2 * (2 * d * (d // 4) + d // 4 + d)}  # fmt: skip
    for name, (method, options) in OPTIONS.items():
        model = METHODS.get(method).attach(load_frozen(checkpoint, "tts", "fp32", device="cpu"), options)
        assert trainable_parameters(model) == expected[name], name


def test_prefix_goes_to_the_mel_decoder_and_the_encoder_on_request(checkpoint):
    backbone = load_frozen(checkpoint, "tts", "fp32", device="cpu")
    decoder = prefix.plan(backbone, encoder=False)
    assert decoder == prefix.PrefixPlan(("decoder.conformer_layers.0.self_attn",), "relative")
    assert prefix.plan(backbone, encoder=True).modules == ("encoder.conformer_layers.0.self_attn", *decoder.modules)


def relative_attention_reference(attention, hidden, mask, pos_emb, keys, values) -> torch.Tensor:
    """Attention over [prefix; sequence] for one query and one key at a time: score (q_i + u) . k_j for a prefix
    key, (q_i + u) . k_j + (q_i + v) . p_(i - j) for a real key j (p_r is `pos_emb` row T - 1 - r, as
    `FastSpeech2ConformerRelPositionalEncoding` lays them out), over sqrt(head_dim); masked keys get no weight."""
    heads, size = attention.num_heads, attention.head_dim
    split = lambda x: x.reshape(*x.shape[:-1], heads, size)  # noqa: E731
    q, p = split(attention.linear_q(hidden)), split(attention.linear_pos(pos_emb[0]))
    k = torch.cat([keys, attention.linear_k(hidden)], 1)
    v = torch.cat([values, attention.linear_v(hidden)], 1)
    k, v, length, time = split(k), split(v), keys.shape[1], hidden.shape[1]
    out = torch.zeros(hidden.shape[0], time, heads, size)
    for b in range(hidden.shape[0]):
        for i in range(time):
            scores = torch.einsum("hd,jhd->hj", q[b, i] + attention.pos_bias_u, k[b])
            rel = torch.stack([p[time - 1 - (i - j)] for j in range(time)])
            scores[:, length:] += torch.einsum("hd,jhd->hj", q[b, i] + attention.pos_bias_v, rel)
            scores = (scores / math.sqrt(size)).masked_fill(~torch.cat([torch.ones(length).bool(), mask[b, 0]]), -1e9)
            out[b, i] = torch.einsum("hj,jhd->hd", scores.softmax(-1), v[b])
    return attention.linear_out(out.reshape(hidden.shape[0], time, -1))


def test_relative_prefix_attention_equals_the_reference_with_padding(checkpoint):
    """Batch 2 with a padded row, in the decoder's attention: the routed forward equals the reference with the
    prefix, and (adapter off) the module's own forward equals the reference without one, which checks the
    reference; the prefix really changes the output."""
    backbone = load_frozen(checkpoint, "tts", "fp32", device="cpu")
    model = METHODS.get("prefix").attach(backbone, AdapterOptions(prefix_length=3))
    attention = model.decoder.conformer_layers[0].self_attn
    torch.manual_seed(0)
    hidden, mask = torch.randn(2, 7, HIDDEN), torch.tensor([[[True] * 7], [[True] * 4 + [False] * 3]])
    pos_emb = model.decoder.pos_enc(hidden)[1]
    keys, values = getattr(attention, prefix.SLOT)["default"].detach()
    with torch.no_grad():
        prefixed = attention(hidden, attention_mask=mask.long(), pos_emb=pos_emb)[0]
        expected = relative_attention_reference(attention, hidden, mask, pos_emb, keys[None].expand(2, -1, -1),
                                                values[None].expand(2, -1, -1))  # fmt: skip
        attention.speechpeft_active = None
        plain = attention(hidden, attention_mask=mask.long(), pos_emb=pos_emb)[0]
        unprefixed = relative_attention_reference(attention, hidden, mask, pos_emb, keys[None, :0].expand(2, -1, -1),
                                                  values[None, :0].expand(2, -1, -1))  # fmt: skip
    real = mask[:, 0, :, None].expand_as(prefixed)  # a padded query's output is never read
    torch.testing.assert_close(prefixed[real], expected[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain[real], unprefixed[real], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(prefixed[real], plain[real], atol=1e-3)


def test_a_disabled_prefix_gives_the_backbones_own_output(checkpoint):
    backbone = load_frozen(checkpoint, "tts", "fp32", device="cpu")
    batch = labelled_batch()
    reference = mel(backbone.model, batch)
    model = METHODS.get("prefix").attach(backbone, OPTIONS["prefix"][1])
    assert not torch.allclose(mel(model, batch), reference, atol=1e-3)
    for module in model.modules():
        if hasattr(module, "speechpeft_active"):
            module.speechpeft_active = None
    torch.testing.assert_close(mel(model, batch), reference)


BANKED = {  # adapter name -> (method, options); two of each method, prefixes of two lengths
    "lora-a": OPTIONS["lora"], "lora-b": OPTIONS["lora"], "adalora-a": OPTIONS["adalora"],
    "prefix-a": OPTIONS["prefix"], "prefix-b": ("prefix", AdapterOptions(prefix_length=2, prefix_encoder=True)),
    "bottleneck-a": OPTIONS["bottleneck"], "bottleneck-b": OPTIONS["bottleneck"],
}  # fmt: skip


@pytest.fixture(scope="module")
def store(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    for seed, (name, (method, options)) in enumerate(BANKED.items()):
        backbone = load_frozen(checkpoint, "tts", "fp32", device="cpu")
        save_random_adapters(backbone, method, [root / name], task="tts", options=options, scale=0.3, seed=seed,
                             backbone_name=str(checkpoint))  # fmt: skip
    return root


@pytest.mark.parametrize(
    "names",
    [("lora-a", "lora-b"), ("prefix-a", "prefix-b"), ("bottleneck-a", "bottleneck-b"),
     ("adalora-a", "prefix-b", "lora-a", "bottleneck-b")],
)  # fmt: skip
def test_the_bank_serves_several_adapters_in_one_batch(names, checkpoint, store):
    """Row i of a hot-swapped batch is row i of the same batch through adapter i loaded alone."""
    bank = AdapterBank(store=store, device="cpu")
    batch = {k: v[[i % 2 for i in range(len(names))]] for k, v in labelled_batch().items()}
    with bank.route(list(names), kind="tts") as model:
        mixed = mel(model, batch)
    rows = []
    for row, name in enumerate(names):
        method = BANKED[name][0]
        alone = METHODS.get(method).load(load_frozen(checkpoint, "tts", "fp32", device="cpu"), store / name)
        rows.append(mel(alone, batch)[row])
        torch.testing.assert_close(mixed[row], rows[-1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(rows[0], mel(alone, batch)[0], atol=1e-3)  # the adapters really differ
