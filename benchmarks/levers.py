"""Which levers make a pretrained causal-LM decoder read z: short runs side by side, one variant at a time.

    python benchmarks/levers.py --steps 60 --threads 1            # phase 1 only, every lever
    python benchmarks/levers.py --steps 60 --only "decoder trained,frozen decoder ("   # a subset (name prefixes)

Each variant finetunes MiniLM + SmolLM2 (the embedded pair) on WordNet for --steps phase-1 steps
(beta 0: an autoencoder, so the question is only whether the decoder uses z), batch 32, from the
causal-LM defaults with the decoder trained (BASE) plus the variant's change, then
`vae evaluate` on the first --eval valid sentences: Rec, the z-shuffle gap (Rec with another
sentence's z minus Rec with its own: 0 = z ignored), greedy-from-mu BLEU and exact match. steps/s is
measured in the same process, so the variants compare at equal wall-clock by ratio.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from old_defaults import BEFORE_ISSUE_17  # benchmarks/ is on sys.path when a benchmark runs as a script

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# The causal defaults of the time (latent 32 from the last layer, 1 prefix slot, free bits 3), spelled out so the README's table reproduces.
BASE = dict(BEFORE_ISSUE_17, phase="1", injection="both", init_logvar=-6.0, freeze_decoder=False, calibrate=True, prefix_slots=1)
VARIANTS = {
    "decoder trained in phase 1": {},
    "frozen decoder (the default)": dict(freeze_decoder=True),
    "no calibration": dict(calibrate=False),
    "z noisy at start (init logvar 0)": dict(init_logvar=0.0),
    "new layers at lr x1": dict(new_lr_scale=1.0),
    "word dropout 0.3": dict(word_dropout=0.3),
    "bag-of-words loss 1": dict(bow=1.0),
    "frozen decoder + bag-of-words + word dropout": dict(freeze_decoder=True, bow=1.0, word_dropout=0.3),
    "prefix only": dict(injection="prefix"),
    "embedding only": dict(injection="embedding"),
    "4 prefix slots": dict(prefix_slots=4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="wordnet")
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated variant names (prefixes)")
    args = parser.parse_args()

    import torch

    from vaecli.api import TextVAE
    from vaecli.config import TrainConfig
    from vaecli.evaluation.evaluate import evaluate
    from vaecli.files.text import read_lines
    from vaecli.training.trainer import finetune

    torch.set_num_threads(args.threads)
    chosen = [n for n in VARIANTS if not args.only or any(n.startswith(o.strip()) for o in args.only.split(","))]
    texts = read_lines(path=str(DATA / args.data / "valid.txt")).texts[: args.eval]
    rows = []
    for name in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(train_file=str(DATA / args.data / "train.txt"), valid_file=str(DATA / args.data / "valid.txt"),
                              out=str(Path(tmp) / "run"), phase1_steps=args.steps, valid_every=args.steps, save_every=args.steps,
                              valid_size=args.eval, threads=args.threads, **{**BASE, **VARIANTS[name]})
            started = time.perf_counter()
            out = finetune(cfg)
            seconds = time.perf_counter() - started
            speed = json.loads((out / "training.json").read_text())["resolved"]["steps_per_second"]["phase1"]
            vae = TextVAE.from_pretrained(out)
            m = evaluate(vae, texts, iw_samples=1, beam=1, refine=0)
            sample = vae.decode(vae.encode(texts[:3], refine=0), beam=1)
            rows.append((name, speed, seconds, m))
            print(json.dumps({"variant": name, "steps_per_s": speed, "seconds": seconds, **m, "examples": list(zip(texts[:3], sample))}), flush=True)
    base = rows[0][1] if rows else 1.0
    print(f"\n{args.steps} phase-1 steps, batch 32, {args.data}, first {args.eval} valid sentences, {args.threads} thread(s)\n")
    print("| variant | steps/s ratio | Rec | shuffle gap | gap / Rec | BLEU | exact |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, speed, _, m in rows:
        gap = m["shuffle_gap"]
        print(f"| {name} | {speed / base:.2f} | {m['rec']:.2f} | {gap:.2f} | {gap / m['rec']:.2f} | {m['bleu']:.1f} | {m['exact_match']:.3f} |")


if __name__ == "__main__":
    main()
