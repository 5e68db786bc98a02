"""The tiny-whisper pretraining recipe, run for a few steps on a tiny corpus: it trains, evaluates,
exports a checkpoint `load_frozen` accepts, and resumes exactly where it stopped."""

import json
import shutil

import numpy as np
import pytest
import torch
import transformers

from speechpeft.backbones import builtin, load_frozen
from speechpeft.backbones.pretrain import whisper as recipe
from speechpeft.backbones.pretrain.card import remeasure_whisper, ship_whisper
from speechpeft.backbones.pretrain.loop import Recipe, train, warmup_cosine
from speechpeft.backbones.pretrain.state import load_state, save_state
from speechpeft.backbones.pretrain.tokenizer import NOTIMESTAMPS, WHISPER_SPECIAL_TOKENS, train_whisper_tokenizer
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions

TINY = {"d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 300, "batch_size": 4, "warmup": 2,
        "eval_utterances": 3, "curriculum_steps": 2, "threads": 1, "chunk_seconds": 4}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "corpus"
    build_corpus(SynthOptions(out=out, utterances=60, seed=1, splits=("pretrain=0.5", "adapt=0.1", "test=0.4")),
                 progress=False)  # fmt: skip
    return out


@pytest.mark.slow
def test_pretrain_trains_exports_resumes_and_ships(corpus, tmp_path, monkeypatch):
    options = recipe.WhisperPretrainOptions(corpus=corpus, out=tmp_path / "run", steps=4, eval_every=2, **TINY)
    best = recipe.pretrain_whisper(options)

    curves = [json.loads(line) for line in (tmp_path / "run" / "curves.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curves if "wer_pretrain" in c] == [2, 4]
    assert best["step"] in (2, 4) and {"wer_pretrain", "wer_adapt", "cer_pretrain"} <= set(best)
    backbone = load_frozen(tmp_path / "run" / "model", "asr", "fp32", device="cpu")
    assert backbone.model.config.max_source_positions == 200  # 4 s chunk: 400 frames
    assert backbone.processor.tokenizer.decode(backbone.processor.tokenizer("hello there").input_ids,
                                               skip_special_tokens=True) == "hello there"  # fmt: skip

    longer = recipe.WhisperPretrainOptions(**{**options.__dict__, "steps": 6})
    recipe.pretrain_whisper(longer)
    meta = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert meta["step"] == 6
    steps_logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "curves.jsonl").read_text().splitlines()]
    assert steps_logged.count(4) == 1 and 6 in steps_logged  # resumed at 4, did not redo steps 1-4

    shipped = ship_whisper(tmp_path / "run", corpus, weights_dir=tmp_path / "weights")
    card = (shipped / "README.md").read_text()
    facts = json.loads((shipped / "speechpeft_card.json").read_text())
    assert facts["training"]["steps"] == 6 and "pretrain/all" in facts["measured"]["scores"]
    assert "| pretrain voices | all |" in card and "| adaptation voices | all |" in card
    assert f"speechpeft backbones pretrain tiny-whisper --corpus {corpus} --out {tmp_path / 'run'} --steps 6" in card
    assert "**Not for real speech.** speechpeft trained this model from scratch on espeak-ng speech only." in card
    assert "For real speech use `openai/whisper-tiny.en`" in card and "| human recordings" in card
    assert facts["measured"]["human"]["utterances"] == 8 and "adapt/flite" in facts["measured"]["engines"]
    remeasured = remeasure_whisper(corpus, weights_dir=tmp_path / "weights")
    again = json.loads((remeasured / "speechpeft_card.json").read_text())
    assert again["training"] == facts["training"] and again["measured"]["scores"] == facts["measured"]["scores"]
    assert again["measured"]["command"] == f"speechpeft backbones remeasure tiny-whisper --corpus {corpus}"
    monkeypatch.setattr(builtin, "WEIGHTS_DIR", tmp_path / "weights")
    assert load_frozen("speechpeft/tiny-whisper", "asr", "fp32", device="cpu").source == str(shipped)

    stage2 = recipe.WhisperPretrainOptions(**{**options.__dict__, "out": tmp_path / "stage2", "steps": 2,
                                              "init_from": tmp_path / "run" / "model", "freq_masks": 2,
                                              "time_masks": 2, "label_smoothing": 0.1})  # fmt: skip
    tokenizer = transformers.WhisperTokenizerFast.from_pretrained(tmp_path / "run" / "model")
    continued, _ = recipe.build_model(stage2, tokenizer)
    pairs = zip(continued.state_dict().values(), backbone.model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b.float()) for a, b in pairs)
    assert recipe.pretrain_whisper(stage2)["step"] == 2
    kept = transformers.WhisperTokenizerFast.from_pretrained(tmp_path / "stage2" / "data" / "tokenizer")
    assert kept.get_vocab() == tokenizer.get_vocab()
    card = (ship_whisper(tmp_path / "stage2", corpus, weights_dir=tmp_path / "weights") / "README.md").read_text()
    assert "**Stage 1**, from scratch: 6 steps" in card and "**Stage 2**, continuing the stage before: 2 steps" in card
    assert f"--init-from {tmp_path / 'run' / 'model'} --freq-masks 2 --time-masks 2 --label-smoothing 0.1" in card

    # a fresh clone: the run's record is committed (state.json, curves.jsonl), its weights and model are not; the
    # card's command trains it again (here for 2 steps) instead of refusing, and its curves start over
    (tmp_path / "run" / "checkpoint" / "state.safetensors").unlink()
    shutil.rmtree(tmp_path / "run" / "model")
    recipe.pretrain_whisper(recipe.WhisperPretrainOptions(**{**options.__dict__, "steps": 2}))
    logged = [json.loads(line)["step"] for line in (tmp_path / "run" / "curves.jsonl").read_text().splitlines()]
    assert max(logged) == 2 and (tmp_path / "run" / "model" / "config.json").exists()


def test_whisper_generate_decodes_like_plain_greedy_search():
    """Whisper's generate takes ids above <|notimestamps|> for timestamps: the specials must come last."""
    tokenizer = train_whisper_tokenizer(["turn on the lights", "what time is it", "play some music"], 300)
    last = range(len(tokenizer) - len(WHISPER_SPECIAL_TOKENS), len(tokenizer))
    assert [tokenizer.convert_tokens_to_ids(t) for t in WHISPER_SPECIAL_TOKENS] == list(last)
    model, _ = recipe.build_model(recipe.WhisperPretrainOptions(corpus="c", out="o", **TINY), tokenizer)
    features = torch.randn(3, 80, 400, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whisper = model.eval().generate(input_features=features)
        prompt = torch.tensor([[model.config.decoder_start_token_id, tokenizer.convert_tokens_to_ids(NOTIMESTAMPS)]])
        plain = transformers.GenerationMixin.generate(
            model, input_features=features, decoder_input_ids=prompt.repeat(3, 1)
        )
    assert tokenizer.batch_decode(whisper, skip_special_tokens=True) == tokenizer.batch_decode(
        plain, skip_special_tokens=True
    )


def test_unshipped_builtin_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(builtin.BuiltinNotShippedError, match="speechpeft backbones pretrain tiny-whisper"):
        load_frozen("speechpeft/tiny-whisper", "asr", "fp32", device="cpu")


def test_batches_follow_the_curriculum_and_are_a_function_of_the_step():
    options = recipe.WhisperPretrainOptions(corpus="c", out="o", batch_size=4, curriculum_steps=10,
                                            curriculum_start_seconds=2.0, chunk_seconds=6)  # fmt: skip
    durations = np.array([1.0, 1.5, 1.9, 2.5, 3.0, 4.0, 5.0, 5.9, 1.2, 1.1])
    first = recipe.batch_indices(options, durations, 0)
    assert np.array_equal(first, recipe.batch_indices(options, durations, 0))
    assert set(first) <= {0, 1, 2, 8, 9}  # only clips up to 2 s at step 0
    assert durations[recipe.batch_indices(options, durations, 10)].max() <= 6.0
    assert not np.array_equal(
        recipe.batch_indices(options, durations, 11), recipe.batch_indices(options, durations, 12)
    )


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    options = recipe.WhisperPretrainOptions(corpus="c", out="o", steps=100, warmup=10, lr=1e-3)
    assert warmup_cosine(options, 0) == pytest.approx(1e-4)
    assert warmup_cosine(options, 9) == pytest.approx(1e-3)
    assert warmup_cosine(options, 55) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert warmup_cosine(options, 100) == pytest.approx(1e-4)


def test_training_state_round_trips_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_state(tmp_path / "ckpt", {"model": model}, optimizer, 7, {"best": None})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["state.json", "state.safetensors"]

    restored = torch.nn.Linear(3, 2)
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=0.5)
    meta = load_state(tmp_path / "ckpt", {"model": restored}, restored_optimizer)
    assert meta["step"] == 7 and torch.equal(restored.weight, model.weight)
    moments = optimizer.state_dict()["state"][0]["exp_avg_sq"]
    assert torch.equal(restored_optimizer.state_dict()["state"][0]["exp_avg_sq"], moments)
    assert restored_optimizer.param_groups[0]["lr"] == 0.1


def test_a_finished_run_with_its_model_but_not_its_optimizer_state_is_not_restarted(tmp_path):
    from speechpeft.backbones.pretrain.loop import resumable

    checkpoint = tmp_path / "run" / "checkpoint"
    assert not resumable(checkpoint)  # a new run starts at step 0
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text('{"step": 8000}')
    (tmp_path / "run" / "model").mkdir()
    with pytest.raises(FileExistsError, match="pretrain into a new --out directory"):
        resumable(checkpoint)


def test_a_committed_run_record_without_weights_or_model_is_trained_again(tmp_path, capsys):
    """A fresh clone holds runs/NAME/checkpoint/state.json and curves.jsonl only: the command in the card reruns."""
    from speechpeft.backbones.pretrain.loop import resumable

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "state.json").write_text('{"step": 8000}')
    assert not resumable(run / "checkpoint")
    assert "finished at step 8000, without its weights or model" in capsys.readouterr().err


def test_a_checkpoint_swap_cut_between_its_renames_resumes_from_its_step(tmp_path):
    torch.manual_seed(0)
    model, seen = torch.nn.Linear(2, 1), []

    def losses(step: int) -> dict[str, torch.Tensor]:
        seen.append(step)
        return {"loss": model(torch.ones(4, 2)).pow(2).mean()}

    evaluate = lambda: {"loss": float(seen[-1])}  # noqa: E731
    linear = Recipe("linear", {"model": model}, losses, lambda step: 0.01, evaluate, "loss", lambda: None, {})
    train(linear, tmp_path, steps=2, eval_every=2, bf16=False)
    # What a crash between save_state's two renames leaves: checkpoint.old and a half-written checkpoint.tmp.
    (tmp_path / "checkpoint").replace(tmp_path / "checkpoint.old")
    (tmp_path / "checkpoint.tmp").mkdir()
    (tmp_path / "checkpoint.tmp" / "state.json").write_text('{"step": 4')

    seen.clear()
    train(linear, tmp_path, steps=4, eval_every=2, bf16=False)
    assert seen == [2, 3]  # resumed at step 2, not from 0
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint"]


def test_sigterm_saves_the_step_and_the_same_command_resumes_after_it(tmp_path, monkeypatch):
    import os
    import signal

    from speechpeft.backbones.pretrain import loop

    torch.manual_seed(0)
    model, seen = torch.nn.Linear(2, 1), []

    def losses(step: int) -> dict[str, torch.Tensor]:
        seen.append(step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step, as from `kill` or a session ending
        return {"loss": model(torch.ones(4, 2)).pow(2).mean()}

    linear = Recipe("linear", {"model": model}, losses, lambda step: 0.01, lambda: {"loss": 0.0}, "loss",
                    lambda: None, {})  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        train(linear, tmp_path, steps=10, eval_every=100, bf16=False)
    assert stopped.value.code == 128 + signal.SIGTERM and seen == [0, 1, 2]
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after training

    weights, seen[:] = model.weight.detach().clone(), []
    monkeypatch.setattr(loop, "CHECKPOINT_SECONDS", 0.0)  # and a checkpoint after every step between evaluations
    saved = []
    monkeypatch.setattr(loop, "save_state", lambda *args: saved.append(args[3]) or save_state(*args))
    train(linear, tmp_path, steps=5, eval_every=100, bf16=False)
    assert seen == [3, 4] and saved == [4, 5] and not torch.equal(model.weight, weights)


def test_a_second_signal_acts_as_usual_and_ignored_signals_stay_ignored():
    import os
    import signal

    from speechpeft.backbones.pretrain.loop import _stop_signals

    with _stop_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C twice: Python's own handler again
            os.kill(os.getpid(), signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _stop_signals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
        assert stop == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_spec_augment_masks_only_the_speech_and_is_seeded():
    options = recipe.WhisperPretrainOptions(corpus="c", out="o", freq_masks=2, time_masks=3)
    features = np.ones((4, 80, 600), dtype=np.float32)
    durations = np.array([2.0, 3.5, 5.0, 6.0])
    masked = recipe.spec_augment(features.copy(), durations, options, np.random.default_rng(3))
    assert np.array_equal(masked, recipe.spec_augment(features.copy(), durations, options, np.random.default_rng(3)))
    assert (masked[0, :, 200:] == 1).all()  # nothing past the 2 s of speech (the padding stays as it was)
    assert 0 < (masked == 0).mean() < 0.35
    plain = recipe.WhisperPretrainOptions(corpus="c", out="o")
    assert np.array_equal(recipe.spec_augment(features.copy(), durations, plain, np.random.default_rng(3)), features)


def test_smoothed_loss_without_smoothing_is_whisper_own_loss():
    tokenizer = train_whisper_tokenizer(["turn on the lights", "what time is it"], 300)
    model, ctc_head = recipe.build_model(recipe.WhisperPretrainOptions(corpus="c", out="o", **TINY), tokenizer)
    labels = torch.tensor([[5, 6, 7, -100], [8, 9, 10, 11]])
    batch = {"input_features": torch.randn(2, 80, 400), "labels": labels, "ctc_targets": torch.tensor([5, 6, 8]),
             "ctc_target_lengths": torch.tensor([2, 1]), "encoder_lengths": torch.tensor([150, 200])}  # fmt: skip
    model.eval()
    attention, _ = recipe.losses(model, ctc_head, batch)
    assert attention.item() == pytest.approx(model(input_features=batch["input_features"], labels=labels).loss.item())
    smoothed, _ = recipe.losses(model, ctc_head, batch, label_smoothing=0.1)
    assert smoothed.item() != pytest.approx(attention.item())


def test_init_from_must_be_an_exported_model(tmp_path):
    with pytest.raises(ValueError, match="point it at a finished run's model/ directory"):
        recipe.WhisperPretrainOptions(corpus="c", out="o", init_from=tmp_path)
