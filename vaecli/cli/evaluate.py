"""`vae evaluate`: the metrics of vaecli.evaluation.evaluate, as a table on a terminal or one JSON object."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vaecli.cli.common import FLAG, BeamOpt, ColumnOpt, ModelOpt, RefineOpt, RerankOpt, err, handled, load_model, read_sentences
from vaecli.cli.progress import StageProgress
from vaecli.config import DECODE_BEAM, DECODE_RERANK, ENCODE_REFINE
from vaecli.errors import InputError


def evaluate(
    test_file: Annotated[Path, typer.Argument(metavar="TEST_FILE", help="Test sentences, one per line.")],
    iw_samples: Annotated[int, typer.Option(min=1, help="Importance samples for NLL and PPL (Optimus: 100).")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="Sentences per batch.")] = 32,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N sentences.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the z samples.")] = 0,
    no_bleu: Annotated[bool, typer.Option("--no-bleu", metavar=FLAG, help="Skip the reconstructions (BLEU, exact match).")] = False,
    beam: BeamOpt = DECODE_BEAM,
    rerank: RerankOpt = DECODE_RERANK,
    refine: RefineOpt = ENCODE_REFINE,
    as_json: Annotated[bool, typer.Option("--json", metavar=FLAG, help="One JSON object on stdout.")] = False,
    bf16: Annotated[str, typer.Option(help="bf16 autocast: auto (as finetune), yes or no.")] = "auto",
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0 = default; 1 is faster on a busy machine).")] = 0,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Format of TEST_FILE: txt, csv, tsv, jsonl, json, parquet or disk "
                                                                "\\[default: from its extension].")] = None,
    column: ColumnOpt = None,
    samples: Annotated[int, typer.Option(min=0, help="Prior samples (as `vae sample` draws them) and interpolation midpoints whose "
                                                     "fluency is measured (0 = skip).")] = 100,
    model: ModelOpt = None,
) -> None:
    """Rec, KL, -ELBO, IW-NLL, PPL, MI, AU, z-shuffle gap, token accuracy, reconstruction BLEU and exact match; fluency of
    reconstructions, prior samples and interpolation midpoints."""
    with handled():
        import json

        if bf16 not in ("auto", "yes", "no"):
            raise InputError("--bf16 must be auto, yes or no")
        texts = read_sentences(test_file, fmt, column)[:limit]
        vae = load_model(model)
        from vaecli.evaluation.evaluate import evaluate as run

        if threads:
            import torch

            torch.set_num_threads(threads)
        with StageProgress() as progress:
            result = run(vae, texts, iw_samples=iw_samples, batch_size=batch_size, seed=seed, bleu=not no_bleu, bf16=bf16, progress=progress,
                         samples=samples, beam=beam, rerank=rerank, refine=refine)
        if result["mi"] is None:
            err("note: MI, AU and the z-shuffle gap compare sentences: with 1 sentence they are not computable (n/a)")
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
            if key == "sample_fluency":
                unit = unit.replace("prior draws", f"draws of the {result['prior']} prior")
            if value is None:
                text = "n/a"
            elif key == "au":
                text = f"{value} / {result['latent_dim']}"
            elif isinstance(value, bool):
                text = "yes" if value else "no"
            else:
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
            rows.append((label, text, unit))
    return rows


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
    ("token_accuracy", "token accuracy", "teacher-forced from mu: target tokens that are the decoder's argmax"),
    ("token_accuracy_refined", "token accuracy, refined", "the same from the encoding `vae encode` gives (mu refined)"),
    ("beam", "beam", "beam width of the reconstructions from the encoding (1 = greedy)"),
    ("rerank", "rerank", "the encoder chose among the beam's hypotheses (--rerank)"),
    ("bleu", "BLEU", "reconstructions from the encoding, corpus BLEU-4 (sacrebleu, 13a tokenisation)"),
    ("exact_match", "exact match", "fraction of sentences"),
    ("fluency_inputs", "fluency: inputs", "NLL per token under the decoder alone (no z)"),
    ("fluency_reconstructions", "fluency: reconstructions", "the same, of the reconstructions"),
    ("words_inputs", "words: inputs", "mean whitespace words"),
    ("sample_fluency", "samples: fluency", "NLL per token of greedy decodes of prior draws (--samples)"),
    ("sample_at_limit", "samples: never ended", "fraction at the length limit"),
    ("sample_words", "samples: words", "mean whitespace words"),
    ("sample_distinct2", "samples: distinct-2", "distinct word bigrams / all"),
    ("midpoint_fluency", "midpoints: fluency", "NLL per token of greedy decodes of midpoints of random pairs"),
    ("midpoint_at_limit", "midpoints: never ended", "fraction at the length limit"),
    ("midpoint_words", "midpoints: words", "mean whitespace words"),
    ("midpoint_distinct2", "midpoints: distinct-2", "distinct word bigrams / all"),
]
