"""What every command shares: errors to stderr and exit codes, the model to load, sentences in, lines out.

Data goes to stdout, everything else (progress, counts, warnings, errors) to stderr. Errors are
one line and a non-zero exit code (vaecli.errors; README, "Exit codes"); tracebacks are for bugs
only. Nothing heavy is imported here, so a bad option or file fails at once, before torch loads.
"""

from __future__ import annotations

import errno
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Optional

import typer

from vaecli.config import MODEL_DIR
from vaecli.errors import EXIT_ERROR, EXIT_INTERRUPTED, InputError, ModelDirError, VaeError

READ_CHUNK = 1024  # lines a streaming command reads, processes and writes at a time
FLAG = ""  # metavar of on/off flags: rich help would otherwise show them taking a <bool> value

def finite(value: float | None) -> float | None:
    """A float option's check: nan and inf parse as floats and pass min/max ranges, but mean nothing here."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model directory \\[default: $VAE_MODEL, else ./vae-model].")]
BeamOpt = Annotated[int, typer.Option(min=1, help="Beam width (1 = greedy).")]
RefineOpt = Annotated[int, typer.Option(min=0, max=1000, help="Gradient steps that move each sentence's encoding from the encoder's mu "
                                                        "toward a z that gives the sentence back (0 = mu as the encoder gives it).")]
RerankOpt = Annotated[bool, typer.Option("--rerank/--no-rerank", metavar=FLAG, help="With beam search: of the beam's hypotheses near the best, "
                                         "the one whose own encoding lies nearest z.")]
SampleOpt = Annotated[bool, typer.Option("--sample", metavar=FLAG, help="Sample tokens (nucleus) instead of greedy/beam decoding.")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, callback=finite, help="Nucleus mass when sampling.")]
TempOpt = Annotated[float, typer.Option(min=0.0, callback=finite, help="Softmax temperature when sampling.")]
NoRepeatOpt = Annotated[int, typer.Option("--no-repeat-ngram", min=0, help="Never repeat a sequence of this many tokens within a sentence (0 = off).")]
ColumnOpt = Annotated[Optional[str], typer.Option(help="The column of a corpus file that holds the sentences (nested JSON keys as a.b) "
                                                      "\\[default: its one text column].")]
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


@contextmanager
def handled() -> Iterator[None]:
    """Turn the library's user-facing errors (vaecli.errors, by type) into one stderr line and their exit code."""
    try:
        yield
    except VaeError as e:
        err(f"{e.prefix}{e}")
        raise typer.Exit(e.exit_code) from None
    except OSError as e:
        from vaecli.files.atomic import is_disk_full

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


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests' in-process runner)


def model_path(model: Path | None) -> Path:
    """--model, else $VAE_MODEL, else ./vae-model; refused at once (before torch loads) when missing."""
    path = model or Path(os.environ.get("VAE_MODEL") or MODEL_DIR)
    if not path.exists():
        raise ModelDirError(f"no model at {path}; train one with `vae finetune corpus.txt` or pass --model DIR")
    return path


def load_model(model: Path | None) -> Any:
    """The TextVAE at --model (see model_path), on the GPU where there is one."""
    path = model_path(model)
    quiet_libraries()
    from vaecli.api import TextVAE
    from vaecli.modeling.precision import run_device

    return TextVAE.from_pretrained(path, device=run_device())


def out_lines(lines: Iterable[str]) -> None:
    """One output line per item: a decoded text's own line breaks (\\n, \\r, U+2028, ... everything
    str.splitlines splits on; an LM may emit them) become spaces, so line i answers input i."""
    stdout = sys.stdout
    for line in lines:
        stdout.write(" ".join(line.splitlines()) + "\n")
    stdout.flush()


def check_format(fmt: str) -> None:
    """Refuse an unknown --format before any input is read or model loaded."""
    from vaecli.files.vectors import FORMATS

    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def report_blank(blank: int) -> None:
    """The one stderr line every command that reads sentences prints about blank lines."""
    if blank:
        err(f"skipped {blank} blank line(s)")


def check_sentences(**arguments: str) -> None:
    """Sentences given as arguments must have words: each is refused, by name, when empty or blank (in files
    and on stdin a blank line is skipped and counted; an argument is one sentence by intent)."""
    for name, text in arguments.items():
        if not text.strip():
            raise InputError(f"{name} is {'empty' if not text else 'blank'}: give a sentence")


def read_sentences(path: Path, fmt: str | None = None, column: str | None = None, option: str | None = "--format") -> list[str]:
    """A file's sentences, a text file or a corpus of another format (files.corpus; blank lines or empty cells
    skipped and counted on stderr); refuses a file with none. `option`: the command's option naming a format, if any."""
    from vaecli.files.corpus import TEXT, corpus_format, read_sentences_dataset
    from vaecli.files.text import read_lines

    if corpus_format(str(path), fmt, option) == "txt":
        lines = read_lines(path=str(path))
        texts, blank = lines.texts, lines.blank
    else:
        read = read_sentences_dataset(str(path), fmt, column)
        texts, blank = read.dataset[TEXT], read.skipped
    if not texts:
        raise InputError(f"{path} has no sentences")  # an error stays one line: no count before it
    report_blank(blank)
    return texts


Chunk = tuple[list[str], dict[str, list[Any]]]  # sentences, and the kept columns' values beside them


class SentenceChunks:
    """Sentences from arguments, -i FILE or stdin, in chunks as they arrive (see files.streaming.stream_lines), or
    from a corpus file of another format (files.corpus), with the columns to keep; blank lines (empty
    cells) are counted as they pass. `first()` reads until the first sentence (or refuses input with
    none) so that bad input is reported before a model loads."""

    def __init__(self, texts: list[str], input_file: Path | None, fmt: str | None = None, column: str | None = None,
                 keep: list[str] | None = None) -> None:
        from vaecli.files.corpus import corpus_format

        if texts == ["-"] and input_file is None:  # a lone `-` means stdin, as in every Unix tool
            texts = []
        check_sentences(**{f"argument {i}": text for i, text in enumerate(texts, start=1)})
        self.input_file = input_file
        self.blank = 0
        self.keep = keep or []
        from_file = input_file is not None and str(input_file) != "-" and not texts
        if from_file and corpus_format(str(input_file), fmt, "--input-format") != "txt":
            self._pieces = self._corpus(str(input_file), fmt, column)
        else:
            if fmt not in (None, "txt"):  # stdin and arguments are lines: a csv on stdin would be read as sentences
                raise InputError(f"--input-format {fmt} reads a file given with -i FILE; stdin and arguments are text, one sentence per line")
            if self.keep:
                raise InputError("--keep copies columns of a corpus file (csv, tsv, jsonl, json, parquet, a save_to_disk folder) given with -i")
            self._pieces = self._lines(texts, input_file)
        self._first: Chunk | None = None

    def _lines(self, texts: list[str], input_file: Path | None) -> Iterator[Chunk]:
        from vaecli.files.streaming import stream_lines

        for lines in stream_lines(texts, str(input_file) if input_file else None, sys.stdin.buffer, READ_CHUNK):
            self.blank += lines.blank
            if lines.texts:
                yield lines.texts, {}

    def _corpus(self, source: str, fmt: str | None, column: str | None) -> Iterator[Chunk]:
        from vaecli.files.corpus import TEXT, read_sentences_dataset

        read = read_sentences_dataset(source, fmt, column, keep=self.keep)
        self.blank = read.skipped
        for batch in read.dataset.iter(batch_size=READ_CHUNK):  # Arrow batches: never the whole corpus as Python objects
            yield batch[TEXT], {name: batch[source] for name, source in read.kept.items()}

    def first(self) -> Chunk:
        self._iter = iter(self._pieces)
        self._first = next(self._iter, None)
        if self._first is None:
            report_blank(self.blank)
            if self.input_file is not None and str(self.input_file) != "-":
                raise InputError(f"{self.input_file} has no sentences")
            raise InputError("no sentences given: pass them as arguments, with -i FILE, or on stdin")
        return self._first

    def __iter__(self) -> Iterator[Chunk]:
        if self._first is None:
            self.first()
        yield self._first
        yield from self._iter
