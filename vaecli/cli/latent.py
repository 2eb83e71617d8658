"""The latent commands: encode, decode, sample, interpolate, paraphrase, steer, analogy. Each goes through TextVAE.

Every command that produces lines writes them as soon as a batch is done: `| head` returns after the
first batch, and an interrupted command keeps what it printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from vaecli.cli.common import (
    FLAG,
    BeamOpt,
    ColumnOpt,
    ModelOpt,
    NoRepeatOpt,
    RefineOpt,
    RerankOpt,
    SampleOpt,
    SeedOpt,
    SentenceChunks,
    TempOpt,
    TopPOpt,
    check_format,
    check_sentences,
    err,
    finite,
    handled,
    load_model,
    out_lines,
    read_sentences,
    report_blank,
)
from vaecli.config import DECODE_BEAM, DECODE_RERANK, ENCODE_REFINE, SAMPLE_NO_REPEAT_NGRAM
from vaecli.errors import InputError

MAX_STEPS = 1_000_000  # interpolate --steps: streamed a batch at a time, so only patience bounds it


def encode(
    texts: Annotated[
        Optional[list[str]], typer.Argument(metavar="TEXT", help="Sentences (default: -i FILE or stdin, one per line; a lone - is stdin).")
    ] = None,
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="Read sentences from FILE ('-' = stdin).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="jsonl, tsv, npy or safetensors \\[default: -o FILE's extension, "
                                                                    "else jsonl].")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE (atomically) instead of stdout.")] = None,
    sample: Annotated[bool, typer.Option("--sample", metavar=FLAG, help="Draw z ~ q(z|x) instead of the mean mu.")] = False,
    with_logvar: Annotated[bool, typer.Option("--with-logvar", metavar=FLAG, help="Add the posterior log-variance.")] = False,
    input_format: Annotated[Optional[str], typer.Option(help="Format of -i FILE: txt, csv, tsv, jsonl, json, parquet or disk "
                                                             "\\[default: from its extension].")] = None,
    column: ColumnOpt = None,
    keep: Annotated[Optional[str], typer.Option(help="Columns of -i FILE to copy into each jsonl / tsv record (comma-separated), "
                                                     "to join the vectors back to the rows.")] = None,
    seed: SeedOpt = None,
    refine: RefineOpt = ENCODE_REFINE,
    model: ModelOpt = None,
) -> None:
    """Sentences -> latent vectors (mu, refined toward giving each sentence back, by default)."""
    with handled():
        from vaecli.files.atomic import atomic_open
        from vaecli.files.vectors import RESERVED_KEYS, format_of_path, write_vectors

        named = format_of_path(output) if output is not None else None
        if fmt is not None:
            check_format(fmt)
            if named is not None and named != fmt:
                raise InputError(f"--format {fmt} but -o {output} names a .{named} file; drop --format or rename the file")
        fmt = fmt or named or "jsonl"
        if output is None and fmt in ("npy", "safetensors") and sys.stdout.isatty():
            raise InputError(f"{fmt} is binary: write it with -o FILE or into a pipe")
        kept = [name.strip() for name in keep.split(",") if name.strip()] if keep else []
        if kept and fmt not in ("jsonl", "tsv"):
            raise InputError(f"--keep writes the columns into jsonl or tsv records, not {fmt}")
        if with_logvar and fmt == "npy":
            raise InputError("--with-logvar: npy holds one array, the vectors; use safetensors, jsonl or tsv for the log-variance")
        clash = [name for name in kept if name in RESERVED_KEYS]
        if clash and fmt == "jsonl":  # a reader would take the kept value for the text or the vector
            raise InputError(f"--keep {clash[0]}: jsonl records use the key {clash[0]!r} themselves; keep it with --format tsv, "
                             "or rename the column")
        chunks = SentenceChunks(texts or [], input_file, input_format, column, kept)
        chunks.first()
        vae = load_model(model)
        import numpy as np

        rng = np.random.default_rng(seed)  # one stream across chunks: the draws do not depend on chunking
        key = "z" if sample else "mu"
        truncated = 0

        def encoded() -> Iterator[tuple[list[str], dict[str, list[Any]], np.ndarray, np.ndarray]]:
            nonlocal truncated
            for sentences, extra in chunks:
                enc = vae.posterior_of(sentences, refine)
                truncated += enc.truncated
                yield sentences, extra, enc.sample(seed=rng) if sample else enc.mu, enc.logvar

        def write(f: Any) -> None:
            if fmt in ("jsonl", "tsv"):  # streamed: each chunk is written (and flushed) once encoded
                for sentences, extra, vectors, logvar in encoded():
                    write_vectors(f, vectors, texts=sentences, fmt=fmt, logvar=logvar if with_logvar else None, key=key, extra=extra)
                    f.flush()
                return
            # npy and safetensors describe the whole array before its data: collected, then written.
            parts = list(encoded())
            all_texts = [t for sentences, _, _, _ in parts for t in sentences]
            logvar = np.concatenate([p[3] for p in parts]) if with_logvar else None
            write_vectors(f, np.concatenate([p[2] for p in parts]), texts=all_texts, fmt=fmt, logvar=logvar, key=key)

        if output is None:
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with atomic_open(output) as f:
                write(f)
        report_blank(chunks.blank)
        if truncated:
            err(f"warning: {truncated} sentence(s) longer than {vae.config.max_length} tokens were truncated")


def decode(
    input_file: Annotated[Optional[Path], typer.Option("--input", "-i", help="Vectors file (default: stdin).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="jsonl, tsv, npy or safetensors (default: detect).")] = None,
    beam: BeamOpt = DECODE_BEAM, rerank: RerankOpt = DECODE_RERANK, sample: SampleOpt = False, top_p: TopPOpt = 1.0,
    temperature: TempOpt = 1.0, no_repeat_ngram: NoRepeatOpt = 0, seed: SeedOpt = None, model: ModelOpt = None,
) -> None:
    """Latent vectors (any format `encode` writes) -> one sentence per line, written as each batch is decoded."""
    with handled():
        from vaecli.files.streaming import stream_chunks
        from vaecli.files.text import STDIN_NAME, check_text_file
        from vaecli.files.vector_reader import stream_vectors

        if fmt is not None:
            check_format(fmt)
        if input_file is not None and str(input_file) != "-":
            if not input_file.is_file():
                check_text_file(input_file)  # raises the right one-line error
            handle = open(input_file, "rb")
            chunks, ready, name = iter(lambda: handle.read(1 << 20), b""), (lambda: True), str(input_file)
        else:
            (chunks, ready), name = stream_chunks(sys.stdin.buffer), STDIN_NAME
        vae = load_model(model)
        vectors = stream_vectors(chunks, name, fmt, dim=vae.config.latent_dim, ready=ready)
        for texts in vae.decode_stream(vectors, beam=beam, sample=sample, top_p=top_p, temperature=temperature, seed=seed,
                                       no_repeat_ngram=no_repeat_ngram, rerank=rerank):
            out_lines(texts)


def sample(
    n: Annotated[int, typer.Option("-n", min=1, help="How many sentences.")] = 10,
    scale: Annotated[float, typer.Option("--scale", "-t", min=0.0, callback=finite, help="Prior scale t: the prior's spread times t.")] = 1.0,
    prior: Annotated[str, typer.Option(help="aggregate (a Gaussian fitted to the training sentences' encodings, saved with the model) "
                                            "or standard (N(0, I)).")] = "aggregate",
    beam: BeamOpt = 1, rerank: RerankOpt = DECODE_RERANK, sample_tokens: SampleOpt = False, top_p: TopPOpt = 1.0,
    temperature: TempOpt = 1.0, no_repeat_ngram: NoRepeatOpt = SAMPLE_NO_REPEAT_NGRAM, seed: SeedOpt = None, model: ModelOpt = None,
) -> None:
    """Decode n draws from the prior."""
    with handled():
        if prior not in ("aggregate", "standard"):
            raise InputError(f"--prior must be aggregate or standard, not {prior!r}")
        vae = load_model(model)
        if prior == "aggregate" and vae.aggregate_prior is None:
            err("note: this model has no aggregate prior (prior.safetensors; models trained before vaecli 0.2): sampling from N(0, I)")
        for texts in vae.decode_stream(vae.prior_batches(n, scale, seed, prior), beam=beam, sample=sample_tokens, top_p=top_p,
                                       temperature=temperature, seed=seed, no_repeat_ngram=no_repeat_ngram, rerank=rerank):
            out_lines(texts)


def interpolate(
    a: Annotated[str, typer.Argument(metavar="A", help="Start sentence.")],
    b: Annotated[str, typer.Argument(metavar="B", help="End sentence.")],
    steps: Annotated[int, typer.Option(min=2, max=MAX_STEPS, help="Points on the path, both ends included.")] = 5,
    slerp: Annotated[bool, typer.Option("--slerp", metavar=FLAG, help="Spherical instead of linear path.")] = False,
    beam: BeamOpt = DECODE_BEAM, rerank: RerankOpt = DECODE_RERANK, refine: RefineOpt = ENCODE_REFINE, model: ModelOpt = None,
) -> None:
    """Decode a path through latent space from A's encoding to B's."""
    with handled():
        check_sentences(A=a, B=b)
        vae = load_model(model)
        pieces = vae.path(a, b, steps, slerp, refine=refine)
        pieces = list(pieces) if sys.stdout.isatty() else pieces
        batches = vae.decode_stream((points for _, points in pieces), beam=beam, rerank=rerank)
        if not sys.stdout.isatty():
            for texts in batches:
                out_lines(texts)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("t", "sentence")
        for ti, text in zip((ti for t, _ in pieces for ti in t), (text for texts in batches for text in texts)):
            table.add_row(f"{ti:.2f}", text)
        Console(emoji=False).print(table)


def paraphrase(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The sentence.")],
    n: Annotated[int, typer.Option("-n", min=1, help="How many paraphrases (at most).")] = 5,
    scale: Annotated[float, typer.Option(min=0.0, callback=finite, help="How far from TEXT to draw: 1 is a quarter of the prior's spread.")] = 1.0,
    beam: BeamOpt = DECODE_BEAM, rerank: RerankOpt = DECODE_RERANK, sample_tokens: SampleOpt = False, top_p: TopPOpt = 1.0,
    temperature: TempOpt = 1.0, no_repeat_ngram: NoRepeatOpt = 0, seed: SeedOpt = None, refine: RefineOpt = 0,
    model: ModelOpt = None,
) -> None:
    """Distinct sentences decoded from around TEXT's encoding (TEXT itself left out), the nearest first."""
    with handled():
        check_sentences(TEXT=text)
        vae = load_model(model)
        found = vae.paraphrase(text, n, scale=scale, seed=seed, beam=beam, sample=sample_tokens, top_p=top_p, temperature=temperature,
                               no_repeat_ngram=no_repeat_ngram, rerank=rerank, refine=refine)
        if len(found) < n:
            err(f"found {len(found)} distinct paraphrase(s) of {n}; try a larger --scale")
        out_lines(found)


def steer(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The sentence to move.")],
    source: Annotated[Path, typer.Option("--from", help="Sentences with the attribute to move away from (a text file or a corpus).")],
    target: Annotated[Path, typer.Option("--to", help="Sentences with the attribute to move towards.")],
    alpha: Annotated[float, typer.Option(callback=finite, help="How far along mean(to) - mean(from).")] = 1.0,
    column: ColumnOpt = None,
    beam: BeamOpt = DECODE_BEAM, rerank: RerankOpt = DECODE_RERANK, refine: RefineOpt = ENCODE_REFINE, model: ModelOpt = None,
) -> None:
    """Move TEXT along the direction from the mean encoding of --from to that of --to."""
    with handled():
        check_sentences(TEXT=text)
        src, dst = read_sentences(source, column=column, option=None), read_sentences(target, column=column, option=None)
        vae = load_model(model)
        out_lines([vae.steer(text, src, dst, alpha, beam=beam, rerank=rerank, refine=refine)])


def analogy(
    a: Annotated[str, typer.Argument(metavar="A")], b: Annotated[str, typer.Argument(metavar="B")], c: Annotated[str, typer.Argument(metavar="C")],
    beam: BeamOpt = DECODE_BEAM, rerank: RerankOpt = DECODE_RERANK, refine: RefineOpt = ENCODE_REFINE, model: ModelOpt = None,
) -> None:
    """A is to B as C is to ...: decodes C + (B - A)."""
    with handled():
        check_sentences(A=a, B=b, C=c)
        vae = load_model(model)
        out_lines([vae.analogy(a, b, c, beam=beam, rerank=rerank, refine=refine)])
