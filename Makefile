# speechpeft: `make leaderboard` (the main job) and `make test` set everything up on a fresh Debian machine, then do
# their job.
# Set-up is idempotent: a second run checks what is installed and does nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Speech engines and their voices, sox for resampling, FFmpeg's libraries for torchcodec (audio decoding
# in `datasets`), the English text the synthetic corpus speaks, and alsa-utils' recorded human voice (real
# speech for the Whisper tests).
APT_PACKAGES := ffmpeg sox espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts fortunes wamerican \
	alsa-utils chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CORPUS_UTTERANCES ?= 2000

.PHONY: setup system-packages leaderboard leaderboard-quick test lint format corpus pretrain-corpus whisper-corpus pretrain-whisper pretrain-speecht5 \
	tts-corpus pretrain-fastspeech2 pretrain-hifigan ship-backbones benchmark cards clean

setup: system-packages $(STAMP)

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,whisper,ray]"
	@touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: setup lint
	$(BIN)/python -m pytest

# The main job: synthesise the corpora if missing, train and score every task x method cell, write the report
# (runs/leaderboard/report.html, report.md, results.csv). Rerun to resume; LEADERBOARD_FLAGS adds flags
# (e.g. LEADERBOARD_FLAGS="--workers 2 --seeds 3").
leaderboard: setup
	HF_HUB_OFFLINE=1 $(BIN)/speechpeft leaderboard $(LEADERBOARD_FLAGS)

leaderboard-quick: setup
	HF_HUB_OFFLINE=1 $(BIN)/speechpeft leaderboard --quick $(LEADERBOARD_FLAGS)

corpus: setup
	$(BIN)/speechpeft data synth --utterances $(CORPUS_UTTERANCES) --out data/corpus

# Pretraining the built-in backbones (hours of CPU; each resumes from its checkpoint when rerun).
PRETRAIN_CORPUS := data/pretrain-corpus
pretrain-corpus: setup
	test -f $(PRETRAIN_CORPUS)/dataset_dict.json || $(BIN)/speechpeft data synth --hours 8 --seed 0 \
		--splits pretrain=0.88 adapt=0.04 test=0.08 --kinds sentence=0.75 command=0.2 keyword=0.05 \
		--out $(PRETRAIN_CORPUS)

# tiny-whisper in two stages: from scratch on the 8 h corpus, then on every training sentence of a 20 h corpus
# (a superset of the 8 h one: same seed, so the same first utterances) with SpecAugment and label smoothing.
WHISPER_CORPUS := data/pretrain-corpus-20h
WHISPER_STAGE2 := --steps 4000 --lr 6e-4 --warmup 200 --curriculum-steps 1 --freq-masks 2 --time-masks 2 \
	--label-smoothing 0.1
whisper-corpus: setup
	test -f $(WHISPER_CORPUS)/dataset_dict.json || $(BIN)/speechpeft data synth --hours 20 --seed 0 \
		--splits pretrain=0.88 adapt=0.04 test=0.08 --kinds sentence=0.75 command=0.2 keyword=0.05 \
		--out $(WHISPER_CORPUS)

pretrain-whisper: pretrain-corpus whisper-corpus
	test -f runs/tiny-whisper/model/config.json || $(BIN)/speechpeft backbones pretrain tiny-whisper \
		--corpus $(PRETRAIN_CORPUS) --out runs/tiny-whisper --steps 8000
	$(BIN)/speechpeft backbones pretrain tiny-whisper --corpus $(WHISPER_CORPUS) --out runs/tiny-whisper-2 \
		--init-from runs/tiny-whisper/model $(WHISPER_STAGE2)

pretrain-speecht5: pretrain-corpus
	$(BIN)/speechpeft backbones pretrain tiny-speecht5 --corpus $(PRETRAIN_CORPUS) --out runs/tiny-speecht5

# tiny-fastspeech2 (issue 17, in progress: not shipped, no vocoder yet): one voice, ~4 h, phoneme durations from
# libespeak-ng (backbones/pretrain/fastspeech2_plan.md). The test split's sentences are data/pretrain-corpus's.
TTS_CORPUS := data/tts-corpus-en-us
tts-corpus: setup
	test -f $(TTS_CORPUS)/dataset_dict.json || $(BIN)/speechpeft data synth --voices espeak-en-us --hours 4 \
		--seed 0 --splits pretrain=0.92 test=0.08 --kinds sentence=0.85 command=0.15 --out $(TTS_CORPUS)

pretrain-fastspeech2: tts-corpus
	$(BIN)/speechpeft backbones pretrain tiny-fastspeech2 --corpus $(TTS_CORPUS) --out runs/tiny-fastspeech2

# tiny-hifigan (issue 17, in progress): a trained vocoder for the TTS backbones, on the same voice's recordings;
# reconstruction losses only for now (no discriminator). A later step ships its model/ as the backbone's vocoder/.
pretrain-hifigan: tts-corpus
	$(BIN)/speechpeft backbones pretrain tiny-hifigan --corpus $(TTS_CORPUS) --out runs/tiny-hifigan

# Measure the finished runs on the test split, copy them into the package and write their model cards.
ship-backbones: pretrain-corpus whisper-corpus
	$(BIN)/speechpeft backbones ship tiny-whisper --run runs/tiny-whisper-2 --corpus $(WHISPER_CORPUS)
	$(BIN)/speechpeft backbones ship tiny-speecht5 --run runs/tiny-speecht5 --corpus $(PRETRAIN_CORPUS)

benchmark: setup
	$(BIN)/python benchmarks/synth_speed.py
	$(BIN)/python benchmarks/adapter_sizes.py
	test -f data/corpus/dataset_dict.json || $(MAKE) corpus
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/whisper_window.py

# A bounded soak of `speechpeft serve` on 127.0.0.1 (10 minutes at 1 request/s; SOAK_FLAGS adds flags, e.g.
# SOAK_FLAGS="--minutes 30 --rate 2"): the server's memory over time, latency and errors in
# benchmarks/results/soak.json; fails when a request goes wrong or the memory keeps growing.
.PHONY: soak
soak: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/soak.py $(SOAK_FLAGS)

# Model cards of the imported OpenAI Whisper checkpoints (backbones/cards/), measured on data/corpus's test split
# at Whisper's 30 s window and at a 6 s one (minutes each on 2 cores; run on an idle machine: RTFx is wall time).
cards: setup
	test -f data/corpus/dataset_dict.json || $(MAKE) corpus
	for backbone in openai/whisper-tiny.en openai/whisper-base; do for window in 30 6; do \
		HF_HUB_OFFLINE=1 $(BIN)/speechpeft backbones card $$backbone --corpus data/corpus --window-seconds $$window \
		|| exit 1; done; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
