"""AdapterBank: every method hot-swapped on one backbone, and mixed batches equal to each adapter alone.

The reference for "alone" is the path `speechpeft eval` takes: `load_trained` (PEFT's `from_pretrained` for
LoRA/AdaLoRA, our own loaders for prefix/bottleneck) on a fresh backbone, one clip per batch.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from speechpeft.adapters.bank import BASE, AdapterBank, UnknownAdapterError
from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.errors import InputError
from speechpeft.evaluation import load_trained
from speechpeft.tasks.catalog import TASKS
from tests.audio import spoken

WHISPER, SPEECHT5 = "speechpeft/tiny-whisper", "speechpeft/tiny-speecht5"
ALL_LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
ASR = {  # name -> (method, options, weight scale)
    "lora": ("lora", AdapterOptions(rank=4, target_modules=ALL_LINEARS), 0.1),
    "adalora": ("adalora", AdapterOptions(rank=4), 0.5),
    "prefix": ("prefix", AdapterOptions(prefix_length=4, prefix_encoder=True), 1.0),
    "prefix6": ("prefix", AdapterOptions(prefix_length=6), 1.0),
    "houlsby": ("bottleneck", AdapterOptions(bottleneck_style="houlsby", reduction_factor=4), 0.1),
}
SENTENCES = ["turn on the kitchen lights", "what is the weather like", "play some jazz music",
             "set an alarm for seven", "yes please", "no thanks"]  # fmt: skip
INTENTS = {"three": ["lights_on", "lights_off", "music"], "four": ["alarm", "weather", "music", "stop"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Adapters with random weights on the shipped tiny backbones, one of each method per task."""
    root = tmp_path_factory.mktemp("store")
    for seed, (name, (method, options, scale)) in enumerate(ASR.items()):
        save_random_adapters(load_frozen(WHISPER, "asr"), method, [root / "asr" / name], task="asr", options=options,
                             scale=scale, seed=seed, backbone_name=WHISPER)  # fmt: skip
    for method, labels in [("lora", "three"), ("bottleneck", "four"), ("prefix", "three"), ("frozen", "four")]:
        backbone = load_frozen(WHISPER, "classify", labels=INTENTS[labels])
        save_random_adapters(backbone, method, [root / "intent" / method], task="intent", labels=INTENTS[labels],
                             scale=0.5, backbone_name=WHISPER)  # fmt: skip
    save_random_adapters(load_frozen(WHISPER, "asr"), "lora", [root / "intent" / "decoder"], task="intent",
                         labels=INTENTS["four"], classifier="decoder", scale=0.05, backbone_name=WHISPER)  # fmt: skip
    for method in ("lora", "prefix"):
        save_random_adapters(load_frozen(SPEECHT5, "tts"), method, [root / "tts" / method], task="tts", scale=0.3,
                             backbone_name=SPEECHT5)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    directory = tmp_path_factory.mktemp("audio")
    return [spoken(text, directory, name=f"clip{i}") for i, text in enumerate(SENTENCES)]


@pytest.fixture()
def bank(store: Path) -> AdapterBank:
    return AdapterBank(store=store, default_backbone=WHISPER)


def alone(store: Path, name: str, clips: list[np.ndarray], beams: int = 1) -> list[str]:
    """The transcripts `speechpeft eval` would give: the adapter loaded on its own backbone, `clips` as one batch."""
    if name == BASE:
        task = TASKS.get("asr").build(load_frozen(WHISPER, "asr"), None)
        model = task.backbone.model
    else:
        task, model, _ = load_trained(store / name)
    task.num_beams = beams if beams > 1 else None
    with torch.no_grad():
        return task.predict(model, task.audio_batch(clips)).outputs


@pytest.mark.parametrize("beams", [1, 3])
def test_a_mixed_batch_of_four_methods_equals_each_adapter_alone(store, bank, clips, beams):
    """Row i of the mixed batch is row i of the same clips run through adapter i alone: the same batch, so that
    float rounding (which depends on the batch's size) is the same on both sides, as near-tied beams would show."""
    names = ["asr/lora", "asr/adalora", "asr/prefix", "asr/houlsby", BASE, "asr/prefix6"]
    each = {name: alone(store, name, clips, beams) for name in names}  # every adapter on every clip
    for assignment in (names, names[3:] + names[:3]):  # each row follows its adapter, not its position
        expected = [each[name][row] for row, name in enumerate(assignment)]
        assert len(set(expected)) == len(expected)  # the adapters really differ, so a misroute would show
        assert bank.transcribe(clips, adapter=assignment, num_beams=beams) == expected


def test_every_sample_through_every_adapter_matches_its_transcript_alone(store, bank, clips):
    """The same clip through five adapters in one batch: five different transcripts, each the adapter's own on the
    clip alone (a batch of one: greedy decoding of these clips does not depend on the batch)."""
    names = ["asr/lora", "asr/adalora", "asr/prefix", "asr/houlsby", BASE]
    got = bank.transcribe([clips[2]] * len(names), adapter=names)
    assert got == [alone(store, name, [clips[2]])[0] for name in names]


def test_mixed_logits_match_peft_and_our_loaders_to_float_rounding(store, bank, clips):
    """One teacher-forced forward: every row's logits equal those of its adapter loaded the usual way."""
    names = ["asr/lora", "asr/adalora", "asr/prefix6", "asr/houlsby", BASE]
    task = TASKS.get("asr").build(load_frozen(WHISPER, "asr"), None)
    batch = task.audio_batch(clips[: len(names)])
    decoder = torch.tensor([[task.backbone.model.config.decoder_start_token_id, 11, 12, 13]] * len(names))
    inputs = {"input_features": batch["input_features"], "decoder_input_ids": decoder}
    with torch.no_grad(), bank.route(names) as model:
        mixed = model(**inputs).logits
    for row, name in enumerate(names):
        model = task.backbone.model if name == BASE else load_trained(store / name)[1]
        with torch.no_grad():
            solo = model(**{k: v[row : row + 1] for k, v in inputs.items()}).logits
        torch.testing.assert_close(mixed[row : row + 1], solo, rtol=1e-4, atol=1e-4)
        assert (mixed[row].argmax(-1) == solo[0].argmax(-1)).all()


def test_pooled_heads_with_different_label_maps_classify_in_one_batch(store, bank, clips):
    names = ["intent/lora", "intent/bottleneck", "intent/prefix", "intent/frozen"]
    got = bank.classify(clips[:4], adapter=names)
    for result, name, clip in zip(got, names, clips[:4], strict=True):
        task, model, record = load_trained(store / name)
        with torch.no_grad():
            logits = model(**task.backbone.processor(clip, sampling_rate=16_000, return_tensors="pt")).logits
        probabilities = logits[0].float().softmax(-1)
        assert list(result["scores"]) == record["labels"]
        assert result["label"] == record["labels"][int(probabilities.argmax())]
        np.testing.assert_allclose(list(result["scores"].values()), probabilities.numpy(), atol=1e-5)


def test_a_decoder_classifier_scores_its_labels_as_eval_does(store, bank, clips):
    task, model, record = load_trained(store / "intent" / "decoder")
    got = bank.classify(clips[:3], adapter="intent/decoder")
    for result, clip in zip(got, clips[:3], strict=True):
        inputs = task.backbone.processor.feature_extractor(clip, sampling_rate=16_000, return_tensors="pt")
        with torch.no_grad():
            probabilities = task.label_log_likelihoods(model, dict(inputs)).softmax(-1)[0]
        assert result["label"] == record["labels"][int(probabilities.argmax())]
        np.testing.assert_allclose(list(result["scores"].values()), probabilities.numpy(), atol=1e-5)


def test_speech_per_text_follows_its_adapter(store, bank):
    texts, names = ["yes", "no", "play some jazz music"], ["tts/lora", "tts/prefix", BASE]
    got = bank.synthesize(texts, adapter=names, backbone=SPEECHT5)
    for audio, text, name in zip(got, texts, names, strict=True):
        if name == BASE:
            task = TASKS.get("tts").build(load_frozen(SPEECHT5, "tts"), None)
            model = task.backbone.model
        else:
            task, model, _ = load_trained(store / name)
        with torch.no_grad():
            expected, _ = task.speak(model, task.tokenizer(text, return_tensors="pt").input_ids[0])
        assert audio.dtype == np.float32 and len(audio) == len(expected)
        np.testing.assert_allclose(audio, expected, atol=1e-5)
    assert len({len(a) for a in got}) > 1 or not np.allclose(got[0], got[1])


def test_lru_budget_evicts_the_least_recently_used_and_spares_pinned(store):
    sizes = {n: AdapterBank(store=store).load(f"asr/{n}").bytes for n in ("prefix", "prefix6", "adalora")}
    bank = AdapterBank(store=store, max_bytes=sizes["prefix"] + sizes["prefix6"] + sizes["adalora"] - 1)
    bank.load("asr/prefix", pin=True)
    bank.load("asr/prefix6")
    bank.load("asr/adalora")  # over budget: evicts prefix6 (LRU, unpinned), never the pinned prefix
    assert [a.name for a in bank.resident()] == ["asr/prefix", "asr/adalora"]
    assert bank.stats()["evictions"] == 1 and bank.stats()["resident_bytes"] <= bank.max_bytes
    assert sizes["prefix6"] < sizes["prefix"]  # 6 positions, decoder only; 4 positions, encoder and decoder
    tiny = AdapterBank(store=store, max_bytes=sizes["prefix"])
    with pytest.raises(InputError, match="budget"):
        tiny.load("asr/lora")
    tiny.load("asr/prefix6", pin=True)
    with pytest.raises(InputError, match="pinned"):
        tiny.load("asr/prefix")


def test_errors_name_the_problem(store, bank, clips, tmp_path):
    with pytest.raises(UnknownAdapterError, match="asr/nope"):
        bank.transcribe(clips[0], adapter="asr/nope")
    with pytest.raises(InputError, match=r"'intent'.*not asr"):
        bank.transcribe(clips[0], adapter="intent/lora")
    with pytest.raises(InputError, match="shape \\(2, 100\\)"):
        bank.transcribe(np.zeros((2, 100), np.float32))
    with pytest.raises(InputError, match="1-D float"):
        bank.transcribe([np.zeros(100, np.int16)])
    with pytest.raises(InputError, match="one per input"):
        bank.transcribe(clips[:2], adapter=["asr/lora"])
    with pytest.raises(InputError, match="needs a backbone"):
        AdapterBank(store=store).transcribe(clips[0])
    with pytest.raises(InputError, match="no trained head"):
        bank.classify(clips[0], adapter=BASE)
    save_random_adapters(load_frozen(WHISPER, "asr"), "full", [tmp_path / "full"], task="asr", backbone_name=WHISPER)
    with pytest.raises(InputError, match="own backbone"):
        bank.load(tmp_path / "full")


def test_unloading_during_a_call_keeps_the_adapter_the_call_started_with(store, bank, clips):
    expected = alone(store, "asr/houlsby", [clips[3]])
    task = TASKS.get("asr").build(load_frozen(WHISPER, "asr"), None)
    bank.load("asr/houlsby")
    with bank.route(["asr/houlsby"]) as model:
        threading.Thread(target=bank.unload, args=("asr/houlsby",)).start()  # the registry is not the forward's lock
        with torch.no_grad():
            texts = task.predict(model, task.audio_batch([clips[3]])).outputs
    assert "asr/houlsby" not in [a.name for a in bank.resident()] and texts == expected


def test_concurrent_callers_each_get_their_own_adapter(store, bank, clips):
    names = ["asr/lora", "asr/prefix", "asr/houlsby", BASE]
    expected = {name: alone(store, name, [clips[1]])[0] for name in names}
    results: list[tuple[str, str]] = []

    def call(name: str) -> None:
        for _ in range(3):
            results.append((name, bank.transcribe(clips[1], adapter=name)))

    def churn() -> None:
        for _ in range(3):
            bank.load("asr/adalora")
            bank.unload("asr/adalora")

    threads = [threading.Thread(target=call, args=(n,)) for n in names] + [threading.Thread(target=churn)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 12 and all(text == expected[name] for name, text in results)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_mixed_batch_on_cuda_equals_each_adapter_alone(store, clips, precision):
    """The routing layers on a bf16 (autocast) or bitsandbytes int8 backbone: adapters stay fp32 on the GPU."""
    names = ["asr/adalora", "asr/prefix", "asr/houlsby", BASE]
    bank = AdapterBank(store=store, device="cuda", precision=precision, default_backbone=WHISPER)
    got = bank.transcribe(clips[: len(names)], adapter=names)
    for row, name in enumerate(names):
        if name == BASE:
            task = TASKS.get("asr").build(load_frozen(WHISPER, "asr", precision, device="cuda"), None)
            model = task.backbone.model
        else:
            task, model, _ = load_trained(store / name, precision, device="cuda")
        with torch.no_grad(), task.backbone.autocast():
            assert task.predict(model, task.audio_batch(clips[: len(names)])).outputs[row] == got[row]
    assert len(bank.resident()) == 3
    assert {t.device.type for r in bank._adapters.values() for t in r.weights.tensors()} == {"cuda"}


class _ForceTimestamps(LogitsProcessor):
    """Makes `rows` of the first `generate` call write `<|1.00|><|1.00|><|endoftext|>`: Whisper then seeks on from
    1 s and decodes a second segment for those clips only, in a smaller batch."""

    def __init__(self, rows: list[int], tokens: list[int]) -> None:
        self.rows, self.tokens, self.calls, self.start = rows, tokens, 0, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.start is None or input_ids.shape[-1] <= self.start:  # a new call to the inner generate
            self.start, self.calls = input_ids.shape[-1], self.calls + 1
        step = input_ids.shape[-1] - self.start
        for row in self.rows if self.calls == 1 and step < len(self.tokens) else []:
            scores[row] = float("-inf")
            scores[row, self.tokens[step]] = 0.0
        return scores


def test_routes_follow_whisper_decoding_a_second_segment_for_some_clips(tmp_path, clips):
    """Real whisper-tiny.en: clip 0 ends its first segment on timestamps, so `generate` decodes it again alone."""
    whisper = "openai/whisper-tiny.en"
    backbone = load_frozen(whisper, "asr")
    save_random_adapters(backbone, "lora", [tmp_path / "asr/a", tmp_path / "asr/b"], task="asr", scale=0.02,
                         backbone_name=whisper)  # fmt: skip
    tokenizer, bank = backbone.processor.tokenizer, AdapterBank(store=tmp_path)
    forced = [tokenizer.convert_tokens_to_ids("<|1.00|>")] * 2 + [tokenizer.eos_token_id]

    def generate(names: list[str], audio: list[np.ndarray], rows: list[int]) -> torch.Tensor:
        features = backbone.processor.feature_extractor(audio, sampling_rate=16_000, return_tensors="pt")
        mask = torch.ones(features.input_features.shape[::2], dtype=torch.long)
        processors = LogitsProcessorList([_ForceTimestamps(rows, forced)])
        with torch.no_grad(), bank.route(names) as model:
            return model.generate(features.input_features, attention_mask=mask, max_new_tokens=20,
                                  logits_processor=processors)  # fmt: skip

    mixed = generate(["asr/a", "asr/b"], clips[:2], rows=[0])
    first, second = generate(["asr/a"], clips[:1], rows=[0]), generate(["asr/b"], clips[1:2], rows=[])
    assert mixed[0, :2].tolist() == forced[:2] and mixed[0].shape[0] > 3  # a second segment was decoded
    assert mixed[0, : first.shape[1]].tolist() == first[0].tolist()
    assert mixed[1, : second.shape[1]].tolist() == second[0].tolist()
