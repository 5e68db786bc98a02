"""Move tiny-whisper's special tokens after its text tokens, in a run directory, without changing the model.

    .venv/bin/python scripts/relabel_tiny_whisper_vocab.py runs/tiny-whisper

The first 2,750+ steps of the committed tiny-whisper run used a tokenizer with Whisper's special
tokens at ids 0-8. `WhisperForConditionalGeneration.generate` treats every id above
`<|notimestamps|>` as a timestamp, so greedy decoding derailed after a few words although teacher-forced
predictions were right. Relabelling token ids is exact: permute the rows of every tensor indexed by token
id (embeddings = tied output layer, the CTC head, their Adam moments) and the tokenizer the same way,
and the network computes the same function. This script does that to the checkpoint, the best export
and the cached tokenizer; `tokenizer.train_whisper_tokenizer` now builds this layout from the start.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

from speechpeft.backbones.pretrain import tokenizer as tok
from speechpeft.backbones.pretrain.whisper import WhisperPretrainOptions, build_model

OLD_SPECIALS = len(tok.WHISPER_SPECIAL_TOKENS)  # ids 0-8 in the old layout


def new_order(vocab_size: int) -> torch.Tensor:
    """Old id for each new id: text tokens first (old 9..), then the specials (old 0..8)."""
    return torch.cat([torch.arange(OLD_SPECIALS, vocab_size), torch.arange(OLD_SPECIALS)])


def relabel_rows(tensor: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows indexed by token id; a CTC head has one more row (the blank), which stays last."""
    head = tensor[: len(order)][order]
    return torch.cat([head, tensor[len(order) :]])


def relabel_checkpoint(run: Path, order: torch.Tensor, tokenizer) -> None:
    state_dir = run / "checkpoint"
    meta = json.loads((state_dir / "state.json").read_text())
    options = WhisperPretrainOptions(**{**meta["options"], "corpus": Path(meta["options"]["corpus"]),
                                        "out": run})  # fmt: skip
    model, ctc_head = build_model(options, tokenizer)
    names = [f"model.{n}" for n, _ in model.named_parameters()] + [
        f"ctc_head.{n}" for n, _ in ctc_head.named_parameters()
    ]
    by_token = {"model.model.decoder.embed_tokens.weight", "model.proj_out.weight", "ctc_head.weight", "ctc_head.bias"}
    tensors = load_file(str(state_dir / "state.safetensors"))
    for key in list(tensors):
        name = names[int(key.split(".")[1])] if key.startswith("optimizer.") and "exp_avg" in key else key
        if name in by_token:
            tensors[key] = relabel_rows(tensors[key], order).contiguous()
    save_file(tensors, str(state_dir / "state.safetensors"))
    meta["best"] = None  # earlier scores came from the derailed decoding: let the next evaluation pick afresh
    (state_dir / "state.json").write_text(json.dumps(meta, indent=1))


def main(run: Path) -> None:
    old = transformers.WhisperTokenizerFast.from_pretrained(run / "data" / "tokenizer")
    if old.convert_tokens_to_ids(tok.ENDOFTEXT) != 0:
        sys.exit(f"{run}: the tokenizer already has its special tokens last")
    texts = json.loads((run / "data" / "train.json").read_text())["texts"]
    new = tok.train_whisper_tokenizer(texts, len(old))
    order = new_order(len(old))
    assert all(new.convert_ids_to_tokens(i) == old.convert_ids_to_tokens(int(o)) for i, o in enumerate(order))
    relabel_checkpoint(run, order, new)
    shutil.rmtree(run / "data" / "tokenizer")
    new.save_pretrained(run / "data" / "tokenizer")
    shutil.rmtree(run / "model", ignore_errors=True)  # the old best export: the next evaluation writes a new one
    print(f"relabelled {run}: special tokens now at ids {len(old) - OLD_SPECIALS}..{len(old) - 1}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
