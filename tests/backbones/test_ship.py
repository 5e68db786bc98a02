"""`speechpeft backbones ship` and `remeasure` measure a staged copy: a measurement that fails keeps the backbone
shipped before."""

import json

import pytest

from speechpeft.backbones.pretrain import card, card_tts
from speechpeft.errors import MissingInputError


def fake_run(run):
    """A finished run as the ship functions read it (the measurement is replaced, so no real model is needed)."""
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text('{"version": "new"}')
    (run / "curves.jsonl").write_text('{"step": 1, "time": 0.0}\n')
    (run / "checkpoint").mkdir()
    options = {"voice": "espeak-en-us", "corpus": str(run / "corpus")}
    (run / "checkpoint" / "state.json").write_text(json.dumps({"step": 1, "best": None, "options": options}))
    return run


def fail_measurement(*args, **kwargs):
    raise RuntimeError("measurement failed")


@pytest.mark.parametrize(
    ("ship", "name", "measure"),
    [
        (card.ship_whisper, "tiny-whisper", "measure_whisper"),
        (card_tts.ship_tts, "tiny-speecht5", "measure_tts"),
    ],
)
def test_a_failing_measurement_keeps_the_shipped_backbone(ship, name, measure, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    (weights / name).mkdir(parents=True)
    (weights / name / "config.json").write_text('{"version": "shipped"}')
    monkeypatch.setattr(card if ship is card.ship_whisper else card_tts, measure, fail_measurement)

    with pytest.raises(RuntimeError, match="measurement failed"):
        ship(fake_run(tmp_path / "run"), tmp_path / "corpus", weights_dir=weights, name=name)
    assert json.loads((weights / name / "config.json").read_text()) == {"version": "shipped"}
    assert sorted(p.name for p in weights.iterdir()) == [name]  # the staged copy is gone


@pytest.mark.parametrize(
    ("remeasure", "name", "measure"),
    [
        (card.remeasure_whisper, "tiny-whisper", "measure_whisper"),
        (card_tts.remeasure_tts, "tiny-speecht5", "measure_tts"),
    ],
)
def test_remeasuring_needs_no_run_and_a_failing_one_keeps_the_card(remeasure, name, measure, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    with pytest.raises(MissingInputError, match=f"ship one first with `speechpeft backbones ship {name}"):
        remeasure(tmp_path / "corpus", weights_dir=weights, name=name)
    (weights / name).mkdir(parents=True)
    facts = {"training": {"options": {"voice": "espeak-en-us"}}, "measured": {"old": True}}
    (weights / name / card.CARD_FACTS).write_text(json.dumps(facts))
    monkeypatch.setattr(card if remeasure is card.remeasure_whisper else card_tts, measure, fail_measurement)

    with pytest.raises(RuntimeError, match="measurement failed"):
        remeasure(tmp_path / "corpus", weights_dir=weights, name=name)
    assert json.loads((weights / name / card.CARD_FACTS).read_text()) == facts
    assert sorted(p.name for p in weights.iterdir()) == [name]
