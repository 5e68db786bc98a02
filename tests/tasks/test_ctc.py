"""CTC speech recognition on checkpoints laid out like the real wav2vec2 ones.

facebook/wav2vec2-base-960h spells its vocabulary "A".."Z" (`do_lower_case` false) and its extractor returns no
attention mask; facebook/wav2vec2-base has no vocabulary at all.
"""

import logging
from types import SimpleNamespace

import pytest
import torch
import transformers

from speechpeft.backbones import load_frozen
from speechpeft.errors import MissingInputError
from speechpeft.evaluation import evaluate_task
from speechpeft.tasks.catalog import TASKS
from tests.audio import speech_rows
from tests.tiny_backbones import save_tiny_ssl_encoder

TEXT = "turn on the lights"


@pytest.fixture(scope="module")
def upper_case_task(tmp_path_factory):
    directory = save_tiny_ssl_encoder(tmp_path_factory.mktemp("w2v2-960h"), upper_case=True, attention_mask=False)
    return TASKS.get("asr").build(load_frozen(directory, "asr", "fp32", device="cpu"), None)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    clips = [(TEXT, "espeak-en-us"), (TEXT, "flite-slt"), (TEXT, "espeak-en-gb")]
    return speech_rows(clips, tmp_path_factory.mktemp("speech"))


def test_lower_case_transcripts_become_upper_case_targets(upper_case_task, caplog):
    tokenizer = upper_case_task.tokenizer
    ids = upper_case_task._target_ids(TEXT)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == "TURN ON THE LIGHTS"
    with caplog.at_level(logging.WARNING):
        assert tokenizer.unk_token_id in upper_case_task._target_ids("turn on 2 lights")
    assert "characters 2 are not in the CTC vocabulary" in caplog.text


def test_no_attention_mask_where_the_extractor_returns_none(upper_case_task, rows):
    batch = upper_case_task.collate([rows[i] for i in range(len(rows))])
    assert "attention_mask" not in batch and batch["input_values"].shape[0] == len(rows)


class SpellingModel(torch.nn.Module):
    """Stands in for a CTC model that has learned its targets: its best path spells `ids`, one blank after each."""

    def __init__(self, ids: list[int], frames: int, vocabulary: int) -> None:
        super().__init__()
        path = torch.zeros(frames, dtype=torch.long)  # id 0 is the blank (<pad>)
        path[: 2 * len(ids) : 2] = torch.tensor(ids)
        self.logits = torch.nn.functional.one_hot(path, vocabulary).float()

    def forward(self, input_values: torch.Tensor, **kwargs) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logits.expand(len(input_values), -1, -1))


def test_decoded_upper_case_words_score_against_lower_case_references(upper_case_task, rows):
    shortest = min(len(row["audio"].get_all_samples().data[0]) for row in rows)
    frames = int(upper_case_task.backbone.model._get_feat_extract_output_lengths(shortest))
    vocabulary = upper_case_task.backbone.model.config.vocab_size
    model = SpellingModel(upper_case_task._target_ids(TEXT), frames, vocabulary)
    metrics, items = evaluate_task(upper_case_task, model, rows, batch_size=2)
    assert [item["hypothesis"] for item in items] == ["TURN ON THE LIGHTS"] * len(rows)
    assert metrics["wer"] == 0.0 and metrics["cer"] == 0.0


def test_asr_on_an_encoder_without_vocabulary_fails_before_loading_weights(tmp_path, monkeypatch):
    directory = save_tiny_ssl_encoder(tmp_path / "w2v2-base")
    for name in ("vocab.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json"):
        (directory / name).unlink(missing_ok=True)
    assert load_frozen(directory, "classify", "fp32", device="cpu", labels=["a", "b"])  # needs no vocabulary
    with monkeypatch.context() as patch:
        patch.setattr(transformers.Wav2Vec2ForCTC, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
        with pytest.raises(MissingInputError, match=r"vocab\.json") as error:
            load_frozen(directory, "asr", "fp32", device="cpu")
    assert "Use a CTC fine-tuned checkpoint" in str(error.value)
    (directory / "vocab.json").write_text('{"<pad>": 0, "<unk>": 1, "|": 2, "a": 3}')  # the fix the message names
    assert load_frozen(directory, "asr", "fp32", device="cpu").processor.tokenizer.get_vocab()["a"] == 3
