"""Is bf16 faster than fp32 on this CPU? Matmul throughput, and one tiny-whisper training step in each.

    .venv/bin/python benchmarks/precision_speed.py

The pretraining recipes' `--precision auto` follows what this prints: bf16 pays only with native bf16
matmul (AVX512-BF16 or AMX); without it, bf16 is emulated and slower than fp32.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from speechpeft.backbones.pretrain import whisper as recipe
from speechpeft.backbones.pretrain.options import WhisperPretrainOptions, cpu_has_native_bf16
from speechpeft.backbones.pretrain.tokenizer import train_whisper_tokenizer

BATCH = 24
TEXT = "the quick brown fox jumps over the lazy dog"


def matmul_gflops(dtype: torch.dtype, m: int = 7200, k: int = 256, n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * m * k * n * repeats / (time.perf_counter() - started) / 1e9


def whisper_step_seconds(bf16: bool, steps: int = 3) -> float:
    options = WhisperPretrainOptions(corpus=Path("."), out=Path("."), precision="bf16" if bf16 else "fp32")
    tokenizer = train_whisper_tokenizer([TEXT] * 20, options.vocab_size)
    model, ctc_head = recipe.build_model(options, tokenizer)
    frames = options.chunk_seconds * recipe.FRAMES_PER_SECOND
    ids = tokenizer(TEXT).input_ids[1:]
    ctc = tokenizer(TEXT, add_special_tokens=False).input_ids
    batch = {"input_features": torch.randn(BATCH, recipe.MEL_BINS, frames), "labels": torch.tensor([ids] * BATCH),
             "ctc_targets": torch.tensor(ctc * BATCH), "ctc_target_lengths": torch.tensor([len(ctc)] * BATCH),
             "encoder_lengths": torch.full((BATCH,), frames // 2)}  # fmt: skip
    timings = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            attention, ctc_loss = recipe.losses(model, ctc_head, batch)
        (attention + ctc_loss).backward()
        timings.append(time.perf_counter() - started)
    return min(timings[1:])


def main() -> None:
    print(f"threads {torch.get_num_threads()}, native bf16 matmul: {cpu_has_native_bf16()}")
    for dtype in (torch.float32, torch.bfloat16):
        print(f"matmul {str(dtype).split('.')[-1]}: {matmul_gflops(dtype):.0f} GFLOP/s")
    for bf16 in (False, True):
        print(
            f"tiny-whisper step (batch {BATCH}, 6 s) {'bf16' if bf16 else 'fp32'}: {whisper_step_seconds(bf16):.2f} s"
        )


if __name__ == "__main__":
    main()
