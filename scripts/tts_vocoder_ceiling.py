"""How much of tiny-speecht5's intelligibility gap is the vocoder's, and how much the acoustic model's?

    .venv/bin/python scripts/tts_vocoder_ceiling.py --corpus data/pretrain-corpus --sentences 40 \
        --asr speechpeft/tiny-whisper

For held-out sentences of the model's voice it prints the ASR listener's CER on three renderings:
the real recordings, Griffin-Lim run on the recordings' own mel spectrograms (what a perfect acoustic
model would give with this vocoder), and the model's own mels through Griffin-Lim.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jiwer
import torch

from speechpeft.backbones.loading import load_frozen
from speechpeft.backbones.pretrain.card_tts import hear, synthesise, voice_test_clips
from speechpeft.backbones.vocoder import griffin_lim


def renderings(tts: str, corpus: str, voice: str, sentences: int) -> tuple[list[str], dict[str, list]]:
    texts, recordings = voice_test_clips(Path(corpus), voice, sentences)
    extractor = load_frozen(tts, "tts", "fp32", device="cpu").processor.feature_extractor
    mels = [torch.from_numpy(extractor(audio_target=a, sampling_rate=16_000)["input_values"][0]) for a in recordings]
    return texts, {
        "recordings": recordings,
        "griffin-lim of the recordings' mels": [griffin_lim(mel, extractor) for mel in mels],
        "model mels + griffin-lim": synthesise(tts, texts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="data/pretrain-corpus", help="corpus with a test split")
    parser.add_argument("--tts", default="speechpeft/tiny-speecht5", help="TTS backbone (name or directory)")
    parser.add_argument("--voice", default="espeak-en-us", help="the voice the TTS model learned")
    parser.add_argument("--asr", nargs="+", default=["speechpeft/tiny-whisper"], help="listeners (ASR backbones)")
    parser.add_argument("--sentences", type=int, default=40, help="held-out sentences")
    args = parser.parse_args()
    if not (Path(args.corpus) / "dataset_dict.json").exists():
        parser.error(f"{args.corpus} is not a corpus: build one with `make pretrain-corpus`")
    texts, audio = renderings(args.tts, args.corpus, args.voice, args.sentences)
    for asr in args.asr:
        listener = load_frozen(asr, "asr", "fp32", device="cpu")
        for name, clips in audio.items():
            cer = round(jiwer.cer(texts, hear(listener, clips)), 3)
            print(json.dumps({"asr": asr, "audio": name, "sentences": len(texts), "cer": cer}))


if __name__ == "__main__":
    main()
