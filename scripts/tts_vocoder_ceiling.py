"""How much of a TTS backbone's intelligibility and quality gap is the vocoder's, and how much the acoustic model's?

    .venv/bin/python scripts/tts_vocoder_ceiling.py --corpus data/tts-corpus-en-us --sentences 40
    .venv/bin/python scripts/tts_vocoder_ceiling.py --corpus data/pretrain-corpus --tts speechpeft/tiny-speecht5

For held-out sentences of one voice it prints, per rendering, the listener's CER (whisper-tiny.en unless told
another, pinned normaliser) and DNSMOS (OVRL, SIG, BAK, P.808): the real recordings; Griffin-Lim run on the
recordings' own mel spectrograms (what a perfect acoustic model would give with that vocoder; `--iterations`
lists the Griffin-Lim iteration counts to try); with `--vocoder DIR`, a trained HiFi-GAN on the same mels; and
with `--tts`, the SpeechT5 model's own mels through Griffin-Lim.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers

from speechpeft.backbones.pretrain.card_tts import dnsmos, synthesise, voice_test_clips
from speechpeft.backbones.vocoder import griffin_lim
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.tasks.tts import LISTENER, Listener


def renderings(args: argparse.Namespace) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    texts, recordings = voice_test_clips(Path(args.corpus), args.voice, args.sentences)
    extractor = transformers.SpeechT5FeatureExtractor()  # the mel every built-in TTS backbone learns
    mels = [torch.from_numpy(extractor(audio_target=a, sampling_rate=16_000)["input_values"][0]) for a in recordings]
    audio = {"recordings": recordings}
    for iterations in args.iterations:
        audio[f"griffin-lim ({iterations} it.) of the recordings' mels"] = [
            griffin_lim(mel, extractor, iterations=iterations) for mel in mels
        ]
    if args.vocoder:
        from speechpeft.backbones.vocoder import hifigan, load_hifigan

        model = load_hifigan(args.vocoder)
        audio[f"hifi-gan {args.vocoder} of the recordings' mels"] = [hifigan(mel, model) for mel in mels]
    if args.tts:
        audio[f"{args.tts} mels + griffin-lim"] = synthesise(args.tts, texts)
    return texts, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="data/tts-corpus-en-us", help="corpus with a test split")
    parser.add_argument("--voice", default="espeak-en-us", help="the voice whose held-out sentences are rendered")
    parser.add_argument("--sentences", type=int, default=40, help="held-out sentences and commands, at most")
    parser.add_argument("--asr", default=LISTENER, help="the listener (a Whisper backbone)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[32], help="Griffin-Lim iteration counts")
    parser.add_argument("--vocoder", help="a trained HiFi-GAN directory (speechpeft backbones pretrain tiny-hifigan)")
    parser.add_argument("--tts", help="a SpeechT5 TTS backbone whose own mels to render too")
    args = parser.parse_args()
    if not (Path(args.corpus) / "dataset_dict.json").exists():
        parser.error(f"{args.corpus} is not a corpus: build one with `make tts-corpus`")
    texts, audio = renderings(args)
    listener, cer = Listener(args.asr), load_metric("cer")
    for name, clips in audio.items():
        heard = listener.hear(clips)
        score = round(cer.compute(predictions=heard, references=texts)["cer"], 4) if heard is not None else None
        print(json.dumps({"audio": name, "voice": args.voice, "sentences": len(texts), "asr": args.asr,
                          "cer": score, **dnsmos(clips)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
