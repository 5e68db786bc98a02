"""The usage section of a published adapter's model card: code that runs as written.

LoRA and AdaLoRA adapters are PEFT's own files, so for Whisper speech recognition and pooled audio
classification the card shows plain `transformers` + `peft` code (no speechpeft needed); a test runs the ASR
snippet against a local Hub. Every card also shows speechpeft's way: the CLI and `AdapterBank`.
"""

from __future__ import annotations

PEFT_METHODS = ("lora", "adalora")
SPEECHPEFT_INSTALL = "make setup  # in a clone of the speechpeft repository; then: source .venv/bin/activate"

_WHISPER_ASR = """\
```python
# pip install transformers peft soundfile
import soundfile as sf
import torch
from peft import PeftModel
from transformers import WhisperForConditionalGeneration, WhisperProcessor

processor = WhisperProcessor.from_pretrained("{backbone}")
model = WhisperForConditionalGeneration.from_pretrained("{backbone}")
model = PeftModel.from_pretrained(model, "{repo_id}").eval()

audio, rate = sf.read("speech.wav", dtype="float32")  # mono, 16 kHz, up to 30 s
features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
with torch.no_grad():
    # an explicit cap: a checkpoint whose generation config has no max_length would stop at 20 tokens
    ids = model.generate(input_features=features, max_new_tokens=440{prompt})  # 448 positions less the prompt
print(processor.batch_decode(ids, skip_special_tokens=True)[0])
```"""

_POOLED_CLASSIFIER = """\
```python
# pip install transformers peft soundfile
import soundfile as sf
import torch
from peft import PeftModel
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

labels = {labels!r}
extractor = AutoFeatureExtractor.from_pretrained("{backbone}")
model = AutoModelForAudioClassification.from_pretrained(
    "{backbone}", num_labels=len(labels), id2label=dict(enumerate(labels))
)
model = PeftModel.from_pretrained(model, "{repo_id}").eval()

audio, rate = sf.read("speech.wav", dtype="float32")  # mono, 16 kHz
inputs = extractor(audio, sampling_rate=rate, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
print(labels[int(logits.argmax(-1))])
```"""

_BANK_CALLS = {
    "asr": 'print(bank.transcribe(audio, "{repo_id}"))  # audio: 1-D float32 array at 16 kHz',
    "classify": 'print(bank.classify(audio, "{repo_id}"))  # audio: 1-D float32 array at 16 kHz',
    "tts": 'waveform = bank.synthesize("Hello there.", "{repo_id}")',
}


def usage(record: dict, repo_id: str, task_kind: str) -> str:
    """The card's usage section for the adapter `record` published as `repo_id`."""
    parts = ["## Usage"]
    plain = _plain_peft(record, repo_id, task_kind)
    if plain:
        parts += ["With plain `transformers` and `peft` (no speechpeft needed):", plain, "With speechpeft:"]
    parts += [_speechpeft(record, repo_id, task_kind)]
    return "\n\n".join(parts)


def _plain_peft(record: dict, repo_id: str, task_kind: str) -> str | None:
    if record["method"] not in PEFT_METHODS or record["family"] != "whisper":
        return None
    if task_kind == "asr":
        prompt = ', language="en", task="transcribe"' if not record["backbone"].endswith(".en") else ""
        return _WHISPER_ASR.format(backbone=record["backbone"], repo_id=repo_id, prompt=prompt)
    if task_kind == "classify" and record.get("options", {}).get("classifier", "pooled") == "pooled":
        return _POOLED_CLASSIFIER.format(backbone=record["backbone"], repo_id=repo_id, labels=record["labels"])
    return None


def _speechpeft(record: dict, repo_id: str, task_kind: str) -> str:
    call = _BANK_CALLS[task_kind].format(repo_id=repo_id)
    return "\n".join([
        "```bash", SPEECHPEFT_INSTALL,
        f"speechpeft pull {repo_id}  # into the local adapter store; checks the backbone",
        f"speechpeft eval --adapter {repo_id} --dataset YOUR_DATASET --split test", "```", "",
        "```python", "from speechpeft.adapters.bank import AdapterBank", "",
        f"bank = AdapterBank()  # hosts many adapters on one copy of {record['backbone']}",
        f'bank.load("{repo_id}")  # pulls it from the Hub when it is not in the local store', call, "```",
    ])  # fmt: skip
