"""A small byte-level BPE tokenizer for a Whisper-architecture model, trained on the corpus text.

It keeps Whisper's special tokens and English-only prompt (`<|startoftranscript|><|notimestamps|>`), so
code written for openai/whisper-*.en runs unchanged on the built-in backbone. As in Whisper's own
vocabulary, the special tokens come after the text tokens and `<|notimestamps|>` is the last id:
`WhisperForConditionalGeneration.generate` treats every id above `<|notimestamps|>` as a timestamp,
so a text token placed there derails decoding (it did, with the specials first).
"""

from __future__ import annotations

from collections.abc import Iterable

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ENDOFTEXT = "<|endoftext|>"
STARTOFTRANSCRIPT = "<|startoftranscript|>"
NOTIMESTAMPS = "<|notimestamps|>"
WHISPER_SPECIAL_TOKENS = (
    ENDOFTEXT, STARTOFTRANSCRIPT, "<|en|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", NOTIMESTAMPS,
)  # fmt: skip


def train_whisper_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> transformers.WhisperTokenizerFast:
    """BPE over all 256 bytes (every string stays encodable) plus merges that make common words short.

    `vocab_size` counts the special tokens, which take the last ids.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(WHISPER_SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    bpe.train_from_iterator(texts, trainer)
    bpe.add_special_tokens(list(WHISPER_SPECIAL_TOKENS))
    return transformers.WhisperTokenizerFast(
        tokenizer_object=bpe, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT, pad_token=ENDOFTEXT
    )
