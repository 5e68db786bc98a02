"""Each adapter method on a tiny random Whisper: what trains, how much of it, and what it saves."""

import json

import pytest
import torch
from safetensors.torch import load_file

from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.catalog import METHODS
from speechpeft.backbones import load_frozen
from speechpeft.registry import UnknownNameError
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions
from speechpeft.train import train
from speechpeft.train_options import TrainOptions

METHODS_OPTIONS = AdapterOptions(rank=4, steps=10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("methods") / "corpus"
    build_corpus(SynthOptions(out=out, utterances=60, seed=5, splits=("pretrain=0.1", "adapt=0.8", "test=0.1"),
                              kinds=("sentence=0.2", "command=0.6", "keyword=0.2")), progress=False)  # fmt: skip
    return out


def options(tmp_path, backbone, corpus, **overrides) -> TrainOptions:
    values = {"task": "asr", "out": tmp_path / "adapter", "backbone": str(backbone), "dataset": str(corpus),
              "steps": 4, "eval_every": 4, "batch_size": 4, "lr": 5e-3, **overrides}  # fmt: skip
    return TrainOptions(**values)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: adalora, bottleneck, frozen, full, lora, prefix"):
        METHODS.get("ia3")


def test_lora_parameter_count_follows_the_formula(tiny_backbone_dirs):
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    targets = [m for name, m in backbone.model.named_modules() if name.rsplit(".", 1)[-1] in ("q_proj", "v_proj")]
    model = METHODS.get("lora").attach(backbone, METHODS_OPTIONS)
    rank = METHODS_OPTIONS.rank
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        rank * (m.in_features + m.out_features) for m in targets
    )


def test_adalora_parameter_count_follows_the_formula(tiny_backbone_dirs):
    """Each targeted matrix starts at init_r: A (init_r x in), B (out x init_r) and the singular values E."""
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    targets = [m for name, m in backbone.model.named_modules() if name.rsplit(".", 1)[-1] in ("q_proj", "v_proj")]
    model = METHODS.get("adalora").attach(backbone, METHODS_OPTIONS)
    init_r = max(METHODS_OPTIONS.rank + 1, METHODS_OPTIONS.rank * 3 // 2)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        init_r * (m.in_features + m.out_features + 1) for m in targets
    )


@pytest.mark.slow
def test_adalora_reallocates_ranks_while_training(tiny_backbone_dirs, corpus, tmp_path):
    record = train(options(tmp_path, tiny_backbone_dirs["whisper"], corpus, method="adalora", steps=24,
                           eval_every=24, rank=2), progress=False)  # fmt: skip
    assert record["steps_run"] == 24
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    ranks = list(config["rank_pattern"].values())  # per matrix: which of its init_r singular values survive
    assert config["init_r"] == 3 and all(len(mask) == 3 for mask in ranks)
    kept = [sum(mask) for mask in ranks]
    assert sum(kept) == config["target_r"] * len(ranks)  # the budget shrank to the target average rank ...
    assert len(set(kept)) > 1  # ... unevenly: importance moved rank between matrices
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any(k.endswith("lora_E") for k in weights)


def orthogonality(model: torch.nn.Module) -> torch.Tensor:
    """AdaLoRA's regulariser by its definition (Zhang et al. 2023, eq. 4): the mean over P (lora_A) and Q (lora_B)
    of ||P P^T - I||_F and ||Q^T Q - I||_F."""
    norms = []
    for name, param in model.named_parameters():
        if name.endswith(("lora_A.default", "lora_B.default")):
            gram = param @ param.T if "lora_A" in name else param.T @ param
            norms.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram)), "fro"))
    return torch.stack(norms).mean()


def test_adalora_trains_on_its_regularised_objective(tiny_backbone_dirs, corpus, tmp_path):
    """The loss the loop minimises is the task loss + orth_reg_weight x the orthogonality term (PEFT adds it in
    AdaLoraModel.forward, which a plain PeftModel skips); in eval mode it is the task loss alone."""
    from speechpeft.tasks.base import model_inputs
    from speechpeft.train import prepare_run, train_mode

    run = prepare_run(options(tmp_path, tiny_backbone_dirs["whisper"], corpus, method="adalora", steps=10))
    batch = run.task.collate(list(run.train_rows.select(range(3))))
    losses = {}
    for mode, call in (("objective", lambda: run.task.loss(run.model, batch)),
                       ("task", lambda: run.model.get_base_model()(**model_inputs(batch, torch.device("cpu"))).loss),
                       ("eval", lambda: run.task.loss(run.model.eval(), batch))):  # fmt: skip
        train_mode(run.model)
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same LoRA dropout masks
            losses[mode] = call().detach()
    weight = run.model.peft_config["default"].orth_reg_weight
    assert weight == 0.5 and orthogonality(run.model) > 1.0  # random P, Q: far from orthogonal
    torch.testing.assert_close(losses["objective"], losses["task"] + weight * orthogonality(run.model).detach())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.testing.assert_close(losses["eval"], run.task.loss(run.model, batch).detach())  # no dropout in eval


@pytest.mark.slow
def test_adalora_keeps_no_adapter_before_its_rank_budget_is_final(tiny_backbone_dirs, corpus, tmp_path, capsys):
    """With early stopping after one stale validation, the kept adapter must still be a pruned one: validations
    before step total_step - tfinal (20 - 4) are skipped, said on the terminal and listed in the record."""
    out = options(tmp_path, tiny_backbone_dirs["whisper"], corpus, method="adalora", steps=20, eval_every=2,
                  patience=1, rank=2)  # fmt: skip
    record = train(out, progress=False)
    assert record["selection"]["skipped_steps"] == list(range(2, 16, 2))
    assert "AdaLoRA fixes its ranks (average r 2, from init_r 3) at step 16" in record["selection"]["reason"]
    assert "not validated, no adapter kept until then" in capsys.readouterr().out
    assert record["best_step"] >= 16
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    kept = [sum(mask) for mask in config["rank_pattern"].values()]
    assert sum(kept) == config["target_r"] * len(kept)  # the budget reached: an average rank of 2, not init_r 3


def test_adalora_refuses_a_run_too_short_to_reach_its_budget(tiny_backbone_dirs):
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    with pytest.raises(ValueError, match="AdaLoRA needs --steps 2 or more to reach its rank budget"):
        METHODS.get("adalora").attach(backbone, AdapterOptions(rank=2, steps=1))


@pytest.mark.slow
def test_frozen_is_zero_shot_without_a_head_and_a_probe_with_one(tiny_backbone_dirs, corpus, tmp_path):
    zero_shot = train(options(tmp_path, tiny_backbone_dirs["whisper"], corpus, method="frozen"), progress=False)
    assert zero_shot["trainable_parameters"] == 0 and zero_shot["steps_run"] == 0 and "wer" in zero_shot["validation"]
    probe = train(options(tmp_path / "probe", tiny_backbone_dirs["whisper"], corpus, task="keyword", method="frozen"),
                  progress=False)  # fmt: skip
    weights = load_file(str(tmp_path / "probe" / "adapter" / "adapter_model.safetensors"))
    assert {k.split(".")[0] for k in weights} == {"projector", "classifier"}
    assert sum(w.numel() for w in weights.values()) == probe["trainable_parameters"]


@pytest.mark.slow
def test_full_fine_tuning_trains_every_weight(tiny_backbone_dirs, corpus, tmp_path):
    record = train(options(tmp_path, tiny_backbone_dirs["whisper"], corpus, method="full"), progress=False)
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    assert record["trainable_parameters"] == backbone.num_parameters()
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    before = dict(backbone.model.named_parameters())
    assert any(not torch.equal(weights[name], before[name]) for name in weights)


def test_full_fine_tuning_refuses_int8(tiny_backbone_dirs):
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "int8", device="cpu")
    with pytest.raises(ValueError, match="cannot update int8 weights: use --precision fp32 or bf16"):
        METHODS.get("full").attach(backbone, METHODS_OPTIONS)


@pytest.mark.parametrize("method", ["lora", "prefix", "bottleneck"])
def test_gradient_checkpointing_gives_the_same_gradients(method, tiny_backbone_dirs, corpus, tmp_path):
    """Recomputing activations must not change the maths: same loss, same gradients (dropout RNG is replayed)."""
    from speechpeft.train import prepare_run, train_mode

    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same adapter initialisation
        run = prepare_run(options(tmp_path / str(checkpointing), tiny_backbone_dirs["whisper"], corpus,
                                  method=method, gradient_checkpointing=checkpointing))  # fmt: skip
        batch = run.task.collate(list(run.train_rows.select(range(3))))
        train_mode(run.model)
        torch.manual_seed(0)
        loss = run.task.loss(run.model, batch)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in run.model.parameters() if p.requires_grad]))
    assert any(getattr(m, "gradient_checkpointing", False) for m in run.model.modules())  # it really was on
    torch.testing.assert_close(results[0][0], results[1][0])
    for plain, recomputed in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(plain, recomputed)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"bottleneck_style": "lstm"}, "choose pfeiffer or houlsby"),
        ({"prefix_length": 0}, r"prefix_length \(--prefix-length\) = 0: use a whole number"),
    ],
)
def test_method_options_are_checked_before_any_work(override, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TrainOptions(task="asr", out=tmp_path / "a", **override)


@pytest.mark.parametrize(
    ("method", "task"),
    [("prefix", "asr"), ("bottleneck", "asr"), ("lora", "keyword"), ("frozen", "keyword"), ("full", "asr")],
)
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_every_trainable_is_fp32_on_reduced_precision_backbones(
    method, task, precision, tiny_backbone_dirs, corpus, tmp_path
):
    """bf16 weights, or bitsandbytes int8 linears: new modules, task heads and `full`'s weights train in fp32
    (AdamW's master weights) under bf16 autocast, with gradients and a finite loss."""
    from speechpeft.train import prepare_run, train_mode

    if method == "full" and precision == "int8":
        pytest.skip("full fine-tuning refuses int8 (tested above)")
    run = prepare_run(options(tmp_path, tiny_backbone_dirs["whisper"], corpus, method=method, task=task,
                              precision=precision))  # fmt: skip
    batch = run.task.collate(list(run.train_rows.select(range(3))))
    train_mode(run.model)
    with run.task.backbone.autocast():
        loss = run.task.loss(run.model, batch)
    loss.backward()
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and trainable and all(p.grad is not None for p in trainable)
    assert all(p.dtype == torch.float32 for p in trainable)  # AdamW on fp32 weights, whatever the backbone's
    assert sum(p.grad.abs().sum() for p in trainable) > 0  # (a zero-initialised up-projection zeroes down's)
