"""The tiny-hifigan recipe on a toy generator and synthetic chirps: its clip store, mel alignment, loss, a few
steps, exact resume, the exported vocoder at run time, and its options."""

import json
import shutil
from pathlib import Path

import auraloss
import datasets
import numpy as np
import pytest
import soundfile
import torch
import transformers
from safetensors.torch import load_file

from speechpeft.backbones.pretrain import hifigan as recipe
from speechpeft.backbones.pretrain.options import HifiGanPretrainOptions
from speechpeft.backbones.pretrain.state import load_state
from speechpeft.backbones.vocoder import hifigan, load_hifigan
from speechpeft.cli import main
from speechpeft.errors import InputError
from tests.backbones.resume import assert_resume_is_exact

RATE, HOP = 16_000, 256
TOY = {"channels": 16, "segment_frames": 16, "batch_size": 4, "eval_utterances": 2, "warmup": 2, "lr": 3e-3,
       "threads": 1}  # fmt: skip
CLIPS = 10  # full-length chirps; the corpus adds one too short for a segment and one at 8 kHz


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def chirp(seconds: float, low: float, high: float, seed: int, rate: int = RATE) -> np.ndarray:
    """A rising tone under a fade-in and faint noise, quantised to 16 bits as the corpus's FLAC is."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * (low * t + (high - low) / (2 * seconds) * t**2)) * np.minimum(1, t * 8)
    noisy = tone + 0.003 * np.random.default_rng(seed).standard_normal(len(t))
    return (np.round(noisy * 32767) / 32768).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A `speechpeft data synth`-shaped corpus: a pretrain split of chirps by one voice (FLAC, 16 bits)."""
    root = tmp_path_factory.mktemp("hifigan")
    clips = [(chirp(0.6 + 0.05 * i, 150 + 20 * i, 900 + 50 * i, seed=i), RATE) for i in range(CLIPS)]
    clips += [(chirp(0.2, 300, 600, seed=98), RATE), (chirp(0.8, 200, 700, seed=99, rate=8000), 8000)]
    paths = []
    for i, (samples, rate) in enumerate(clips):
        paths.append(str(root / f"clip{i}.flac"))
        soundfile.write(paths[-1], samples, rate, subtype="PCM_16")
    rows = datasets.Dataset.from_dict({"id": [f"{i:07d}" for i in range(len(clips))], "audio": paths,
                                       "text": [f"sentence {i}" for i in range(len(clips))],
                                       "voice": ["espeak-en-us"] * len(clips)})  # fmt: skip
    rows = rows.cast_column("audio", datasets.Audio())  # no resampling: the 8 kHz clip stays 8 kHz
    datasets.DatasetDict({"pretrain": rows}).save_to_disk(str(root / "corpus"))
    return root / "corpus"


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    """A run directory whose clip store is built: runs copy its `data/` so each test does not redo it."""
    out = tmp_path_factory.mktemp("hifigan") / "prepared"
    recipe.prepare(HifiGanPretrainOptions(corpus=corpus, out=out, **TOY), transformers.SpeechT5FeatureExtractor())
    return out / "data"


def toy_options(corpus: Path, prepared: Path, out: Path, **changes) -> HifiGanPretrainOptions:
    shutil.copytree(prepared, out / "data")
    return HifiGanPretrainOptions(corpus=corpus, out=out, **{**TOY, **changes})


def test_mel_frame_i_is_centred_on_sample_i_times_the_hop():
    """The extractor's alignment, measured: 1 + samples // 256 frames, and a click's energy peaks in the frame
    whose index is nearest click / 256. So a generator block [i * 256, (i + 1) * 256) starts at frame i's centre."""
    extractor = transformers.SpeechT5FeatureExtractor()
    for samples in (4096, 4097, 4351, 4352):
        mel = extractor(audio_target=chirp(samples / RATE, 200, 400, 0), sampling_rate=RATE)["input_values"][0]
        assert len(mel) == 1 + samples // HOP
    for click in (5000, 5100, 5120, 5200, 5250, 5300):
        audio = np.zeros(12_000, np.float32)
        audio[click] = 0.5
        mel = extractor(audio_target=audio, sampling_rate=RATE)["input_values"][0]
        assert (10.0**mel).sum(axis=1).argmax() == round(click / HOP)


def test_log_mel_is_the_extractors_own_and_the_loss_is_auraloss_plus_its_l1():
    extractor = transformers.SpeechT5FeatureExtractor()
    generated = torch.from_numpy(np.stack([chirp(0.5, 100, 500, 1), chirp(0.5, 900, 200, 2)]))
    target = torch.from_numpy(np.stack([chirp(0.5, 120, 520, 3), chirp(0.5, 800, 300, 4)]))
    target[1, :3000] = 0  # digital silence: the mel floor
    mels = {name: np.stack([extractor(audio_target=x.numpy(), sampling_rate=RATE)["input_values"][0] for x in wave])
            for name, wave in (("generated", generated), ("target", target))}  # fmt: skip
    np.testing.assert_allclose(recipe.LogMel(extractor)(target).numpy(), mels["target"], atol=1e-4)
    parts = recipe.ReconstructionLoss(extractor, mel_weight=2.0)(generated, target)
    expected_stft = auraloss.freq.MultiResolutionSTFTLoss()(generated.unsqueeze(1), target.unsqueeze(1))
    torch.testing.assert_close(parts["mr_stft"], expected_stft, rtol=0, atol=0)
    assert parts["mel_l1"].item() == pytest.approx(np.abs(mels["generated"] - mels["target"]).mean(), abs=1e-4)
    torch.testing.assert_close(parts["loss"], parts["mr_stft"] + 2.0 * parts["mel_l1"])


def test_the_clip_store_is_lossless_and_every_row_left_out_is_counted(corpus, prepared, tmp_path):
    store = recipe.load_clip_store(prepared / "clips")
    rows = datasets.load_from_disk(str(corpus))["pretrain"]
    assert store.left_out == {recipe.NOT_16_KHZ: 1} and len(store) == CLIPS + 1
    extractor = transformers.SpeechT5FeatureExtractor()
    for i in (0, CLIPS):
        samples = rows[i]["audio"].get_all_samples().data[0].numpy()
        np.testing.assert_array_equal(store.clip(i), samples)
        mel = extractor(audio_target=samples, sampling_rate=RATE)["input_values"][0]
        np.testing.assert_array_equal(store.mel(i), mel)
    options = toy_options(corpus, prepared, tmp_path / "run")
    _, train_rows, held_rows, left_out = recipe.prepare(options, extractor)
    assert left_out == {recipe.NOT_16_KHZ: 1, recipe.TOO_SHORT: 1}
    assert len(held_rows) == 2 and sorted([*train_rows, *held_rows]) == list(range(CLIPS))


def test_the_clip_store_resumes_at_the_first_missing_shard(corpus, prepared, tmp_path, monkeypatch):
    rows, calls, save = datasets.load_from_disk(str(corpus))["pretrain"], [], recipe._save_shard

    def interrupted(path, chunk, extractor):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        save(path, chunk, extractor)

    monkeypatch.setattr(recipe, "SHARD_ROWS", 5)
    monkeypatch.setattr(recipe, "_save_shard", interrupted)
    extractor = transformers.SpeechT5FeatureExtractor()
    with pytest.raises(KeyboardInterrupt):
        recipe.build_clip_store(rows, extractor, tmp_path / "clips", progress=False)
    store = recipe.build_clip_store(rows, extractor, tmp_path / "clips", progress=False)
    assert calls == [5, 5, 5, 2]  # shard 0 was kept, shard 1 redone, then shard 2
    whole = recipe.load_clip_store(prepared / "clips")
    assert store.ids == whole.ids and store.left_out == whole.left_out
    np.testing.assert_array_equal(store.audio, whole.audio)
    np.testing.assert_array_equal(store.mels, whole.mels)
    with pytest.raises(InputError, match="clips of other rows"):
        recipe.build_clip_store(rows.select(range(3)), extractor, tmp_path / "clips", progress=False)


def test_segments_are_a_function_of_seed_and_step_and_pair_frames_with_their_samples(prepared):
    store = recipe.load_clip_store(prepared / "clips")
    frames = store.frames()[:CLIPS]
    clips, starts = recipe.segments(frames, seed=0, step=7, batch_size=4, segment_frames=16)
    again = recipe.segments(frames, seed=0, step=7, batch_size=4, segment_frames=16)
    assert clips.tolist() == again[0].tolist() and starts.tolist() == again[1].tolist()
    assert clips.tolist() != recipe.segments(frames, seed=0, step=8, batch_size=4, segment_frames=16)[0].tolist()
    assert len(set(clips.tolist())) == 4 and (starts >= 0).all() and (starts + 16 <= frames[clips]).all()
    last = len(store.mel(0)) - 16  # the last segment runs past the clip's end: silence
    mels, audio = recipe.make_batch(store, np.array([0, 0]), np.array([3, last]), 16)
    assert mels.shape == (2, 16, 80) and audio.shape == (2, 16 * HOP)
    np.testing.assert_array_equal(mels[0].numpy(), store.mel(0)[3:19])
    np.testing.assert_array_equal(audio[0].numpy(), store.clip(0)[3 * HOP : 19 * HOP])
    tail = store.clip(0)[last * HOP :]
    assert 0 < (16 * HOP - len(tail)) <= HOP and (audio[1, len(tail) :] == 0).all()
    np.testing.assert_array_equal(audio[1, : len(tail)].numpy(), tail)


@pytest.mark.slow  # 4 s: 12 steps and two evaluations
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(corpus, prepared, tmp_path):
    options = toy_options(corpus, prepared, tmp_path / "run", steps=12, eval_every=6)
    extractor = transformers.SpeechT5FeatureExtractor()
    store, train_rows, _, _ = recipe.prepare(options, extractor)
    torch.manual_seed(options.seed)
    model = transformers.SpeechT5HifiGan(recipe.hifigan_config(options.channels, extractor))  # the run's start
    loss = recipe.ReconstructionLoss(extractor, options.mel_weight)
    mels, target = recipe.make_batch(store, train_rows[:4], np.zeros(4, dtype=int), options.segment_frames)
    with torch.no_grad():
        before = loss(model(mels), target)
    best = recipe.pretrain_hifigan(options)
    load_state(tmp_path / "run" / "checkpoint", {"model": model}, torch.optim.AdamW(model.parameters()))
    with torch.no_grad():
        after = loss(model(mels), target)
    assert after["loss"] < 0.8 * before["loss"] and after["mr_stft"] < before["mr_stft"]
    assert best["step"] in (6, 12) and set(best) == {"step", "mel_l1", "mr_stft"}
    logged = [json.loads(line) for line in (tmp_path / "run" / "curves.jsonl").read_text().splitlines()]
    assert {"loss", "mr_stft", "mel_l1", "grad_norm"} <= set(logged[1]) and logged[1]["step"] == 10


@pytest.mark.slow  # 3 s: 4 + 2 + 2 steps
def test_resume_after_a_stop_is_bit_identical_to_an_uninterrupted_run(corpus, prepared, tmp_path, monkeypatch):
    runs = {n: toy_options(corpus, prepared, tmp_path / n, steps=4, eval_every=2) for n in ("whole", "stopped")}
    assert_resume_is_exact(lambda out: recipe.pretrain_hifigan(runs[out.name]), tmp_path, monkeypatch)


def test_the_command_line_exports_a_vocoder_that_the_runtime_loads(corpus, prepared, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(prepared, out / "data")
    toy = [f"--{k.replace('_', '-')}={v}" for k, v in TOY.items()]
    assert main(["backbones", "pretrain", "tiny-hifigan", "--corpus", str(corpus), "--out", str(out),
                 "--steps", "2", "--eval-every", "2", *toy]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["step"] == 2
    saved = load_file(str(out / "model" / "model.safetensors"))
    assert {tensor.dtype for tensor in saved.values()} == {torch.float16}
    vocoder = load_hifigan(out / "model")
    trained = load_file(str(out / "checkpoint" / "state.safetensors"))
    for name, tensor in vocoder.state_dict().items():
        torch.testing.assert_close(tensor, trained[f"model.{name}"].half().float(), rtol=0, atol=0)
    assert vocoder.dtype == torch.float32 and vocoder.config.speechpeft["features"]["hop_length"] == HOP
    mel = torch.from_numpy(recipe.load_clip_store(out / "data" / "clips").mel(0)[:37])
    audio = hifigan(mel, vocoder)
    assert audio.dtype == np.float32 and audio.shape == (37 * HOP,) and np.abs(audio).max() == pytest.approx(0.7)
    assert hifigan(mel[:0], vocoder).shape == (0,)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [({"channels": 24}, "--channels 24: must be a positive multiple of 16"), ({"channels": 0}, "--channels 0"),
     ({"segment_frames": 4}, "--segment-frames 4: must be at least 8"), ({"mel_weight": -1.0}, "--mel-weight -1.0"),
     ({"mel_weight": float("nan")}, "--mel-weight nan"), ({"voice": "nobody"}, "--voice nobody"),
     ({"layers": 2}, "--layers does not apply to tiny-hifigan"), ({"batch_size": 0}, "--batch-size"),
     ({"lr": float("inf")}, "--lr inf")],
)  # fmt: skip
def test_bad_options_are_refused_naming_the_flag(changes, flag, tmp_path):
    with pytest.raises(InputError, match=flag):
        HifiGanPretrainOptions(corpus=tmp_path, out=tmp_path / "run", **changes)


def test_bad_flags_on_the_command_line_name_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backbones", "pretrain", "tiny-hifigan", "--corpus", str(tmp_path), "--out", str(tmp_path / "r"),
              "--segment-frames", "2"])  # fmt: skip
    assert exit_.value.code == 2 and "--segment-frames 2: must be at least 8" in capsys.readouterr().err


def test_a_corpus_without_the_voice_is_refused(corpus, tmp_path):
    options = HifiGanPretrainOptions(corpus=corpus, out=tmp_path / "run", voice="espeak-en-gb", **TOY)
    with pytest.raises(InputError, match="no pretrain utterances by voice 'espeak-en-gb'"):
        recipe.prepare(options, transformers.SpeechT5FeatureExtractor())
