"""The options of every benchmark that scores a trained model on held-out sentences (beam.py, guidance.py, paraphrase.py,
rerank.py, token_errors.py and identity_path.py): the model, the sentences and how many of them."""

from __future__ import annotations

import argparse


def held_out_parser(doc: str, limit: int = 300) -> argparse.ArgumentParser:
    """A parser described by `doc`'s first line, with --model, --test and --limit; a benchmark adds its own options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--test", required=True, help="sentences, one per line")
    parser.add_argument("--limit", type=int, default=limit)
    return parser
