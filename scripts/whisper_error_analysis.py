"""Where a tiny-whisper run's held-out errors come from: greedy vs beam search, and unseen vs seen words.

    .venv/bin/python scripts/whisper_error_analysis.py runs/tiny-whisper --beams 1 4

Reads the run's cached evaluation features (pretrain voices) and training transcripts, decodes with the
exported best model, and prints WER/CER per beam width and the word error rate of reference words that
never occur in the training text against those that do.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jiwer
import numpy as np
import torch
import transformers

from speechpeft.backbones.pretrain.features import load_features

BATCH = 32


def decode(model, tokenizer, features: np.ndarray, beams: int) -> list[str]:
    texts = []
    with torch.no_grad():
        for start in range(0, len(features), BATCH):
            chunk = torch.from_numpy(np.asarray(features[start : start + BATCH], dtype=np.float32))
            ids = model.generate(input_features=chunk, num_beams=beams)
            texts += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return texts


def unseen_word_errors(references: list[str], hypotheses: list[str], seen: set[str]) -> dict[str, float]:
    """Error rate of reference words by whether the training text contains them (from jiwer's alignment)."""
    counts = {True: [0, 0], False: [0, 0]}  # seen -> [words, wrong]
    result = jiwer.process_words(references, hypotheses)
    for chunks, words in zip(result.alignments, result.references, strict=True):
        for chunk in chunks:
            for word in words[chunk.ref_start_idx : chunk.ref_end_idx]:
                counts[word in seen][0] += 1
                counts[word in seen][1] += chunk.type != "equal"
    return {"unseen_share": counts[False][0] / sum(c[0] for c in counts.values()),
            "unseen_word_error": counts[False][1] / max(1, counts[False][0]),
            "seen_word_error": counts[True][1] / max(1, counts[True][0])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="pretraining run directory (with model/ and data/)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4], help="beam widths to compare")
    parser.add_argument("--model", type=Path, help="decode with this exported model instead of RUN/model "
                        "(e.g. an earlier stage, on this run's utterances)")  # fmt: skip
    args = parser.parse_args()
    model_dir = args.model or args.run / "model"
    model = transformers.WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = transformers.WhisperTokenizerFast.from_pretrained(model_dir)
    test = load_features(args.run / "data" / "test-pretrain.npy")
    training_texts = set(json.loads((args.run / "data" / "train.json").read_text())["texts"])
    seen = {w for t in training_texts for w in t.split()}
    for beams in args.beams:
        hypotheses = decode(model.eval(), tokenizer, test.features, beams)
        errors = unseen_word_errors(test.texts, hypotheses, seen)
        scores = {"model": str(model_dir), "beams": beams, "utterances": len(test),
                  "distinct_training_texts": len(training_texts), "wer": jiwer.wer(test.texts, hypotheses),
                  "cer": jiwer.cer(test.texts, hypotheses), **errors}  # fmt: skip
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}))


if __name__ == "__main__":
    main()
