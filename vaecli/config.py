"""Settings: the VAE's architecture (saved in config.json) and a training run's arguments.

Both are dataclasses with one docstring line per field and checks in `__post_init__`, so that a
bad value is reported before any weights are loaded. All errors are collected and raised at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Pooling = Literal["mean", "max"]
Injection = Literal["memory", "prefix", "embedding"]
BetaSchedule = Literal["constant", "linear", "cyclical"]

POOLINGS: tuple[str, ...] = ("mean", "max")
INJECTIONS: tuple[str, ...] = ("memory", "prefix", "embedding")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cyclical")


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists all of them on one line."""


def _check(problems: list[str]) -> None:
    if problems:
        raise ConfigError("; ".join(problems))


@dataclass
class VAEConfig:
    """The VAE around a backbone. Saved as the `vae` part of a model directory's config.json."""

    latent_dim: int = 32
    """Size of z."""
    pooling: Pooling = "mean"
    """How encoder states become one vector: mean or max over real (non-padding) tokens."""
    injection: Injection = "memory"
    """How z reaches the decoder: `memory` (k vectors read by cross-attention), `prefix` (one extra
    key/value slot per decoder self-attention layer) or `embedding` (added to every input embedding)."""
    memory_slots: int = 4
    """Number of vectors z becomes under `memory` injection."""
    max_length: int = 64
    """Longest input in subword tokens, special tokens included; longer lines are truncated."""
    frozen_exempt: list[str] = field(default_factory=list)
    """Substrings of decoder parameter names that train even with --freeze-decoder (parts of the
    backbone that were freshly initialised at warm-start, e.g. BERT2BERT cross-attention)."""

    def __post_init__(self) -> None:
        problems = []
        if self.latent_dim < 1:
            problems.append(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.injection not in INJECTIONS:
            problems.append(f"injection must be one of {', '.join(INJECTIONS)}, got {self.injection!r}")
        if self.memory_slots < 1:
            problems.append(f"memory_slots must be >= 1, got {self.memory_slots}")
        if self.max_length < 4:
            problems.append(f"max_length must be >= 4, got {self.max_length}")
        _check(problems)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainConfig:
    """One `vae finetune` run. Saved, resolved, in training.json."""

    train_file: str = ""
    """Training sentences, one per line."""
    valid_file: str | None = None
    """Validation sentences; when absent, validation uses a held-out slice of the training file."""
    model: str = "minilm"
    """Backbone: `minilm` (embedded), a hub name (t5-small), or a local directory (a HF model or a
    vaecli phase-1 directory)."""
    out: str = "vae-model"
    """Output model directory."""
    phase: Literal["both", "1", "2"] = "both"
    """Which phases to run."""
    phase1_steps: int = 1000
    """Optimizer steps of phase 1 (encoder warm-up, beta = 0)."""
    phase2_steps: int = 2000
    """Optimizer steps of phase 2 (full VAE)."""
    phase1_epochs: float | None = None
    """Alternative to phase1_steps: epochs over the training file."""
    phase2_epochs: float | None = None
    """Alternative to phase2_steps: epochs over the training file."""
    freeze_decoder: bool = False
    """Phase 1: keep the backbone decoder's pretrained weights fixed (new parts still train)."""
    phase1_denoise: float = 0.0
    """Phase 1: fraction of encoder input tokens deleted at random."""
    denoise: float = 0.15
    """Phase 2: fraction of encoder input tokens deleted at random (targets stay clean)."""
    beta_schedule: BetaSchedule = "cyclical"
    """Phase 2 KL weight schedule over the real number of phase-2 steps."""
    beta_max: float = 1.0
    """Largest KL weight."""
    beta_cycles: int = 4
    """Cycles of the cyclical schedule."""
    beta_ramp: float = 0.5
    """Fraction of each cycle (or of phase 2, for linear) spent rising from 0 to beta_max."""
    free_bits: float = 0.5
    """Free bits lambda in nats per latent dimension, on the batch-averaged KL (see README)."""
    latent_dim: int = 32
    """Size of z."""
    pooling: Pooling = "mean"
    """Masked mean or max pooling of encoder states."""
    injection: Injection = "memory"
    """How z reaches the decoder."""
    memory_slots: int = 4
    """Vectors z becomes under memory injection."""
    batch_size: int = 32
    """Sentences per optimizer step, all processes together (the global batch, split across processes)."""
    lr: float = 1e-4
    """Peak learning rate (AdamW)."""
    warmup: float = 0.05
    """Fraction of each phase's steps spent warming the learning rate up linearly, then linear decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    clip: float = 1.0
    """Gradient-norm clipping; 0 disables."""
    max_length: int = 64
    """Longest input in subword tokens."""
    seed: int = 42
    """Seeds model init, data order, z samples and token deletion."""
    bf16: Literal["auto", "yes", "no"] = "auto"
    """bf16 autocast: auto = on where measured faster (CPU with native bf16, CUDA with bf16)."""
    valid_every: int = 200
    """Validate every N steps (and at the end of each phase)."""
    valid_size: int = 1000
    """At most this many validation sentences are used."""
    save_every: int = 200
    """Checkpoint every N steps (and at the end of each phase)."""
    patience: int = 0
    """Phase 2 early stopping after this many validations without a better validation Rec; 0 disables."""
    threads: int = 0
    """torch threads; 0 = torch's default."""

    def __post_init__(self) -> None:
        problems = []
        if self.phase not in ("both", "1", "2"):
            problems.append(f"--phase must be both, 1 or 2, got {self.phase!r}")
        for name in ("phase1_steps", "phase2_steps"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0")
        for name in ("phase1_denoise", "denoise"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"--{name.replace('_', '-')} must be in [0, 1)")
        if self.beta_schedule not in SCHEDULES:
            problems.append(f"--beta-schedule must be one of {', '.join(SCHEDULES)}")
        if self.beta_max < 0:
            problems.append("--beta-max must be >= 0")
        if self.beta_cycles < 1:
            problems.append("--beta-cycles must be >= 1")
        if not 0.0 < self.beta_ramp <= 1.0:
            problems.append("--beta-ramp must be in (0, 1]")
        if self.free_bits < 0:
            problems.append("--free-bits must be >= 0")
        if self.batch_size < 1:
            problems.append("--batch-size must be >= 1")
        if self.lr <= 0:
            problems.append("--lr must be > 0")
        if not 0.0 <= self.warmup < 1.0:
            problems.append("--warmup must be in [0, 1)")
        for name in ("valid_every", "save_every"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1")
        if self.bf16 not in ("auto", "yes", "no"):
            problems.append("--bf16 must be auto, yes or no")
        try:
            self.vae_config()
        except ConfigError as e:
            problems.append(str(e))
        _check(problems)

    def vae_config(self) -> VAEConfig:
        return VAEConfig(
            latent_dim=self.latent_dim,
            pooling=self.pooling,
            injection=self.injection,
            memory_slots=self.memory_slots,
            max_length=self.max_length,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
