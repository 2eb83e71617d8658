"""Backbones and KL settings at equal wall-clock, on WordNet and Austen (issue 10's comparison).

    python benchmarks/compare.py --minutes 30 --data wordnet            # every variant
    python benchmarks/compare.py --minutes 60 --data austen --only smollm2-both,minilm-bert2bert

"Equal wall-clock": each variant's steps/s is measured first, side by side in this process (--probe
steps each), then each trains for the steps that --minutes buy at its own speed (one third phase 1,
two thirds phase 2), and is evaluated on the first --eval valid sentences: Rec, KL, MI, AU, shuffle
gap, BLEU and exact match (greedy from mu), NLL (10 importance samples), ten prior samples (counted:
distinct ones, mean length), ten reconstructions and one
interpolation. Run it on an idle machine, one variant at a time (it does so itself).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from old_defaults import BEFORE_ISSUE_17  # benchmarks/ is on sys.path when a benchmark runs as a script

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# The SmolLM2 rows use 1 prefix slot, as when the README's table was measured; the 8-slot default
# (benchmarks/fidelity.py) is its own row.
THEN = BEFORE_ISSUE_17  # the causal defaults of the time, spelled out
VARIANTS = {
    # the encoder-decoder family at its best learning rate (README: 1e-4; 2e-4 collapsed mu on 600 sentences)
    "minilm-bert2bert": dict(model="minilm", lr=1e-4),
    "smollm2-prefix": dict(THEN, injection="prefix", prefix_slots=1),
    "smollm2-embedding": dict(THEN, injection="embedding"),
    "smollm2-both": dict(THEN, injection="both", prefix_slots=1),
    "smollm2-both-freebits-0.5": dict(THEN, injection="both", prefix_slots=1, free_bits=0.5),
    "smollm2-both-freebits-6": dict(THEN, injection="both", prefix_slots=1, free_bits=6.0),
    "smollm2-both-8-prefix-slots": dict(THEN, injection="both", prefix_slots=8),
}
PAIR = ("the old house", "she soaks up foreign languages like a sponge")
SAMPLES = 10  # prior samples per variant: the table counts distinct ones and their mean length in words


def steps_per_second(cfg_args: dict, data: Path, probe: int, threads: int) -> float:
    from vaecli.config import TrainConfig
    from vaecli.training.trainer import finetune

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(train_file=str(data / "train.txt"), valid_file=str(data / "valid.txt"), out=str(Path(tmp) / "probe"),
                          phase1_steps=probe, phase2_steps=probe, valid_every=10**6, save_every=10**6, valid_size=8, threads=threads, **cfg_args)
        out = finetune(cfg)
        speeds = json.loads((out / "training.json").read_text())["resolved"]["steps_per_second"]
        return 2 / (1 / speeds["phase1"] + 1 / speeds["phase2"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--data", default="wordnet", choices=["wordnet", "austen"])
    parser.add_argument("--eval", type=int, default=500)
    parser.add_argument("--probe", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--only", default="")
    args = parser.parse_args()

    from vaecli.api import TextVAE
    from vaecli.config import TrainConfig
    from vaecli.evaluation.evaluate import evaluate
    from vaecli.files.text import read_lines
    from vaecli.training.trainer import finetune

    data = DATA / args.data
    chosen = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    speeds = {n: steps_per_second(VARIANTS[n], data, args.probe, args.threads) for n in chosen}
    texts = read_lines(path=str(data / "valid.txt")).texts[: args.eval]
    rows = []
    for name in chosen:
        steps = max(3, int(speeds[name] * args.minutes * 60))
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(train_file=str(data / "train.txt"), valid_file=str(data / "valid.txt"), out=str(Path(tmp) / "run"),
                              phase1_steps=steps // 3, phase2_steps=steps - steps // 3, valid_every=max(1, steps // 6),
                              save_every=max(1, steps // 6), valid_size=300, threads=args.threads, **VARIANTS[name])
            started = time.perf_counter()
            out = finetune(cfg)
            vae = TextVAE.from_pretrained(out)
            m = evaluate(vae, texts, iw_samples=10, beam=1, refine=0)
            example = {
                "reconstructions": list(zip(texts[:10], vae.decode(vae.encode(texts[:10], refine=0), beam=1))),
                "interpolation": vae.interpolate(*PAIR, steps=5, refine=0),
                "samples": vae.sample(SAMPLES, seed=0),
            }
            rows.append((name, speeds[name], steps, time.perf_counter() - started, m, example["samples"]))
            print(json.dumps({"variant": name, "steps_per_s": speeds[name], "steps": steps, **m, **example}), flush=True)
    print(f"\n{args.minutes:g} minutes per variant, {args.data}, first {args.eval} valid sentences\n")
    print("| variant | steps/s | steps | Rec | KL | NLL | MI | AU | shuffle gap | BLEU | exact | prior samples: distinct, mean words |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, speed, steps, _, m, samples in rows:
        words = sum(len(s.split()) for s in samples) / len(samples)
        print(f"| {name} | {speed:.2f} | {steps} | {m['rec']:.1f} | {m['kl']:.1f} | {m['nll']:.1f} | {m['mi']:.2f} | {m['au']} / {m['latent_dim']} | "
              f"{m['shuffle_gap']:.2f} | {m['bleu']:.2f} | {m['exact_match']:.3f} | {len(set(samples))} / {len(samples)}, {words:.0f} |")


if __name__ == "__main__":
    main()
