"""Every backbone family loads for each of its tasks in fp32, bf16 and int8, frozen, and runs a forward pass."""

import shutil

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
import transformers

from speechpeft.backbones import BACKBONES, BackboneNotFoundError, FrozenBackbone, load_frozen, resolve_precision
from tests.conftest import BACKBONE_FAMILIES, checkpoint_for

CASES = [(family, task) for family in BACKBONE_FAMILIES for task in BACKBONES.get(family).tasks]


def one_second_of_audio() -> np.ndarray:
    t = np.arange(16_000) / 16_000
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def forward(backbone: FrozenBackbone) -> torch.Tensor:
    """One forward pass through the task's model with inputs prepared by the loaded processor, on the model's
    device and in its input dtype (bf16; fp16 for int8 on CUDA, whose unquantised layers run in fp16)."""
    model, processor = backbone.model, backbone.processor
    dtype, device = backbone.input_dtype, backbone.device
    if backbone.task == "tts":
        ids = processor(text="turn on the lights", return_tensors="pt")["input_ids"].to(device)
        speaker = torch.zeros(1, model.config.speaker_embedding_dim, dtype=dtype, device=device)
        mel = torch.zeros(1, 4, model.config.num_mel_bins, dtype=dtype, device=device)
        return model(input_ids=ids, speaker_embeddings=speaker, decoder_input_values=mel).spectrogram
    extractor = getattr(processor, "feature_extractor", processor)
    inputs = extractor(one_second_of_audio(), sampling_rate=16_000, return_tensors="pt")
    features = {k: v.to(device, dtype) for k, v in inputs.items() if k in ("input_features", "input_values")}
    if backbone.task == "asr" and model.config.is_encoder_decoder:
        start = torch.tensor([[model.config.decoder_start_token_id]], device=device)
        return model(**features, decoder_input_ids=start).logits
    return model(**features).logits


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize(("family", "task"), CASES)
def test_load_frozen(tiny_backbone_dirs, family, task, precision):
    backbone = load_frozen(checkpoint_for(tiny_backbone_dirs, family, task), task, precision, device="cpu")

    assert backbone.spec.family == family and backbone.precision == precision
    assert type(backbone.model).__name__ == backbone.spec.task(task).model_class
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert not backbone.model.training
    int8_layers = [m for m in backbone.model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    if precision == "int8":
        assert int8_layers and all(m.weight.dtype == torch.int8 for m in int8_layers)
        heads = backbone.spec.task(task).head_modules
        assert not any(isinstance(getattr(backbone.model, h), bnb.nn.Linear8bitLt) for h in heads)
    else:
        assert not int8_layers
        expected = torch.bfloat16 if precision == "bf16" else torch.float32
        assert {p.dtype for p in backbone.model.parameters() if p.is_floating_point()} == {expected}
    with torch.no_grad():
        output = forward(backbone)
    assert torch.isfinite(output.float()).all()


def test_int8_linear_outputs_track_fp32(tiny_backbone_dirs):
    """LLM.int8 is lossy but close: the classification logits differ only by quantisation noise."""
    fp32 = load_frozen(tiny_backbone_dirs["wav2vec2"], "asr", "fp32", device="cpu")
    int8 = load_frozen(tiny_backbone_dirs["wav2vec2"], "asr", "int8", device="cpu")
    with torch.no_grad():
        reference, quantised = forward(fp32), forward(int8)
    assert quantised.shape == reference.shape
    assert torch.allclose(quantised, reference, atol=0.05 * reference.abs().max().item())


def test_processor_matches_the_task(tiny_backbone_dirs):
    asr = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    classify = load_frozen(tiny_backbone_dirs["whisper"], "classify", "fp32", device="cpu")
    assert isinstance(asr.processor, transformers.WhisperProcessor)
    assert isinstance(classify.processor, transformers.WhisperFeatureExtractor)
    assert (
        asr.processor.tokenizer.decode(asr.processor.tokenizer("yes no").input_ids, skip_special_tokens=True)
        == "yes no"
    )


def test_auto_precision_is_fp32_on_cpu_and_bf16_on_cuda():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of fp32, bf16, int8, auto"):
        resolve_precision("fp16", torch.device("cpu"))


def test_unknown_task_names_the_tasks_the_family_serves(tiny_backbone_dirs):
    with pytest.raises(ValueError, match="'whisper' does not serve task 'tts'; it serves: asr, classify"):
        load_frozen(tiny_backbone_dirs["whisper"], "tts", "fp32", device="cpu")


def test_unsupported_architecture_lists_supported_model_types(tmp_path):
    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"no backbone family handles model_type 'bert'; supported model types: \["):
        load_frozen(tmp_path, "asr", "fp32", device="cpu")


def test_uncached_hub_id_offline_names_the_id_and_the_fix(tmp_path):
    with pytest.raises(BackboneNotFoundError) as error:
        load_frozen("openai/whisper-tiny", "asr", "fp32", device="cpu", cache_dir=tmp_path)
    message = str(error.value)
    assert "'openai/whisper-tiny' is not a local directory and not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE=1" in message and "--backbone /path/to/whisper-tiny" in message


def test_cached_hub_id_loads_offline_through_the_same_path(tiny_backbone_dirs, tmp_path):
    """A Hub id resolves from the Hugging Face cache layout (refs/main -> snapshots/<commit>/) with no network."""
    repo = tmp_path / "models--speechpeft-test--tiny-whisper"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_backbone_dirs["whisper"], repo / "snapshots" / commit)
    backbone = load_frozen("speechpeft-test/tiny-whisper", "asr", "int8", device="cpu", cache_dir=tmp_path)
    assert backbone.source == "speechpeft-test/tiny-whisper" and backbone.spec.family == "whisper"
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_missing_local_path_is_reported_as_a_path(tmp_path):
    with pytest.raises(BackboneNotFoundError, match="does not exist or is not a directory"):
        load_frozen(tmp_path / "nope", "asr", "fp32", device="cpu")


def test_loads_only_safetensors(tiny_backbone_dirs, tmp_path):
    """A checkpoint whose weights are a pickle (pytorch_model.bin) is refused, not unpickled."""
    model = load_frozen(tiny_backbone_dirs["wav2vec2"], "asr", "fp32", device="cpu").model
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        load_frozen(tmp_path, "asr", "fp32", device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_load_on_cuda(tiny_backbone_dirs, precision):
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", precision, device="cuda")
    assert next(backbone.model.parameters()).device.type == "cuda"
    with torch.no_grad():
        assert torch.isfinite(forward(backbone).float()).all()


def test_missing_backbone_weights_are_reported_but_a_missing_head_is_not(tiny_backbone_dirs, caplog):
    with caplog.at_level("INFO", logger="speechpeft.backbones.loading"):
        load_frozen(tiny_backbone_dirs["speecht5"], "asr", "fp32", device="cpu")  # a TTS checkpoint used for ASR
        load_frozen(tiny_backbone_dirs["wav2vec2"], "classify", "fp32", device="cpu")  # new classification head
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert len(warnings) == 1 and "Is this checkpoint meant for SpeechT5ForSpeechToText?" in warnings[0]
    assert any("task head ['classifier.bias'" in m and "starts from random weights" in m for m in infos)
