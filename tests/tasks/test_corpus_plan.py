from collections import Counter

import pytest

from speechpeft.tasks.corpus import plan, voices

NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven")
SENTENCES = [f"sentence number {w}" for w in NUMBERS]
SENTENCES += [f"the {a} {b} went home" for a in ("red", "blue", "big", "old") for b in ("cat", "dog", "fox", "hen")]
KINDS = {"sentence": 0.6, "command": 0.3, "keyword": 0.1}
SPLITS = {"pretrain": 0.7, "adapt": 0.2, "test": 0.1}


def make_plan(n: int = 400, seed: int = 0, voice_set: tuple = voices.VOICES) -> list[plan.Utterance]:
    pools = plan.build_pools(SENTENCES, test_fraction=0.2)
    return plan.take(plan.plan_utterances(pools, voice_set, KINDS, SPLITS, seed), n, None)


def test_plan_is_deterministic_for_a_seed():
    assert make_plan(seed=3) == make_plan(seed=3)
    assert make_plan(seed=3) != make_plan(seed=4)


def test_splits_separate_voices_and_texts():
    utterances = make_plan()
    by_split = {s: [u for u in utterances if u.split == s] for s in plan.SPLITS}
    assert {u.voice_group for u in by_split["pretrain"]} == {"pretrain"}
    assert {u.voice_group for u in by_split["adapt"]} == {"adapt"}
    assert {u.voice_group for u in by_split["test"]} == {"pretrain", "adapt"}
    train_texts = {u.text for u in by_split["pretrain"] + by_split["adapt"] if u.kind != "keyword"}
    test_texts = {u.text for u in by_split["test"] if u.kind != "keyword"}
    assert test_texts and not train_texts & test_texts


def test_labels_follow_the_kind():
    for u in make_plan():
        assert (u.intent != "") == (u.kind == "command")
        assert (u.keyword != "") == (u.kind == "keyword")
        assert u.keyword in ("", u.text)


def test_shares_roughly_follow_the_weights():
    counts = Counter(u.split for u in make_plan(n=2000))
    assert 0.65 < counts["pretrain"] / 2000 < 0.75 and 0.07 < counts["test"] / 2000 < 0.13


def test_pretrain_voices_only_give_no_adapt_split():
    utterances = make_plan(voice_set=voices.PRETRAIN_VOICES)
    assert {u.split for u in utterances} == {"pretrain", "test"}


def test_take_by_hours_stops_at_the_estimated_duration():
    pools = plan.build_pools(SENTENCES, 0.2)
    utterances = plan.take(plan.plan_utterances(pools, voices.VOICES, KINDS, SPLITS, 0), None, 0.05)
    total = sum(u.estimated_seconds() for u in utterances)
    assert 180 <= total < 180 + max(u.estimated_seconds() for u in utterances)


def test_plan_round_trips_through_jsonl(tmp_path):
    utterances = make_plan(n=20)
    plan.write_plan(tmp_path / "plan.jsonl", utterances)
    assert plan.read_plan(tmp_path / "plan.jsonl") == utterances


def test_voice_inventory():
    ids = [v.id for v in voices.VOICES]
    assert len(ids) == len(set(ids)) >= 10
    assert {v.engine for v in voices.VOICES} == {"espeak-ng", "flite", "festival"}
    assert {v.group for v in voices.PRETRAIN_VOICES} == {"pretrain"} and {v.group for v in voices.ADAPT_VOICES} == {
        "adapt"
    }
    assert voices.voice_by_id("flite-slt").name == "slt"
    with pytest.raises(ValueError, match="unknown voice 'flite-xyz'; voices: espeak-en-us"):
        voices.voice_by_id("flite-xyz")
