"""Runaway decoding under a short Whisper window, caught and decoded again at the full window.

With a window much shorter than the 30 s it was trained on, Whisper sometimes never stops on a short clip:
it repeats the word it heard ("yes yes yes ..."). Two signs give it away, and a clip showing either is decoded
again with the checkpoint's own window (`SpeechRecognition.predict`):

- more tokens than the audio can hold: `token_cap(seconds)` allows 8 text tokens per second of audio (fast
  English speech is about 3 words, 4 BPE tokens, per second) and at least 12, and decoding stops there;
  every decode stops at its clip's cap, at any window (a model that never stops would otherwise run to the
  decoder's 448 positions: minutes of CPU for one clip, and its WER counts insertions of a transcript that was
  garbage by the cap anyway);
- a repeated n-gram: the same 1- to 4-token sequence `REPEATS` times in a row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

TOKENS_PER_SECOND = 8
MIN_TOKENS = 12
REPEATS = 3
LONGEST_NGRAM = 4


def token_cap(seconds: float) -> int:
    """The most text tokens a clip of `seconds` of audio may decode to under a short window."""
    return max(MIN_TOKENS, math.ceil(seconds * TOKENS_PER_SECOND))


def repeats_ngram(tokens: Sequence[int], repeats: int = REPEATS, longest: int = LONGEST_NGRAM) -> bool:
    """Whether some n-gram (n = 1..`longest`) occurs `repeats` times back to back in `tokens`."""
    for n in range(1, longest + 1):
        for start in range(len(tokens) - n * repeats + 1):
            gram = tokens[start : start + n]
            if all(tokens[start + k * n : start + (k + 1) * n] == gram for k in range(1, repeats)):
                return True
    return False


def ran_away(tokens: Sequence[int], cap: int) -> bool:
    """Whether a decoded clip (its text token ids, padding removed) hit its cap or repeats itself."""
    return len(tokens) >= cap or repeats_ngram(list(tokens))
