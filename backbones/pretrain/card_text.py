"""The Markdown model card of a shipped tiny-whisper, written from measured facts only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from speechpeft.backbones.inspect import count_safetensors_parameters
from speechpeft.backbones.pretrain.options import WhisperPretrainOptions
from speechpeft.options import flag


def whisper_card(directory: Path, facts: dict) -> str:
    config = json.loads((directory / "config.json").read_text())
    training, measured = facts["training"], facts["measured"]
    parameters = count_safetensors_parameters(directory)
    lines = [
        *_front_matter("automatic-speech-recognition", "whisper", "speechpeft/tiny-whisper"),
        f"The `WhisperForConditionalGeneration` architecture with {parameters / 1e6:.1f} M parameters "
        f"(d_model {config['d_model']}, {config['encoder_layers']}+{config['decoder_layers']} layers, "
        f"{config['encoder_attention_heads']} heads, FFN {config['encoder_ffn_dim']}, {config['vocab_size']} "
        f"byte-level BPE tokens trained on the corpus text), trained from scratch by speechpeft on synthetic "
        f"English speech. Input: 80 log-mel bins, a {measured['window_seconds']:.0f} s window. Prompt: English-only "
        "Whisper (`<|startoftranscript|><|notimestamps|>`). Weights stored in float16.", "",
        "## Training", "",
        *_whisper_stages(training, facts["machine"]),
        "Reproduce:", "", "```bash", *_reproduce_whisper(training, facts), "```", "",
        "## Results", "",
        f"On the corpus's *test* split: sentences and commands never seen in training (keywords are the same ten "
        f"words), clips up to the {measured['window_seconds']:.0f} s window "
        f"({measured['left_out_longer_than_window']} longer clips left out). *pretrain voices* are the voices of "
        "the training data; *adaptation voices* (flite, festival, a held-out espeak-ng accent) were never heard "
        "in training: the gap adapters are for.", "",
        "| voices | kind | utterances | WER | CER |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for key, score in measured["scores"].items():
        group, kind = key.split("/")
        label = "pretrain voices" if group == "pretrain" else "adaptation voices"
        lines.append(f"| {label} | {kind} | {score['utterances']} | {score['wer']:.1%} | {score['cer']:.1%} |")
    lines += ["", f"RTFx, audio seconds / compute seconds (greedy decoding, batch 32, fp32; higher is faster): "
              f"{measured['rtfx']}.", "", "Examples:", ""]  # fmt: skip
    lines += [f"- {e['voice']}: `{e['reference']}` → `{e['hypothesis']}`" for e in measured["examples"]]
    return "\n".join(lines) + "\n"


def _stage_chain(training: dict) -> list[dict]:
    """The training stages, first to last (a stage that continued another names it in "continues")."""
    return [*_stage_chain(training["continues"]), training] if "continues" in training else [training]


def _whisper_stages(training: dict, machine: str) -> list[str]:
    lines = []
    for number, stage in enumerate(_stage_chain(training), 1):
        options, corpus = stage["options"], stage.get("corpus")
        start = "continuing the stage before" if options.get("init_from") else "from scratch"
        extras = []
        if options.get("freq_masks") or options.get("time_masks"):
            extras.append(f"SpecAugment ({options['freq_masks']} band and {options['time_masks']} time masks a clip)")
        if options.get("label_smoothing"):
            extras.append(f"label smoothing {options['label_smoothing']}")
        lines += [
            f"**Stage {number}**, {start}: {stage['steps']} steps of batch {options['batch_size']} in "
            f"{stage['train_hours']} h on {machine}; AdamW, peak learning rate {options['lr']}, loss = "
            f"{1 - options['ctc_weight']:.1f} x attention + {options['ctc_weight']:.1f} x CTC (an encoder CTC head, "
            f"not shipped), {_curriculum(options)}, precision {options['precision']}"
            f"{''.join(', ' + e for e in extras)}. Best step by WER on held-out sentences: {stage['best']['step']}.",
            "",
        ]  # fmt: skip
        if corpus:
            voices = corpus["splits"]["pretrain"]["voices"]
            lines += [f"Data: the *pretrain* split of `{options['corpus']}` ({_hours(corpus, 'pretrain')} h, "
                      f"{len(voices)} espeak-ng voices: {', '.join(voices)}).", ""]  # fmt: skip
    return lines


def _curriculum(options: dict) -> str:
    if options["curriculum_steps"] <= 1:
        return f"clips up to {options['chunk_seconds']} s from the first step"
    return (f"longest clip growing from {options['curriculum_start_seconds']} s to {options['chunk_seconds']} s "
            f"over {options['curriculum_steps']} steps")  # fmt: skip


def _reproduce_whisper(training: dict, facts: dict) -> list[str]:
    defaults = {f.name: f.default for f in dataclasses.fields(WhisperPretrainOptions)}
    stages = _stage_chain(training)
    commands = [_synth_command(s["corpus"]["options"], s["options"]["corpus"]) for s in stages if "corpus" in s]
    for stage in stages:
        options = stage["options"]
        flags = [f"{flag(k)} {v}" for k, v in options.items()
                 if k not in ("corpus", "out", "threads", "precision") and v != defaults.get(k)]  # fmt: skip
        commands.append(f"speechpeft backbones pretrain tiny-whisper --corpus {options['corpus']} "
                        f"--out {options['out']} {' '.join(flags)}".rstrip())  # fmt: skip
    run = stages[-1]["options"]["out"]
    ship = f"speechpeft backbones ship tiny-whisper --run {run} --corpus {facts['corpus_path']}"
    return [*dict.fromkeys(commands), ship]


def speecht5_card(directory: Path, facts: dict) -> str:
    config = json.loads((directory / "config.json").read_text())
    training, measured, corpus = facts["training"], facts["measured"], facts["corpus"]
    options = training["options"]
    parameters = count_safetensors_parameters(directory)
    lines = [
        *_front_matter("text-to-speech", "speecht5", "speechpeft/tiny-speecht5"),
        f"The `SpeechT5ForTextToSpeech` architecture with {parameters / 1e6:.1f} M parameters (hidden "
        f"{config['hidden_size']}, {config['encoder_layers']}+{config['decoder_layers']} layers, reduction factor "
        f"{config['reduction_factor']}, character input), trained from scratch by speechpeft on one synthetic voice "
        f"({options['voice']}). Output: 80-bin log10 mel at 16 kHz; vocoder: Griffin-Lim "
        "(`speechpeft.backbones.vocoder`), no download. Speaker embedding: 16 zeros. Weights stored in float16.", "",
        "## Training", "",
        f"{training['steps']} steps of batch {options['batch_size']} in {training['train_hours']} h on "
        f"{facts['machine']}; AdamW, peak learning rate {options['lr']}, SpeechT5's L1 + stop-token + guided "
        f"attention loss, precision {options['precision']}. Best step by held-out mel L1: {training['best']['step']}.",
        "", "Reproduce:", "", "```bash", _synth_command(corpus["options"]),
        "speechpeft backbones pretrain tiny-speecht5 --corpus data/pretrain-corpus --out runs/tiny-speecht5 "
        f"--steps {options['steps']} --voice {options['voice']} --seed {options['seed']}",
        "speechpeft backbones ship tiny-speecht5 --run runs/tiny-speecht5 --corpus data/pretrain-corpus", "```", "",
        "## Results", "",
        f"{measured['sentences']} held-out sentences and commands from the corpus's *test* split, spoken by "
        f"this model and by the real engine voice. Intelligibility: the character error rate of "
        f"{measured['asr']}'s transcript.", "",
        "| audio | CER | DNSMOS OVRL | SIG | BAK | P.808 |", "|---|---|---|---|---|---|",
        _tts_row("tiny-speecht5 + Griffin-Lim", measured["cer"], measured["dnsmos"]),
        _tts_row(f"{measured['voice']} recordings", measured["cer_of_reference_recordings"],
                 measured["dnsmos_of_reference_recordings"]),
        "", f"Generated length / recorded length: {measured['length_ratio']} on average.", "",
        "Examples (text → heard):", "",
    ]  # fmt: skip
    lines += [f"- `{e['text']}` → `{e['heard'][:200]}`" for e in measured["examples"]]
    return "\n".join(lines) + "\n"


def _front_matter(pipeline_tag: str, family: str, title: str) -> list[str]:
    return ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "language: [en]",
            f"tags: [speechpeft, {family}]", "---", "", f"# {title}", ""]  # fmt: skip


def _tts_row(label: str, cer: float, mos: dict) -> str:
    return (f"| {label} | {cer:.1%} | {mos['ovrl_mos']:.2f} | {mos['sig_mos']:.2f} | {mos['bak_mos']:.2f} | "
            f"{mos['p808_mos']:.2f} |")  # fmt: skip


def _hours(corpus: dict, split: str) -> float:
    return corpus["splits"][split]["hours"]


def _synth_command(options: dict, out: str = "data/pretrain-corpus") -> str:
    size = f"--utterances {options['utterances']}" if options["utterances"] else f"--hours {options['hours']}"
    return (f"speechpeft data synth {size} --seed {options['seed']} --splits {' '.join(options['splits'])} "
            f"--kinds {' '.join(options['kinds'])} --out {out}")  # fmt: skip
