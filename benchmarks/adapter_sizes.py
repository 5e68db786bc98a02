"""Trainable parameters and on-disk adapter size of every method, per backbone: the README's method table.

    .venv/bin/python benchmarks/adapter_sizes.py [--backbone speechpeft/tiny-whisper:asr ...]

Nothing trains: each method is attached to a fresh frozen copy of the backbone with its default options,
its adapter is saved the way `speechpeft train` saves it, and the files are measured. `whisper-small` is
built from openai/whisper-small's published shape with random weights, so the count needs no download.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import transformers

from speechpeft.adapters.base import AdapterOptions
from speechpeft.adapters.catalog import METHODS, UNSUPPORTED
from speechpeft.backbones import load_frozen
from speechpeft.backbones.pretrain.tokenizer import train_whisper_tokenizer

VARIANTS = {  # row label -> (method, options): the defaults of `speechpeft train`, plus the two alternatives
    "lora (r 8)": ("lora", AdapterOptions()),
    "adalora (r 12 -> 8)": ("adalora", AdapterOptions()),
    "prefix (16, decoder)": ("prefix", AdapterOptions()),
    "prefix (16, encoder+decoder)": ("prefix", AdapterOptions(prefix_encoder=True)),
    "bottleneck pfeiffer (/16)": ("bottleneck", AdapterOptions()),
    "bottleneck houlsby (/16)": ("bottleneck", AdapterOptions(bottleneck_style="houlsby")),
    "frozen": ("frozen", AdapterOptions()),
    "full": ("full", AdapterOptions()),
}
DEFAULT_BACKBONES = ("speechpeft/tiny-whisper:asr", "speechpeft/tiny-speecht5:tts", "whisper-small:asr")


def whisper_small(directory: Path) -> Path:
    """openai/whisper-small's architecture (242 M parameters) with random weights, saved locally."""
    config = transformers.WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=768, encoder_layers=12, decoder_layers=12,
        encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
        max_source_positions=1500, max_target_positions=448,
    )  # fmt: skip
    transformers.WhisperForConditionalGeneration(config).save_pretrained(directory)
    tokenizer = train_whisper_tokenizer(["a stand-in tokenizer: only the model's shape is measured"], 300)
    transformers.WhisperProcessor(transformers.WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(
        directory
    )
    return directory


def measure(source: str, task: str, label: str, method: str, options: AdapterOptions) -> dict:
    backbone = load_frozen(source, task, "fp32", device="cpu")
    total = backbone.num_parameters()  # before the method adds its own
    if (method, backbone.spec.family) in UNSUPPORTED:
        return {"variant": label, "trainable": None, "bytes": None, "total": total}
    model = METHODS.get(method).attach(backbone, options)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as out:
        METHODS.get(method).save(model, Path(out))
        size = sum(f.stat().st_size for f in Path(out).iterdir() if f.suffix in (".safetensors", ".json"))
    return {"variant": label, "trainable": trainable, "bytes": size, "total": total}


def table(name: str, rows: list[dict]) -> str:
    total = rows[0]["total"]
    lines = [f"**{name}** ({total / 1e6:.1f} M parameters)", "",
             "| method | trainable | % of backbone | adapter size |", "|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if r["trainable"] is None:
            lines.append(f"| {r['variant']} | unsupported | | |")
        else:
            share = 100 * r["trainable"] / total
            lines.append(f"| {r['variant']} | {r['trainable']:,} | {share:.2f} % | {r['bytes'] / 1024:,.0f} KiB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", action="append", help="NAME:TASK (default: the built-ins and whisper-small)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.backbone or DEFAULT_BACKBONES:
            name, task = spec.rsplit(":", 1)
            source = str(whisper_small(Path(scratch) / "small")) if name == "whisper-small" else name
            rows = [measure(source, task, label, *variant) for label, variant in VARIANTS.items()]
            print(table(name, rows), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
