"""The corpus with real engines: clips, the saved dataset decoded through `datasets`, resume, the card."""

import json
import shutil

import datasets
import numpy as np
import pytest
import soundfile

from speechpeft.tasks.corpus import render
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions
from speechpeft.tasks.corpus.plan import Utterance
from speechpeft.tasks.corpus.voices import VOICES, Voice, missing_programs


def utterance(voice_id: str, index: int = 0, rate: float = 1.1) -> Utterance:
    voice = next(v for v in VOICES if v.id == voice_id)
    return Utterance(f"{index:07d}", "turn on the kitchen lights", "command", "lights_on", "[]", "", voice.id,
                     voice.engine, voice.group, voice.group, rate, 1.0)  # fmt: skip


def test_engines_are_installed():
    assert missing_programs() == []


@pytest.mark.parametrize("voice_id", ["espeak-en-us+f3", "flite-slt", "flite-kal16", "festival-kal_diphone"])
def test_render_clip_is_16k_mono_normalised(tmp_path, voice_id):
    path = render.render_clip(utterance(voice_id), tmp_path)
    audio, rate = soundfile.read(path)
    assert rate == 16_000 and audio.ndim == 1
    assert 0.8 < len(audio) / rate < 4.0  # five words
    assert np.abs(audio).max() == pytest.approx(10 ** (render.PEAK_DBFS / 20), abs=0.01)
    assert list(tmp_path.iterdir()) == [path]


def test_render_is_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = soundfile.read(render.render_clip(utterance("espeak-en-gb"), tmp_path / "a"))[0]
    second = soundfile.read(render.render_clip(utterance("espeak-en-gb"), tmp_path / "b"))[0]
    assert np.array_equal(first, second)


def test_festival_rate_is_applied_by_sox_tempo(tmp_path):
    slow = soundfile.info(render.render_clip(utterance("festival-kal_diphone", 0, 0.85), tmp_path)).duration
    fast = soundfile.info(render.render_clip(utterance("festival-kal_diphone", 1, 1.15), tmp_path)).duration
    assert fast < slow * 0.85


def test_render_all_resumes_after_an_interruption(tmp_path):
    planned = [utterance("flite-awb", i) for i in range(6)]
    calls = []

    def interrupted_after_three(u, clips):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(u.id)
        return render.render_clip(u, clips)

    with pytest.raises(KeyboardInterrupt):
        render.render_all(planned, tmp_path, jobs=1, progress=False, render=interrupted_after_three)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:07d}.flac" for i in range(3)]
    assert render.render_all(planned, tmp_path, jobs=2, progress=False) == 3
    assert render.render_all(planned, tmp_path, jobs=2, progress=False) == 0


def test_engine_failure_names_the_engine_and_the_utterance(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "voice_by_id", lambda _: Voice("espeak-ng", "xx-no-such-voice", "adapt"))
    with pytest.raises(render.SynthesisError, match=r"espeak-ng failed \(exit 1\) on utterance 0000000"):
        render.render_clip(utterance("espeak-en-us"), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def corpus_500(tmp_path_factory):
    """The issue's acceptance size: 500 utterances with every voice and engine available."""
    out = tmp_path_factory.mktemp("corpus") / "synth500"
    build_corpus(SynthOptions(out=out, utterances=500, seed=0), progress=False)
    return out


@pytest.mark.slow
def test_500_utterances_cover_engines_and_voices(corpus_500):
    corpus = datasets.load_from_disk(str(corpus_500))
    assert set(corpus) == {"pretrain", "adapt", "test"}
    assert sum(len(split) for split in corpus.values()) == 500
    rows = datasets.concatenate_datasets(list(corpus.values())).remove_columns("audio")
    assert len(set(rows["engine"])) >= 3 and len(set(rows["voice"])) >= 10
    assert len({i for i in rows["intent"] if i}) >= 10
    assert all(split == column for split, ds in corpus.items() for column in ds["split"])


@pytest.mark.slow
def test_saved_audio_decodes_through_datasets(corpus_500):
    corpus = datasets.load_from_disk(str(corpus_500))
    row = corpus["adapt"][0]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == 16_000 and samples.data.shape[0] == 1
    assert samples.data.shape[1] / 16_000 == pytest.approx(row["duration"], abs=0.01)
    assert corpus.keys() and not (corpus_500 / ".work").exists()


@pytest.mark.slow
def test_card_and_facts_describe_the_corpus(corpus_500):
    facts = json.loads((corpus_500 / "synth.json").read_text())
    card = (corpus_500 / "README.md").read_text()
    assert facts["options"]["utterances"] == 500 and facts["rendered_now"] == 500
    assert sum(s["utterances"] for s in facts["splits"].values()) == 500
    assert "speechpeft data synth --utterances 500 --seed 0" in card
    assert "| flite-awb | flite | adapt |" in card


def test_build_resumes_a_partial_build_and_refuses_other_options(tmp_path):
    out = tmp_path / "corpus"
    options = SynthOptions(out=out, utterances=12, voices=("flite-slt", "espeak-en-us"), keep_clips=True)
    first = build_corpus(options, progress=False)
    (out / "dataset_dict.json").unlink()  # as if it was interrupted before saving
    clips = sorted((out / ".work" / "clips").glob("*.flac"))
    for clip in clips[:3]:
        clip.unlink()
    with pytest.raises(FileExistsError, match="partial build made with other options"):
        build_corpus(SynthOptions(out=out, utterances=13, voices=options.voices), progress=False)
    second = build_corpus(SynthOptions(**{**options.__dict__, "keep_clips": False}), progress=False)
    assert json.loads((out / "synth.json").read_text())["rendered_now"] == 3
    assert {s: ds["text"] for s, ds in first.items()} == {s: ds["text"] for s, ds in second.items()}
    stamp = (out / "dataset_dict.json").stat().st_mtime_ns
    kept = build_corpus(options, progress=False)  # finished, same options: kept as it is
    assert (out / "dataset_dict.json").stat().st_mtime_ns == stamp and kept["test"]["text"] == second["test"]["text"]
    with pytest.raises(FileExistsError, match=r"built with other options .*pass --overwrite"):
        build_corpus(SynthOptions(out=out, utterances=13, voices=options.voices), progress=False)
    shutil.rmtree(out)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of --utterances N or --hours H"),
        ({"utterances": 5, "hours": 1.0}, "exactly one of"),
        ({"utterances": 0}, "must be positive"),
        ({"utterances": 5, "voices": ("flite-nope",)}, "unknown voices \\['flite-nope'\\]"),
        ({"utterances": 5, "kinds": ("sentence=x",)}, "--kinds expects name=weight"),
        ({"utterances": 5, "splits": ("train=1",)}, "--splits: 'train=1' must be one of"),
    ],
)
def test_options_are_validated(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthOptions(out=tmp_path, **kwargs)


def test_refuses_to_write_into_a_directory_that_is_not_a_corpus(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no speechpeft corpus"):
        build_corpus(SynthOptions(out=tmp_path, utterances=2, overwrite=True), progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
