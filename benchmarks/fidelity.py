"""Which settings make reconstructions word-faithful fastest: phase 1 of the default pair at equal wall-clock.

    python benchmarks/fidelity.py --minutes 8                       # every variant, 2 threads, idle machine
    python benchmarks/fidelity.py --minutes 8 --only "default,8 prefix slots"

levers.py asks whether the decoder reads z at all; this asks how fast z comes to carry the words.
Each variant starts from the defaults of MiniLM + SmolLM2 (frozen decoder, calibration, both
injections) and changes one thing. "Equal wall-clock" as DEVELOPERS.md defines it: every variant's
steps/s is measured first, side by side in this process (--probe steps each), then each trains
phase 1 (beta 0) for the steps that --minutes buy at its own speed, and is evaluated on the first
--eval valid sentences: Rec, the z-shuffle gap, greedy-from-mu BLEU and exact match. Run it on an
idle machine: the probe ratios are only fair when nothing else competes for the cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from old_defaults import BEFORE_ISSUE_17  # benchmarks/ is on sys.path when a benchmark runs as a script

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# Measured from the defaults of the time, which had 1 prefix slot: each variant spells its slots out,
# so the README's tables reproduce now that 8 slots are the default.
THEN = BEFORE_ISSUE_17  # the other defaults of the time, spelled out
VARIANTS = {
    "default (1 prefix slot, batch 32, lr 1e-4)": dict(prefix_slots=1),
    "8 prefix slots": dict(prefix_slots=8),
    "lr 3e-4": dict(prefix_slots=1, lr=3e-4),
    "batch 8": dict(prefix_slots=1, batch_size=8),
    "LoRA rank 16 on the decoder": dict(prefix_slots=1, lora=16),
    "8 prefix slots + LoRA rank 16": dict(prefix_slots=8, lora=16),
}


def run(name: str, steps: int, data: Path, threads: int, valid: int, out: str) -> Any:
    from vaecli.config import TrainConfig
    from vaecli.training.trainer import finetune

    cfg = TrainConfig(train_file=str(data / "train.txt"), valid_file=str(data / "valid.txt"), out=out, phase="1",
                      phase1_steps=steps, valid_every=10**6, save_every=10**6, valid_size=valid, threads=threads,
                      **{**THEN, **VARIANTS[name]})
    return finetune(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default="wordnet")
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--probe", type=int, default=6)
    parser.add_argument("--only", default="", help="comma-separated variant names (prefixes)")
    args = parser.parse_args()

    from vaecli.api import TextVAE
    from vaecli.evaluation.evaluate import evaluate
    from vaecli.files.text import read_lines

    data = DATA / args.data
    chosen = [n for n in VARIANTS if not args.only or any(n.startswith(o.strip()) for o in args.only.split(","))]
    speeds = {}
    for name in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            out = run(name, args.probe, data, args.threads, 8, str(Path(tmp) / "probe"))
            speeds[name] = json.loads((out / "training.json").read_text())["resolved"]["steps_per_second"]["phase1"]
        print(json.dumps({"probe": name, "steps_per_s": speeds[name]}), flush=True)
    texts = read_lines(path=str(data / "valid.txt")).texts[: args.eval]
    rows = []
    for name in chosen:
        steps = max(3, int(speeds[name] * args.minutes * 60))
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            out = run(name, steps, data, args.threads, args.eval, str(Path(tmp) / "run"))
            seconds = time.perf_counter() - started
            vae = TextVAE.from_pretrained(out)
            m = evaluate(vae, texts, iw_samples=1, beam=1, refine=0)
            examples = list(zip(texts[:3], vae.decode(vae.encode(texts[:3], refine=0), beam=1)))
        rows.append((name, steps, seconds, m))
        print(json.dumps({"variant": name, "steps": steps, "seconds": seconds, **m, "examples": examples}), flush=True)
    print(f"\nphase 1 of MiniLM + SmolLM2 on {args.data}, {args.minutes:g} minutes of {args.threads} thread(s) per variant "
          f"(steps from the side-by-side probe), first {args.eval} valid sentences\n")
    print("| variant | steps/s | steps | Rec | shuffle gap | BLEU | exact |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, steps, _, m in rows:
        print(f"| {name} | {speeds[name]:.2f} | {steps} | {m['rec']:.2f} | {m['shuffle_gap']:.2f} | {m['bleu']:.2f} | {m['exact_match']:.3f} |")


if __name__ == "__main__":
    main()
