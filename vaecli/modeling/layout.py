"""A model directory's layout: every file name, once, and the one test of whether a folder is a vaecli model.

A model directory is the unit of exchange (`vae finetune --out DIR`, every other command's `--model`):

    config.json            the backbone's config and the VAE's settings (vaecli.config.VAEConfig)
    model.safetensors      every weight
    tokenizer files        the encoder's; decoder/ holds the decoder's own, when it has one
    prior.safetensors      the aggregate posterior, fitted after training (what `vae sample` draws from)
    training.json          the run's resolved settings, seed and library versions
    metrics.jsonl          one JSON record per logged step and per validation
    phase1/                the model at the end of phase 1 (a run of both phases)
    checkpoint/            what --resume needs: the model files, optimizer.safetensors, trainer_state.json
    .lock                  held (flock) by the run writing into the directory
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DECODER_DIR = "decoder"
TRAINING_NAME = "training.json"
METRICS_NAME = "metrics.jsonl"
PHASE1_DIR = "phase1"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_OLD = "checkpoint.old"
CHECKPOINT_TMP = "checkpoint.tmp"
PRIOR_NAME = "prior.safetensors"
OPTIMIZER_NAME = "optimizer.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
LOCK_NAME = ".lock"


def json_has(path: Path, key: str, inner: str | None = None) -> bool:
    """Whether the JSON object in path (its first line for .jsonl) has key (and key has inner); never raises."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.readline() if path.suffix == ".jsonl" else f.read(1 << 20)
        data = json.loads(text)
        return isinstance(data, dict) and key in data and (inner is None or inner in data[key])
    except (OSError, ValueError, TypeError, RecursionError):
        return False


def is_model_dir(path: str | Path) -> bool:
    """Whether `path` holds a vaecli model: a config.json with a "vae" part (a user's own config.json is not ours)."""
    return json_has(Path(path) / CONFIG_NAME, "vae")
