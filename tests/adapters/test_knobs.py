"""The PEFT knobs of `speechpeft train` (--lora-alpha, --lora-dropout, --target-modules, --modules-to-save): each
reaches the modules PEFT builds, is refused clearly when it cannot apply, is recorded, and `adapters show` prints
it with the other methods' settings."""

import argparse
import json
from pathlib import Path

import pytest
import torch
from peft.tuners.adalora import AdaLoraLayer
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper

from speechpeft.adapters.catalog import METHODS
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.cli import main
from speechpeft.errors import InputError
from speechpeft.options import add_options, parse_options
from speechpeft.train_options import TrainOptions
from tests.test_train import build_small_corpus

NOWHERE = Path("/nonexistent/knobs/adapter")  # a destination never written: options are only built
LINEARS = ["fc1", "fc2", "k_proj", "out_proj", "proj_out", "q_proj", "v_proj"]  # tiny Whisper's, as the error lists


def flags(*argv: str, task: str = "asr") -> TrainOptions:
    """`speechpeft train`'s options from its flags, as the CLI parses them."""
    parser = argparse.ArgumentParser()
    add_options(parser, TrainOptions)
    return parse_options(parser, parser.parse_args(["--task", task, "--out", str(NOWHERE), *argv]), TrainOptions)


def attach(backbone_dir, *argv: str, task: str = "asr", kind: str = "asr"):
    options = flags(*argv, task=task)
    backbone = load_frozen(backbone_dir, kind, "fp32", device="cpu")
    return METHODS.get(options.method).attach(backbone, options.adapter_options())


def lora_layers(model: torch.nn.Module, kind: type = LoraLayer) -> dict[str, torch.nn.Module]:
    return {name.removeprefix("base_model.model."): m for name, m in model.named_modules() if isinstance(m, kind)}


def test_lora_alpha_sets_the_scaling_peft_applies(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--lora-alpha", "32", "--rank", "4")
    assert model.peft_config["default"].lora_alpha == 32
    layers = lora_layers(model)
    assert len(layers) == 12  # q and v of 2 encoder self-attentions, 2 decoder self- and 2 cross-attentions
    assert {layer.scaling["default"] for layer in layers.values()} == {32 / 4}


def test_lora_alpha_defaults_to_16_whatever_the_rank(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--rank", "64")
    assert {layer.scaling["default"] for layer in lora_layers(model).values()} == {16 / 64}


def test_adalora_scales_by_alpha_over_its_initial_rank(tiny_backbone_dirs):
    """AdaLoRA multiplies by `scaling` (alpha) and divides by `ranknum`, its initial rank 1.5 x --rank."""
    model = attach(tiny_backbone_dirs["whisper"], "--method", "adalora", "--lora-alpha", "12", "--rank", "4",
                   "--lora-dropout", "0.3", "--steps", "100")  # fmt: skip
    layers = lora_layers(model, AdaLoraLayer)
    assert layers and {layer.scaling["default"] for layer in layers.values()} == {12}
    assert {layer.ranknum["default"].item() for layer in layers.values()} == {6}
    assert {layer.lora_dropout["default"].p for layer in layers.values()} == {0.3}


@pytest.mark.parametrize(("argv", "p"), [(("--lora-dropout", "0.2"), 0.2), ((), 0.05)])
def test_lora_dropout_reaches_the_dropout_modules(tiny_backbone_dirs, argv, p):
    model = attach(tiny_backbone_dirs["whisper"], *argv)
    dropouts = [layer.lora_dropout["default"] for layer in lora_layers(model).values()]
    assert dropouts and all(isinstance(d, torch.nn.Dropout) and d.p == p for d in dropouts)


def test_lora_dropout_zero_is_no_dropout(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--lora-dropout", "0")
    assert all(isinstance(layer.lora_dropout["default"], torch.nn.Identity) for layer in lora_layers(model).values())


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_lora_dropout_outside_0_to_1_is_refused_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit):
        flags("--lora-dropout", value)
    assert "adapter option dropout (--lora-dropout)" in capsys.readouterr().err


def test_bad_lora_alpha_is_refused_naming_the_flag():
    with pytest.raises(InputError, match="--lora-alpha"):
        TrainOptions(task="asr", out=NOWHERE, lora_alpha=0)


def test_target_modules_adapt_only_the_named_layers(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--target-modules", "fc1", "encoder_attn.k_proj")
    assert sorted(lora_layers(model)) == [
        "model.decoder.layers.0.encoder_attn.k_proj", "model.decoder.layers.0.fc1",
        "model.decoder.layers.1.encoder_attn.k_proj", "model.decoder.layers.1.fc1",
        "model.encoder.layers.0.fc1", "model.encoder.layers.1.fc1",
    ]  # fmt: skip
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trained and all(".fc1.lora_" in n or ".encoder_attn.k_proj.lora_" in n for n in trained)


@pytest.mark.parametrize(("name", "why"), [("qproj", "has no such module"), ("self_attn", "a WhisperAttention")])
def test_target_modules_the_backbone_lacks_are_refused_listing_its_linear_layers(tiny_backbone_dirs, name, why):
    with pytest.raises(InputError, match=f"--target-modules {name}") as refused:
        attach(tiny_backbone_dirs["whisper"], "--target-modules", "q_proj", name)
    assert why in str(refused.value) and f"are called {', '.join(LINEARS)} (or give all-linear)" in str(refused.value)


def test_all_linear_adapts_every_linear_layer_but_the_output_layer(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--target-modules", "all-linear", "--rank", "2")
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu").model
    linear = {name for name, m in backbone.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(lora_layers(model)) == linear - {"proj_out"} and len(linear) == 33


def test_all_linear_leaves_the_task_head_to_train_whole(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--target-modules", "all-linear", task="intent", kind="classify")
    assert {name.split(".")[0] for name in lora_layers(model)} == {"encoder"}
    heads = {n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    assert heads == {"base_model.model.projector", "base_model.model.classifier"}


def test_all_linear_goes_alone():
    with pytest.raises(InputError, match="all-linear already takes every linear layer"):
        TrainOptions(task="asr", out=NOWHERE, target_modules=("all-linear", "fc1"))


def test_modules_to_save_adds_to_the_task_head(tiny_backbone_dirs):
    model = attach(tiny_backbone_dirs["whisper"], "--modules-to-save", "encoder.layer_norm", task="intent",
                   kind="classify")  # fmt: skip
    assert model.peft_config["default"].modules_to_save == ["projector", "classifier", "encoder.layer_norm"]
    saved = {n for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)}
    assert saved == {f"base_model.model.{name}" for name in ("projector", "classifier", "encoder.layer_norm")}
    trained = {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert any(n.startswith("base_model.model.encoder.layer_norm.modules_to_save") for n in trained)


def test_modules_to_save_the_backbone_lacks_are_refused(tiny_backbone_dirs):
    with pytest.raises(InputError, match="--modules-to-save layernorm: no module") as refused:
        attach(tiny_backbone_dirs["whisper"], "--modules-to-save", "layernorm")
    assert "(its top-level modules: model, proj_out;" in str(refused.value)


@pytest.mark.parametrize(
    "argv",
    [("--modules-to-save", "q_proj"),  # one of the default targets: PEFT would train it whole, silently
     ("--modules-to-save", "q_proj", "v_proj"),  # every default target
     ("--target-modules", "fc1", "q_proj", "--modules-to-save", "encoder.layers.0")],  # a layer holding targets
)  # fmt: skip
def test_modules_to_save_that_take_in_a_target_are_refused(tiny_backbone_dirs, argv):
    with pytest.raises(InputError, match=r"which LoRA adapts .*adapted or trained in full, not both"):
        attach(tiny_backbone_dirs["whisper"], *argv)
    with pytest.raises(InputError, match="which LoRA adapts"):
        attach(tiny_backbone_dirs["whisper"], "--method", "adalora", *argv)


@pytest.mark.parametrize("method", ["prefix", "bottleneck", "frozen", "full"])
def test_peft_knobs_are_refused_for_methods_that_do_not_read_them(method):
    with pytest.raises(InputError, match=f"--lora-alpha and --target-modules: --method {method} does not use them "
                                         r"\(adalora, lora do\)"):  # fmt: skip
        TrainOptions(task="asr", out=NOWHERE, method=method, lora_alpha=32, target_modules=("fc1",))


# -- recorded, shown, loaded back -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_small_corpus(tmp_path_factory.mktemp("knobs") / "corpus", utterances=24)


def show(name: str, store, capsys) -> dict:
    assert main(["adapters", "show", name, "--store", str(store)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_trained_knobs_are_recorded_shown_and_loaded_back(corpus, tiny_backbone_dirs, tmp_path, capsys):
    backbone = str(tiny_backbone_dirs["whisper"])
    assert main(["train", "--task", "asr", "--name", "asr/knobs", "--store", str(tmp_path), "--backbone", backbone,
                 "--dataset", str(corpus), "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--quiet",
                 "--rank", "4", "--lora-alpha", "32", "--lora-dropout", "0.2", "--target-modules", "q_proj", "fc1",
                 "--modules-to-save", "encoder.layer_norm"]) == 0  # fmt: skip
    capsys.readouterr()
    shown = show("asr/knobs", tmp_path, capsys)
    assert shown["settings"] == {
        "method": "lora", "rank": 4, "lora_alpha": 32, "lora_dropout": 0.2, "scaling": 8.0,
        "target_modules": ["fc1", "q_proj"], "modules_to_save": ["encoder.layer_norm"], "adapted_layers": 10,
    }  # fmt: skip
    assert {k: shown["options"][k] for k in ("rank", "lora_alpha", "lora_dropout", "target_modules")} == {
        "rank": 4, "lora_alpha": 32, "lora_dropout": 0.2, "target_modules": ["q_proj", "fc1"]}  # fmt: skip

    loaded = METHODS.get("lora").load(load_frozen(backbone, "asr", "fp32", device="cpu"), tmp_path / "asr" / "knobs")
    assert len(lora_layers(loaded)) == 10 and {m.scaling["default"] for m in lora_layers(loaded).values()} == {8.0}
    norm = loaded.base_model.model.model.encoder.layer_norm
    assert isinstance(norm, ModulesToSaveWrapper)
    assert not torch.equal(norm.modules_to_save["default"].weight, norm.original_module.weight)  # trained, reloaded
    assert main(["eval", "--adapter", "asr/knobs", "--store", str(tmp_path), "--dataset", str(corpus),
                 "--split", "test", "--out", str(tmp_path / "eval")]) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("method", "argv", "settings"),
    [
        ("adalora", ("--rank", "4", "--lora-alpha", "8", "--steps", "100", "--target-modules", "all-linear"),
         {"rank": 4, "init_rank": 6, "lora_alpha": 8, "scaling": round(8 / 6, 6), "lora_dropout": 0.05, "tinit": 10,
          "tfinal": 20, "delta_t": 2, "total_step": 100, "target_modules": ["fc1", "fc2", "k_proj", "out_proj",
          "q_proj", "v_proj"], "adapted_layers": 32}),
        ("prefix", ("--prefix-length", "3", "--prefix-encoder"), {"prefix_length": 3, "prefix_encoder": True}),
        ("bottleneck", ("--bottleneck-style", "houlsby", "--reduction-factor", "4"),
         {"bottleneck_style": "houlsby", "reduction_factor": 4}),
    ],
)  # fmt: skip
def test_adapters_show_prints_each_methods_settings(tiny_backbone_dirs, tmp_path, capsys, method, argv, settings):
    options = flags("--method", method, *argv)
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    save_random_adapters(backbone, method, [tmp_path / "asr" / method], task="asr",
                         options=options.adapter_options())  # fmt: skip
    shown = show(f"asr/{method}", tmp_path, capsys)["settings"]
    if method == "adalora":
        assert shown.pop("ranks_kept")["matrices"] == 32
    assert shown == {"method": method, **settings}


def test_adapters_show_reads_what_an_older_record_lacks(tmp_path, capsys):
    """An adapter trained before the knobs were flags: its PEFT config still says what they were."""
    directory = tmp_path / "asr" / "old"
    directory.mkdir(parents=True)
    (directory / "speechpeft.json").write_text(json.dumps({"task": "asr", "method": "lora", "options": {"rank": 8}}))
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "use_rslora": True,
              "target_modules": ["v_proj", "q_proj"], "modules_to_save": None}  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(config))
    assert show("asr/old", tmp_path, capsys)["settings"] == {
        "method": "lora", "rank": 8, "lora_alpha": 16, "lora_dropout": 0.05, "scaling": round(16 / 8**0.5, 6),
        "target_modules": ["q_proj", "v_proj"],
    }  # fmt: skip
