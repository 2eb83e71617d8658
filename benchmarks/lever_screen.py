"""What the screens of levers that are not options of `vae finetune` share (`repeat_deletion.py`, `vocab_bias.py`).

Each (variant, seed) trains the default in a fresh process (the lever set or patched in there, never in this one), then is
evaluated as `vae evaluate --iw-samples 1 --samples 20` on the first `--limit` sentences of `--test`; the parent
prints one table row per run as it ends, seeds outermost. Run them on an idle machine, one at a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = {"rec": "Rec", "shuffle_gap": "shuffle gap", "token_accuracy": "token accuracy", "bleu": "BLEU", "exact_match": "exact",
           "fluency_reconstructions": "fluency of the reconstructions", "sample_fluency": "aggregate-prior samples' fluency"}


def arguments(doc: str, variants: str, default_variants: str) -> argparse.Namespace:
    """The options every screen takes, and `--VARIANTS` (a list: comma-separated, unless the screen passes `table` another `sep`)
    for its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--train", required=True, help="training sentences, one per line")
    parser.add_argument("--valid", default=str(ROOT / "examples" / "wordnet" / "valid.txt"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "data" / "wordnet" / "valid.txt"))
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--steps", type=int, default=460)
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--keep", metavar="DIR", help="keep each run's model in DIR/m<variant>_<seed> (default: a temporary folder, deleted at the end)")
    parser.add_argument(f"--{variants}", dest="variants", default=default_variants)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def train_and_evaluate(args: argparse.Namespace, **settings: object) -> None:
    """In a child: phase 1 of the default (with `settings`, TrainConfig fields), `--steps` steps on `--train` with the
    child's seed; prints the metrics as JSON."""
    import torch

    from vaecli.api import TextVAE
    from vaecli.config import TrainConfig
    from vaecli.evaluation.evaluate import evaluate
    from vaecli.files.text import read_lines
    from vaecli.training import trainer

    torch.set_num_threads(2)
    run = {"phase1_steps": args.steps, **settings}  # a variant may set its own steps (equal wall-clock at another batch size)
    cfg = TrainConfig(train_file=args.train, valid_file=args.valid, out=args.out, valid_every=10**6, save_every=10**6,
                      seed=int(args.child[1]), threads=2, **run)
    started = time.perf_counter()
    trainer.finetune(cfg, overwrite=True)
    seconds = time.perf_counter() - started
    vae = TextVAE.from_pretrained(args.out)
    m = evaluate(vae, read_lines(path=args.test).texts[: args.limit], iw_samples=1, samples=20, seed=0, refine=0)
    print(json.dumps({"train_s": round(seconds), **{k: m[k] for k in COLUMNS}}))


def table(script: str, args: argparse.Namespace, header: str, label: Callable[[str], str], sep: str = ",") -> None:
    """Run every (variant, seed) of `args` as a child of `script`, one after the other, printing a row as each ends; `sep`
    separates the variants in `args.variants`."""
    print(f"{args.steps} steps of 16 (unless a variant sets phase1_steps, batch_size) on {args.train}; first {args.limit} sentences of "
          f"{args.test}\n")
    print(f"| {header} | seed | " + " | ".join(COLUMNS.values()) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        for seed in args.seeds.split(","):
            for variant in args.variants.split(sep):
                cmd = [sys.executable, script, "--train", args.train, "--valid", args.valid, "--test", args.test, "--limit", str(args.limit),
                       "--steps", str(args.steps), "--child", variant, seed, "--out", str(Path(tmp) / f"m{variant}_{seed}")]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{variant} seed {seed} failed:\n{done.stderr[-2000:]}")
                m = json.loads(done.stdout.strip().splitlines()[-1])
                cells = [f"{100 * m[k]:.1f}%" if k in ("token_accuracy", "exact_match") else f"{m[k]:.2f}" for k in COLUMNS]
                print(f"| {label(variant)} | {seed} | " + " | ".join(cells) + " |", flush=True)
