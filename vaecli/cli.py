"""The `vae` command: parse, call the library, print. The only module that knows Typer and rich.

Data goes to stdout, everything else (progress, counts, warnings, errors) to stderr. Errors are
one line and a non-zero exit code (see README, "Exit codes"); tracebacks are for bugs only.
"""

from __future__ import annotations

import errno
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from vaecli.config import SAMPLE_NO_REPEAT_NGRAM

app = typer.Typer(
    help="Turn a pretrained encoder-decoder Transformer into a text VAE, and use its latent space from a shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130
DEFAULT_MODEL = "vae-model"
ENCODE_CHUNK = 1024  # lines `vae encode` reads, encodes and writes at a time

FLAG = ""  # metavar of on/off flags: rich help would otherwise show them taking a <bool> value
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model directory \\[default: $VAE_MODEL, else ./vae-model].")]
BeamOpt = Annotated[int, typer.Option(min=1, help="Beam width (1 = greedy).")]
SampleOpt = Annotated[bool, typer.Option("--sample", metavar=FLAG, help="Sample tokens (nucleus) instead of greedy/beam decoding.")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus mass when sampling.")]
TempOpt = Annotated[float, typer.Option(min=0.0, help="Softmax temperature when sampling.")]
NoRepeatOpt = Annotated[int, typer.Option("--no-repeat-ngram", min=0, help="Never repeat a sequence of this many tokens within a sentence (0 = off).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed (makes sampling reproducible).")]


def err(message: str) -> None:
    """One message on stderr, printed as given (no markup, no emoji codes)."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(message, markup=False)


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and load reports; we report on stderr ourselves."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class NoModel(Exception):
    """No model directory where a command looks for one (exit 1), found before any heavy import."""


def _raised(error: Exception, module: str, name: str) -> bool:
    """Whether `error` is `module.name`, without importing `module` (and torch with it): an error class
    of a module that was never imported cannot have been raised."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(error, cls)


@contextmanager
def handled() -> Iterator[None]:
    """Turn the library's user-facing errors into one stderr line and an exit code.

    Importing nothing heavy here lets a bad option or file fail at once, before torch loads.
    """
    from vaecli.config import ConfigError
    from vaecli.io import InputError

    try:
        yield
    except (InputError, ConfigError) as e:
        err(f"error: {e}")
        raise typer.Exit(EXIT_INPUT) from None
    except NoModel as e:
        err(f"error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as e:
        from vaecli.atomic import is_disk_full

        if isinstance(e, BrokenPipeError) or e.errno == errno.EPIPE:
            # The reader went away (`| head -1`): stop quietly, and keep Python from complaining at exit.
            _silence_stdout()
            raise typer.Exit(0) from None
        if not is_disk_full(e):
            raise
        _silence_stdout()  # what is still buffered for stdout cannot be written either
        err(f"error: cannot write {e.filename or '<stdout>'}: no space left on device")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as e:
        if _raised(e, "vaecli.infer", "VectorSizeError"):
            err(f"error: {e}")
            raise typer.Exit(EXIT_INPUT) from None
        if _raised(e, "vaecli.model", "ModelDirError"):
            err(f"error: {e}")
            raise typer.Exit(EXIT_ERROR) from None
        raise


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests' in-process runner)


def model_path(model: Path | None) -> Path:
    """--model, else $VAE_MODEL, else ./vae-model; refused at once (before torch loads) when missing."""
    path = model or Path(os.environ.get("VAE_MODEL") or DEFAULT_MODEL)
    if not path.exists():
        raise NoModel(f"no model at {path}; train one with `vae finetune corpus.txt` or pass --model DIR")
    return path


def load_model(model: Path | None) -> Any:
    path = model_path(model)
    quiet_libraries()
    from vaecli.api import TextVAE

    return TextVAE.from_pretrained(path)


def out_lines(lines: list[str]) -> None:
    """One output line per item: a decoded text's own line breaks (\\n, \\r, U+2028, ... everything
    str.splitlines splits on; an LM may emit them) become spaces, so line i answers input i."""
    stdout = sys.stdout
    for line in lines:
        stdout.write(" ".join(line.splitlines()) + "\n")
    stdout.flush()


def check_format(fmt: str) -> None:
    """Refuse an unknown --format before any input is read or model loaded."""
    from vaecli.io import InputError
    from vaecli.vectors import FORMATS

    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def report_blank(blank: int) -> None:
    """The one stderr line every command that reads sentences prints about blank lines."""
    if blank:
        err(f"skipped {blank} blank line(s)")


def read_sentences(path: Path) -> list[str]:
    """A file's sentences (blank lines skipped and counted on stderr); refuses a file with none."""
    from vaecli.io import InputError, read_lines

    lines = read_lines(path=str(path))
    if not lines.texts:
        raise InputError(f"{path} has no sentences")  # an error stays one line: no count before it
    report_blank(lines.blank)
    return lines.texts


class SentenceChunks:
    """Sentences from arguments, -i FILE or stdin, in chunks as they arrive (see io.stream_lines);
    blank lines are counted as they pass. `first()` reads until the first sentence (or refuses
    input with none) so that bad input is reported before a model loads."""

    def __init__(self, texts: list[str], input_file: Path | None) -> None:
        from vaecli.io import stream_lines

        if texts == ["-"] and input_file is None:  # a lone `-` means stdin, as in every Unix tool
            texts = []
        self.input_file = input_file
        self.blank = 0
        self._pieces = stream_lines(texts, str(input_file) if input_file else None, sys.stdin.buffer, ENCODE_CHUNK)
        self._first: list[str] | None = None

    def _texts(self) -> Iterator[list[str]]:
        for lines in self._pieces:
            self.blank += lines.blank
            if lines.texts:
                yield lines.texts

    def first(self) -> list[str]:
        self._iter = self._texts()
        self._first = next(self._iter, None)
        if self._first is None:
            from vaecli.io import InputError

            report_blank(self.blank)
            if self.input_file is not None and str(self.input_file) != "-":
                raise InputError(f"{self.input_file} has no sentences")
            raise InputError("no sentences given: pass them as arguments, with -i FILE, or on stdin")
        return self._first

    def __iter__(self) -> Iterator[list[str]]:
        if self._first is None:
            self.first()
        yield self._first
        yield from self._iter


# -- finetune ------------------------------------------------------------------------------------


@app.command()
def finetune(
    train_file: Annotated[Path, typer.Argument(metavar="TRAIN_FILE", help="Training sentences, one per line.")],
    valid: Annotated[Optional[Path], typer.Option(help="Validation sentences (default: hold out 5% of TRAIN_FILE).")] = None,
    model: Annotated[
        Optional[str], typer.Option("--model", "-m", help="An encoder-decoder backbone: minilm (embedded BERT2BERT), a hub name (t5-small), "
                                    "a local directory; or a phase-1 output.")
    ] = None,
    encoder: Annotated[Optional[str], typer.Option(help="Encoder of an encoder + causal-LM VAE: minilm (embedded), a hub name or a directory. "
                                                   "Default pair: minilm + smollm2.")] = None,
    decoder: Annotated[Optional[str], typer.Option(help="Causal LM decoder: smollm2 (embedded SmolLM2-135M), a hub name (gpt2) or a directory.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model directory.")] = Path(DEFAULT_MODEL),
    phase: Annotated[str, typer.Option(help="Which phases: both, 1 or 2.")] = "both",
    phase1_steps: Annotated[int, typer.Option(help="Optimizer steps of phase 1.")] = 1000,
    phase2_steps: Annotated[int, typer.Option(help="Optimizer steps of phase 2.")] = 2000,
    phase1_epochs: Annotated[Optional[float], typer.Option(help="Phase 1 length in epochs (overrides steps).")] = None,
    phase2_epochs: Annotated[Optional[float], typer.Option(help="Phase 2 length in epochs (overrides steps).")] = None,
    freeze_decoder: Annotated[Optional[bool], typer.Option("--freeze-decoder/--no-freeze-decoder", metavar=FLAG, help="Phase 1: keep the decoder's pretrained "
                                                           "weights fixed \\[default: on for a causal LM].")] = None,
    calibrate: Annotated[Optional[bool], typer.Option("--calibrate/--no-calibrate", metavar=FLAG, help="Data-dependent init of the new "
                                                      "layers \\[default: on for a causal LM].")] = None,
    lora: Annotated[int, typer.Option(help="LoRA rank for a causal decoder (0 = off; needs peft): its base weights stay fixed.")] = 0,
    freeze_decoder_phase2: Annotated[bool, typer.Option("--freeze-decoder-phase2", metavar=FLAG, help="Phase 2: keep them fixed too.")] = False,
    phase1_denoise: Annotated[float, typer.Option(help="Phase 1: fraction of input tokens deleted.")] = 0.0,
    denoise: Annotated[float, typer.Option(help="Phase 2: fraction of input tokens deleted (targets stay clean).")] = 0.15,
    beta_schedule: Annotated[str, typer.Option(help="constant, linear or cyclical (over the real phase-2 steps).")] = "cyclical",
    beta_max: Annotated[float, typer.Option(help="Largest KL weight.")] = 1.0,
    beta_cycles: Annotated[int, typer.Option(help="Cycles of the cyclical schedule.")] = 4,
    beta_ramp: Annotated[float, typer.Option(help="Fraction of a cycle spent rising.")] = 0.5,
    free_bits: Annotated[Optional[float], typer.Option(help="Free bits lambda: nats per dimension, on the batch-averaged KL "
                                                        "\\[default: 0.5 encoder-decoder, 3 causal LM].")] = None,
    latent_dim: Annotated[int, typer.Option(help="Size of z.")] = 32,
    pooling: Annotated[str, typer.Option(help="mean or max (padding masked).")] = "mean",
    injection: Annotated[Optional[str], typer.Option(help="memory, prefix, embedding or both (prefix + embedding). "
                                                     "Default: memory (encoder-decoder), both (causal LM).")] = None,
    memory_slots: Annotated[int, typer.Option(help="Vectors z becomes under memory injection.")] = 4,
    prefix_slots: Annotated[Optional[int], typer.Option(help="Key/value slots per decoder layer under prefix / both injection "
                                                        "\\[default: 1 encoder-decoder, 8 causal LM].")] = None,
    init_logvar: Annotated[Optional[float], typer.Option(help="Initial log-variance of q(z|x) (below 0: z starts close to mu) "
                                                          "\\[default: 0 encoder-decoder, -6 causal LM].")] = None,
    bow: Annotated[float, typer.Option(help="Weight of a bag-of-words loss from z (Zhao et al. 2017); 0 = off.")] = 0.0,
    word_dropout: Annotated[float, typer.Option(help="Fraction of decoder input tokens replaced by padding in training.")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Sentences per optimizer step, all processes together (the global batch).")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the pretrained weights.")] = 1e-4,
    new_lr_scale: Annotated[Optional[float], typer.Option(help="The VAE's own layers train at lr x this (default: 1 encoder-decoder, 10 causal LM).")] = None,
    warmup: Annotated[float, typer.Option(help="Fraction of each phase warming the LR up.")] = 0.05,
    clip: Annotated[float, typer.Option(help="Gradient-norm clipping (0 = off).")] = 1.0,
    max_length: Annotated[int, typer.Option(help="Longest input in subword tokens; longer lines are truncated.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    bf16: Annotated[str, typer.Option(help="bf16 autocast: auto, yes or no.")] = "auto",
    valid_every: Annotated[int, typer.Option(help="Validate every N steps; the weights of the best validation Rec are kept.")] = 200,
    valid_size: Annotated[int, typer.Option(help="At most this many validation sentences.")] = 1000,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 200,
    patience: Annotated[int, typer.Option(help="Phase-2 early stopping after N validations without a better Rec (0 = off).")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads (0 = default).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", metavar=FLAG, help="Continue the interrupted run in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar=FLAG, help="Replace an existing --out (a vaecli run or model directory).")] = False,
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Finetune a pretrained encoder-decoder into a VAE (phase 1, then phase 2); writes a model directory."""
    values = dict(locals())
    values.pop("ctx")
    # What the user typed (not defaults): --resume compares exactly these with the checkpoint's config.
    names = {"valid": "valid_file"}
    given = {names.get(k, k) for k in values if ctx is not None and (source := ctx.get_parameter_source(k)) is not None
             and source.name == "COMMANDLINE"}
    with handled():
        from vaecli.config import TrainConfig
        from vaecli.hub import check_backbone_name
        from vaecli.io import check_text_file

        for key in ("resume", "overwrite", "valid"):
            values.pop(key)
            given.discard(key)
        values.update(train_file=str(train_file), valid_file=str(valid) if valid else None, out=str(out))
        # Options, files and the backbone's name are checked before torch and transformers load (seconds).
        cfg = TrainConfig(**values)
        for path in (cfg.train_file, cfg.valid_file):
            if path:
                check_text_file(path)
        if not resume:
            names = {"--model": cfg.model} if cfg.model is not None else {"--encoder": cfg.encoder, "--decoder": cfg.decoder}
            for option, name in names.items():
                check_backbone_name(name, option)
        quiet_libraries()
        from vaecli.train import Interrupted, RunError, is_main_process
        from vaecli.train import finetune as run

        try:
            with Reporter() as report:
                path = run(cfg, report, resume=resume, overwrite=overwrite, given=given)
        except RunError as e:
            err(f"error: {e}")
            raise typer.Exit(EXIT_ERROR) from None
        except Interrupted as e:
            err(str(e))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if is_main_process():
            err(f"model saved in {path}" + (f": {kept_text(report.kept)}" if report.kept else ""))
            print(path)


def kept_text(kept: dict[str, Any]) -> str:
    """Which validation the saved weights are: the best validation Rec (vaecli.diagnose.keep_score)."""
    return (f"phase {kept['phase']} step {kept['step']}, the best validation rec ({kept['rec']:.3f}; kl {kept['kl']:.3f} "
            f"au {kept['au']}/{kept['dims']} mi {kept['mi']:.3f} gap {kept['gap']:.3f})")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


PROGRESS_EVERY_S = 30.0  # off a terminal, one progress line per this many seconds (and the first step)


class Reporter:
    """Training events -> a rich progress bar on a terminal, plain lines otherwise (both on stderr).

    Off a terminal (a pipe, a log, CI) a progress line is printed at each phase's first step and
    then every `every` seconds of `clock`, however long a step takes.
    """

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Any = None) -> None:
        import time

        self.every = every
        self.clock = clock or time.monotonic
        self.last_line: float | None = None
        self.kept: dict[str, Any] | None = None

    def __enter__(self) -> Reporter:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        self.progress = None
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("phase {task.fields[phase]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=self.console,
            )
            self.progress.start()
        self.task = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "data":
            self.console.print(
                f"{event['train']} training / {event['valid']} validation sentences; "
                f"{event['blank']} blank line(s) skipped, {event['truncated']} truncated to --max-length"
            )
        elif kind == "phase":
            self.last_line = None
            if self.progress is not None:
                self.task = self.progress.add_task("", total=event["total"], completed=event["start"], phase=event["phase"], stats="")
        elif kind == "step" and self.progress is not None and self.task is not None:
            stats = f"rec {event['rec']:.2f} kl {event['kl']:.2f} beta {event['beta']:.2f} {event['steps_per_s']:.2f} steps/s"
            self.progress.update(self.task, completed=event["step"], stats=stats)
        elif kind == "step" and self.progress is None:
            now = self.clock()
            if self.last_line is None or now - self.last_line >= self.every:
                self.last_line = now
                rate = event["steps_per_s"]
                eta = duration((event["total"] - event["step"]) / rate) if rate > 0 else "?"
                self.console.print(
                    f"phase {event['phase']} step {event['step']}/{event['total']}: rec {event['rec']:.2f} kl {event['kl']:.2f} "
                    f"beta {event['beta']:.2f}, {rate:.2f} steps/s, ETA {eta}"
                )
        elif kind == "valid":
            mark = " (best, saved)" if event["best"] else ""
            self.console.print(
                f"phase {event['phase']} step {event['step']}: valid rec {event['rec']:.3f} kl {event['kl']:.3f} "
                f"-elbo {event['elbo']:.3f} au {event['au']}/{event['dims']} mi {event['mi']:.3f} gap {event['gap']:.3f}{mark}"
            )
        elif kind == "kept":
            self.kept = event
        elif kind == "message":
            self.console.print(event["text"])


# -- latent commands -------------------------------------------------------------------------------


@app.command()
def encode(
    texts: Annotated[
        Optional[list[str]], typer.Argument(metavar="TEXT", help="Sentences (default: -i FILE or stdin, one per line; a lone - is stdin).")
    ] = None,
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="Read sentences from FILE ('-' = stdin).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, tsv, npy or safetensors.")] = "jsonl",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE (atomically) instead of stdout.")] = None,
    sample: Annotated[bool, typer.Option("--sample", metavar=FLAG, help="Draw z ~ q(z|x) instead of the mean mu.")] = False,
    with_logvar: Annotated[bool, typer.Option("--with-logvar", metavar=FLAG, help="Add the posterior log-variance.")] = False,
    seed: SeedOpt = None,
    model: ModelOpt = None,
) -> None:
    """Sentences -> latent vectors (mu by default)."""
    with handled():
        from vaecli.atomic import atomic_open
        from vaecli.io import InputError
        from vaecli.vectors import write_vectors

        check_format(fmt)
        if output is None and fmt in ("npy", "safetensors") and sys.stdout.isatty():
            raise InputError(f"{fmt} is binary: write it with -o FILE or into a pipe")
        chunks = SentenceChunks(texts or [], input_file)
        chunks.first()
        vae = load_model(model)
        import numpy as np

        from vaecli import infer

        rng = np.random.default_rng(seed)  # one stream across chunks: the draws do not depend on chunking
        key = "z" if sample else "mu"
        truncated = 0

        def encoded() -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
            nonlocal truncated
            for sentences in chunks:
                enc = infer.encode(vae, sentences)
                truncated += enc.truncated
                yield sentences, infer.sample_posterior(enc, seed=rng) if sample else enc.mu, enc.logvar

        def write(f: Any) -> None:
            if fmt in ("jsonl", "tsv"):  # streamed: each chunk is written (and flushed) once encoded
                for sentences, vectors, logvar in encoded():
                    write_vectors(f, vectors, texts=sentences, fmt=fmt, logvar=logvar if with_logvar else None, key=key)
                    f.flush()
                return
            # npy and safetensors describe the whole array before its data: collected, then written.
            parts = list(encoded())
            all_texts = [t for sentences, _, _ in parts for t in sentences]
            logvar = np.concatenate([p[2] for p in parts]) if with_logvar else None
            write_vectors(f, np.concatenate([p[1] for p in parts]), texts=all_texts, fmt=fmt, logvar=logvar, key=key)

        if output is None:
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with atomic_open(output) as f:
                write(f)
        report_blank(chunks.blank)
        if truncated:
            err(f"warning: {truncated} sentence(s) longer than {vae.config.max_length} tokens were truncated")


@app.command()
def decode(
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="Vectors file (default: stdin).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="jsonl, tsv, npy or safetensors (default: detect).")] = None,
    beam: BeamOpt = 1, sample: SampleOpt = False, top_p: TopPOpt = 1.0, temperature: TempOpt = 1.0,
    no_repeat_ngram: NoRepeatOpt = 0, seed: SeedOpt = None, model: ModelOpt = None,
) -> None:
    """Latent vectors (any format `encode` writes) -> one sentence per line."""
    with handled():
        from vaecli.io import InputError, check_text_file
        from vaecli.vectors import read_vectors

        if fmt is not None:
            check_format(fmt)
        if input_file is not None and str(input_file) != "-":
            if not input_file.is_file():
                check_text_file(input_file)  # raises the right one-line error
            data, name = input_file.read_bytes(), str(input_file)
        else:
            data, name = sys.stdin.buffer.read(), "<stdin>"
        vae = load_model(model)
        from vaecli import infer

        vectors, _ = read_vectors(data, fmt, name=name, dim=vae.config.latent_dim)
        if not len(vectors):
            raise InputError(f"no vectors in {name}")
        out_lines(infer.decode(vae, vectors, beam=beam, sample=sample, top_p=top_p, temperature=temperature, seed=seed,
                               no_repeat_ngram=no_repeat_ngram))


@app.command()
def sample(
    n: Annotated[int, typer.Option("-n", min=1, help="How many sentences.")] = 10,
    scale: Annotated[float, typer.Option("--scale", "-t", min=0.0, help="Prior scale t: z ~ N(0, t^2 I).")] = 1.0,
    beam: BeamOpt = 1, sample_tokens: SampleOpt = False, top_p: TopPOpt = 1.0, temperature: TempOpt = 1.0,
    no_repeat_ngram: NoRepeatOpt = SAMPLE_NO_REPEAT_NGRAM, seed: SeedOpt = None, model: ModelOpt = None,
) -> None:
    """Decode n draws from the prior."""
    with handled():
        vae = load_model(model)
        from vaecli import infer

        z = infer.prior(vae, n, scale, seed)
        out_lines(infer.decode(vae, z, beam=beam, sample=sample_tokens, top_p=top_p, temperature=temperature, seed=seed,
                               no_repeat_ngram=no_repeat_ngram))


@app.command()
def interpolate(
    a: Annotated[str, typer.Argument(metavar="A", help="Start sentence.")],
    b: Annotated[str, typer.Argument(metavar="B", help="End sentence.")],
    steps: Annotated[int, typer.Option(min=2, help="Points on the path, both ends included.")] = 5,
    slerp: Annotated[bool, typer.Option("--slerp", metavar=FLAG, help="Spherical instead of linear path.")] = False,
    beam: BeamOpt = 1, model: ModelOpt = None,
) -> None:
    """Decode a path through latent space from A's encoding to B's."""
    with handled():
        vae = load_model(model)
        from vaecli import infer

        mu = infer.encode(vae, [a, b]).mu
        t, points = infer.path(mu[0], mu[1], steps, slerp)
        texts = infer.decode(vae, points, beam=beam)
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table

            table = Table("t", "sentence")
            for ti, text in zip(t, texts):
                table.add_row(f"{ti:.2f}", text)
            Console(emoji=False).print(table)
        else:
            out_lines(texts)


@app.command()
def paraphrase(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The sentence.")],
    n: Annotated[int, typer.Option("-n", min=1, help="How many paraphrases (at most).")] = 5,
    scale: Annotated[float, typer.Option(min=0.0, help="Scale of the posterior's standard deviation.")] = 1.0,
    beam: BeamOpt = 1, sample_tokens: SampleOpt = False, top_p: TopPOpt = 1.0, temperature: TempOpt = 1.0,
    no_repeat_ngram: NoRepeatOpt = 0, seed: SeedOpt = None, model: ModelOpt = None,
) -> None:
    """Distinct sentences decoded from around TEXT's posterior (TEXT itself left out)."""
    with handled():
        vae = load_model(model)
        from vaecli import infer

        found = infer.paraphrase(vae, text, n, scale=scale, seed=seed, beam=beam, sample=sample_tokens, top_p=top_p, temperature=temperature,
                                 no_repeat_ngram=no_repeat_ngram)
        if len(found) < n:
            err(f"found {len(found)} distinct paraphrase(s) of {n}; try a larger --scale")
        out_lines(found)


@app.command()
def steer(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The sentence to move.")],
    source: Annotated[Path, typer.Option("--from", help="Sentences with the attribute to move away from.")],
    target: Annotated[Path, typer.Option("--to", help="Sentences with the attribute to move towards.")],
    alpha: Annotated[float, typer.Option(help="How far along mean(to) - mean(from).")] = 1.0,
    beam: BeamOpt = 1, model: ModelOpt = None,
) -> None:
    """Move TEXT along the direction from the mean encoding of --from to that of --to."""
    with handled():
        src, dst = read_sentences(source), read_sentences(target)
        vae = load_model(model)
        out_lines([vae.steer(text, src, dst, alpha, beam=beam)])


@app.command()
def analogy(
    a: Annotated[str, typer.Argument(metavar="A")], b: Annotated[str, typer.Argument(metavar="B")], c: Annotated[str, typer.Argument(metavar="C")],
    beam: BeamOpt = 1, model: ModelOpt = None,
) -> None:
    """A is to B as C is to ...: decodes C + (B - A)."""
    with handled():
        vae = load_model(model)
        out_lines([vae.analogy(a, b, c, beam=beam)])


@app.command()
def evaluate(
    test_file: Annotated[Path, typer.Argument(metavar="TEST_FILE", help="Test sentences, one per line.")],
    iw_samples: Annotated[int, typer.Option(min=1, help="Importance samples for NLL and PPL (Optimus: 100).")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="Sentences per batch.")] = 32,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N sentences.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the z samples.")] = 0,
    no_bleu: Annotated[bool, typer.Option("--no-bleu", metavar=FLAG, help="Skip the greedy reconstructions (BLEU, exact match).")] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="One JSON object on stdout.")] = False,
    bf16: Annotated[str, typer.Option(help="bf16 autocast: auto (as finetune), yes or no.")] = "auto",
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0 = default; 1 is faster on a busy machine).")] = 0,
    model: ModelOpt = None,
) -> None:
    """Rec, KL, -ELBO, IW-NLL, PPL, MI, AU, z-shuffle gap, reconstruction BLEU and exact match."""
    with handled():
        import json

        from vaecli.io import InputError

        if bf16 not in ("auto", "yes", "no"):
            raise InputError("--bf16 must be auto, yes or no")
        texts = read_sentences(test_file)[:limit]
        vae = load_model(model)
        from vaecli.evaluate import evaluate as run

        if threads:
            import torch

            torch.set_num_threads(threads)
        with StageProgress() as progress:
            result = run(vae, texts, iw_samples=iw_samples, batch_size=batch_size, seed=seed, bleu=not no_bleu, bf16=bf16, progress=progress)
        if as_json or not sys.stdout.isatty():
            print(json.dumps(result))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("metric", "value", "unit", title=f"{test_file} ({result['sentences']} sentences)")
        for row in metric_rows(result):
            table.add_row(*row)
        Console(emoji=False).print(table)


def metric_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, unit) rows of evaluate's table."""
    rows = []
    for key, label, unit in METRIC_ROWS:
        if key in result:
            value = result[key]
            if key == "ppl":
                unit = result.get("token_unit", unit)
            if key == "au":
                text = f"{value} / {result['latent_dim']}"
            else:
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
            rows.append((label, text, unit))
    return rows


class StageProgress:
    """`vae evaluate`'s progress(stage, done, total) on stderr: a rich bar per stage on a terminal;
    otherwise a line at each stage's first report, then every `every` seconds of `clock`."""

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Any = None) -> None:
        import time

        self.every = every
        self.clock = clock or time.monotonic
        self.tasks: dict[str, Any] = {}
        self.started: dict[str, float] = {}
        self.last_line: float | None = None
        self.mark = self.clock()  # the last report of any stage: where the next stage began

    def __enter__(self) -> StageProgress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        self.progress = None
        if self.console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("sentences"),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.progress.add_task(stage, total=total)
            self.progress.update(self.tasks[stage], completed=done)
            return
        now, begun = self.clock(), self.mark
        self.mark = now
        first = stage not in self.started
        if first:
            self.started[stage] = begun
        if first or now - (self.last_line or now) >= self.every:
            self.last_line = now
            elapsed = now - self.started[stage]
            eta = f", ETA {duration(elapsed / done * (total - done))}" if elapsed > 0 and 0 < done < total else ""
            self.console.print(f"evaluate: {stage} {done}/{total} sentences{eta}")


@app.command()
def plot(
    run_dir: Annotated[
        Optional[Path], typer.Argument(metavar="RUN_DIR", help="A `vae finetune` output directory \\[default: --model, $VAE_MODEL, else ./vae-model].")
    ] = None,
    sentences: Annotated[Optional[Path], typer.Option(help="Sentences for the latent map \\[default: the run's --valid file].")] = None,
    limit: Annotated[int, typer.Option(min=2, help="At most this many sentences on the map.")] = 1000,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the PNGs \\[default: RUN_DIR].")] = None,
    model: ModelOpt = None,
) -> None:
    """PNG figures: training curves (Rec, KL, beta, MI, AU, shuffle gap) and a PCA map of encoded sentences."""
    with handled():
        import json

        from vaecli.io import InputError

        if run_dir is not None and model is not None and run_dir != model:
            raise InputError("give the run directory as RUN_DIR or as --model, not both")
        run_dir = run_dir or model or Path(os.environ.get("VAE_MODEL") or DEFAULT_MODEL)
        try:
            from vaecli.plot import plot_curves, plot_latent_map, read_metrics
        except ImportError:
            raise InputError("vae plot needs matplotlib: pip install 'vaecli[plot]'") from None
        try:
            records = read_metrics(run_dir)
        except FileNotFoundError as e:
            raise InputError(str(e)) from None
        folder = out or run_dir
        folder.mkdir(parents=True, exist_ok=True)
        training = json.loads((run_dir / "training.json").read_text()) if (run_dir / "training.json").is_file() else {}
        written = [plot_curves(records, folder / "curves.png", training)]
        if sentences is None:
            config = training.get("config", {})
            sentences = Path(config["valid_file"]) if config.get("valid_file") else None
        if sentences is not None:
            texts = read_sentences(sentences)[:limit]
            vae = load_model(run_dir)
            from vaecli import infer

            written.append(plot_latent_map(infer.encode(vae, texts).mu, texts, folder / "latent-map.png"))
        else:
            err("no --sentences and no --valid file in training.json: latent map skipped")
        out_lines([str(p) for p in written])


METRIC_ROWS = [
    ("rec", "Rec", "nats/sentence, z ~ q(z|x)"),
    ("kl", "KL", "nats/sentence"),
    ("elbo", "-ELBO", "nats/sentence"),
    ("nll", "NLL (IW)", "nats/sentence"),
    ("ppl", "PPL", "per subword token, EOS counted"),
    ("ppl_word", "PPL per word", "whitespace words, EOS not counted"),
    ("mi", "MI", "nats, aggregate posterior over the whole set"),
    ("au", "AU", "active / latent dims, Cov(mu) >= 0.01"),
    ("shuffle_gap", "z-shuffle gap", "nats/sentence; ~0 = z ignored"),
    ("bleu", "BLEU", "greedy from mu, corpus BLEU-4 (sacrebleu, 13a tokenisation)"),
    ("exact_match", "exact match", "fraction of sentences"),
]


def main() -> None:
    app()
