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

import datasets
import jiwer
import torch

from speechpeft.backbones.loading import load_frozen
from speechpeft.backbones.pretrain.card import transcribe
from speechpeft.backbones.pretrain.card_tts import synthesise
from speechpeft.backbones.vocoder import griffin_lim


def renderings(tts: str, corpus: str, voice: str, sentences: int) -> tuple[list[str], dict[str, list]]:
    test = datasets.load_from_disk(corpus)["test"]
    rows = test.filter(lambda v, k: v == voice and k != "keyword", input_columns=["voice", "kind"])
    rows = rows.select(range(min(sentences, len(rows))))
    recordings = [clip.get_all_samples().data[0].numpy() for clip in rows["audio"]]
    extractor = load_frozen(tts, "tts", "fp32", device="cpu").processor.feature_extractor
    mels = [torch.from_numpy(extractor(audio_target=a, sampling_rate=16_000)["input_values"][0]) for a in recordings]
    return list(rows["text"]), {
        "recordings": recordings,
        "griffin-lim of the recordings' mels": [griffin_lim(mel, extractor) for mel in mels],
        "model mels + griffin-lim": synthesise(tts, list(rows["text"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="data/pretrain-corpus", help="corpus with a test split")
    parser.add_argument("--tts", default="speechpeft/tiny-speecht5", help="TTS backbone (name or directory)")
    parser.add_argument("--voice", default="espeak-en-us", help="the voice the TTS model learned")
    parser.add_argument("--asr", nargs="+", default=["speechpeft/tiny-whisper"], help="listeners (ASR backbones)")
    parser.add_argument("--sentences", type=int, default=40, help="held-out sentences")
    args = parser.parse_args()
    texts, audio = renderings(args.tts, args.corpus, args.voice, args.sentences)
    for asr in args.asr:
        listener = load_frozen(asr, "asr", "fp32", device="cpu")
        for name, clips in audio.items():
            heard = [transcribe(listener, [clip])[0][0] for clip in clips]
            cer = round(jiwer.cer(texts, heard), 3)
            print(json.dumps({"asr": asr, "audio": name, "sentences": len(texts), "cer": cer}))


if __name__ == "__main__":
    main()
