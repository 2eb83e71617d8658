"""Settings: the VAE's architecture (saved in config.json) and a training run's arguments.

Both are dataclasses with one docstring line per field and checks in `__post_init__`, so that a
bad value is reported before any weights are loaded. All errors are collected and raised at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Pooling = Literal["mean", "max"]
Injection = Literal["memory", "prefix", "embedding", "both"]
BetaSchedule = Literal["constant", "linear", "cyclical"]

POOLINGS: tuple[str, ...] = ("mean", "max")
INJECTIONS: tuple[str, ...] = ("memory", "prefix", "embedding", "both")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cyclical")


DEFAULT_ENCODER = "minilm"
DEFAULT_DECODER = "smollm2"
DEFAULT_CAUSAL_INJECTION = "both"
NEW_LR_SCALE_CAUSAL = 10.0
FREE_BITS_CAUSAL = 3.0
INIT_LOGVAR_CAUSAL = -6.0
PREFIX_SLOTS_CAUSAL = 8  # measured (benchmarks/fidelity.py): lower Rec in fewer steps than 1 slot, at ~ the same speed
SAMPLE_NO_REPEAT_NGRAM = 4  # `sample`'s guard: z from the prior can loop ("the King's throne ... the King's throne")


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
    key/value slot per decoder self-attention layer), `embedding` (added to every input embedding) or
    `both` (prefix and embedding, as Optimus)."""
    memory_slots: int = 4
    """Number of vectors z becomes under `memory` injection."""
    prefix_slots: int = 1
    """Key/value slots per decoder layer under `prefix` / `both` injection."""
    bow: bool = False
    """A bag-of-words head on z (trained with TrainConfig.bow > 0)."""
    lora_rank: int = 0
    """LoRA adapters of this rank on the causal decoder's attention (0: none); its base weights stay fixed."""
    init_logvar: float = 0.0
    """Initial bias of the logvar head: below 0 starts with a small posterior variance, so early z
    carries mu's signal rather than unit noise."""
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
        if self.prefix_slots < 1:
            problems.append(f"prefix_slots must be >= 1, got {self.prefix_slots}")
        if self.lora_rank < 0:
            problems.append(f"lora rank must be >= 0, got {self.lora_rank}")
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
    model: str | None = None
    """An encoder-decoder backbone: `minilm` (embedded, as a BERT2BERT), a hub name (t5-small), a local
    directory; or a vaecli phase-1 directory of either family. Excludes `encoder` / `decoder`."""
    encoder: str | None = None
    """Sentence encoder of an encoder + causal-LM VAE: `minilm` (embedded), a hub name or a local directory."""
    decoder: str | None = None
    """Causal LM decoder: `smollm2` (embedded SmolLM2-135M), a hub name (gpt2, Qwen/Qwen2.5-0.5B) or a local
    directory. With neither `model` nor `encoder`/`decoder`, the default pair is minilm + smollm2."""
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
    freeze_decoder: bool | None = None
    """Phase 1: keep the backbone decoder's pretrained weights fixed (new parts still train); default: on
    for a causal LM (measured: it makes the decoder read z, see benchmarks/levers.py), off for an encoder-decoder."""
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
    free_bits: float | None = None
    """Free bits lambda in nats per latent dimension, on the batch-averaged KL (see README); default 0.5
    for an encoder-decoder, FREE_BITS_CAUSAL for a causal LM (room in z for a sentence's words)."""
    latent_dim: int = 32
    """Size of z."""
    pooling: Pooling = "mean"
    """Masked mean or max pooling of encoder states."""
    injection: Injection | None = None
    """How z reaches the decoder; default: `memory` for an encoder-decoder, DEFAULT_CAUSAL_INJECTION for a causal LM."""
    memory_slots: int = 4
    """Vectors z becomes under memory injection."""
    prefix_slots: int | None = None
    """Key/value slots per decoder layer under prefix / both injection; default 1 for an encoder-decoder,
    PREFIX_SLOTS_CAUSAL for a causal LM."""
    init_logvar: float | None = None
    """Initial bias of the logvar head (log of the starting posterior variance); default 0 for an
    encoder-decoder, INIT_LOGVAR_CAUSAL for a causal LM (z starts close to mu, not unit noise)."""
    word_dropout: float = 0.0
    """Training: fraction of the decoder's input tokens replaced by the pad token (Bowman et al. 2016),
    so the decoder must lean on z; targets stay intact."""
    bow: float = 0.0
    """Weight of a bag-of-words loss: z alone predicts the sentence's words (Zhao et al. 2017); 0 = off."""
    lora: int = 0
    """LoRA rank for the causal decoder (peft; 0 = off): only the adapters, encoder, heads and injection train."""
    calibrate: bool | None = None
    """Data-dependent init of the new layers on the first training batch (vaecli/calibrate.py); default:
    on for a causal LM, off for an encoder-decoder."""
    freeze_decoder_phase2: bool = False
    """Phase 2: keep the decoder's pretrained weights fixed too (only encoder, heads and injection train)."""
    batch_size: int = 32
    """Sentences per optimizer step, all processes together (the global batch, split across processes)."""
    lr: float = 1e-4
    """Peak learning rate (AdamW) of the pretrained weights."""
    new_lr_scale: float | None = None
    """The VAE's own layers (heads, injection) train at lr * this; default 1 for an encoder-decoder,
    NEW_LR_SCALE_CAUSAL for a causal LM (they start from scratch beside a pretrained decoder)."""
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
        if self.bow < 0:
            problems.append("--bow must be >= 0")
        if not 0.0 <= self.word_dropout < 1.0:
            problems.append("--word-dropout must be in [0, 1)")
        problems += self._resolve_backbone()
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

    @property
    def family(self) -> str:
        return "causal" if self.decoder else "seq2seq"

    def _resolve_backbone(self) -> list[str]:
        """Fill in the defaults that depend on the model family; return what is inconsistent."""
        problems = []
        if self.model is not None and (self.encoder is not None or self.decoder is not None):
            problems.append("--model names an encoder-decoder (or a vaecli directory); --encoder/--decoder an encoder and a causal LM: "
                            "give one or the other")
        if self.model is None:
            self.encoder = self.encoder or DEFAULT_ENCODER
            self.decoder = self.decoder or DEFAULT_DECODER
        causal = self.family == "causal"
        if self.injection is None:
            self.injection = DEFAULT_CAUSAL_INJECTION if causal else "memory"
        if self.new_lr_scale is None:
            self.new_lr_scale = NEW_LR_SCALE_CAUSAL if causal else 1.0
        if self.calibrate is None:
            self.calibrate = causal
        if self.freeze_decoder is None:
            self.freeze_decoder = causal
        if self.free_bits is None:
            self.free_bits = FREE_BITS_CAUSAL if causal else 0.5
        if self.init_logvar is None:
            self.init_logvar = INIT_LOGVAR_CAUSAL if causal else 0.0
        if self.prefix_slots is None:
            self.prefix_slots = PREFIX_SLOTS_CAUSAL if causal else 1
        if causal and self.injection == "memory":
            problems.append("--injection memory needs cross-attention, which a decoder-only LM lacks: use prefix, embedding or both")
        if self.new_lr_scale <= 0:
            problems.append("--new-lr-scale must be > 0")
        if self.lora and not causal:
            problems.append("--lora adapts a causal LM decoder (--decoder); for an encoder-decoder use --freeze-decoder")
        return problems

    def vae_config(self) -> VAEConfig:
        return VAEConfig(
            latent_dim=self.latent_dim,
            pooling=self.pooling,
            injection=self.injection or "memory",
            memory_slots=self.memory_slots,
            prefix_slots=self.prefix_slots,
            init_logvar=self.init_logvar,
            lora_rank=self.lora,
            bow=self.bow > 0,
            max_length=self.max_length,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
