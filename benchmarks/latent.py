"""What makes the latent carry the words (issue 17): levers of the default pair at equal wall-clock, one table.

    python benchmarks/latent.py --minutes 15 --data wordnet              # every variant
    python benchmarks/latent.py --minutes 15 --data austen --only "today,best"
    python benchmarks/latent.py --minutes 15 --jobs 2                    # two training runs at a time, 1 thread each

"Equal wall-clock" as the project defines it: every variant's steps/s is measured first, side by side
in this process on an idle machine (--probe steps of each phase it trains, --threads threads), then
each trains for the steps that --minutes buy at its own speed. Quality depends on the steps, not on
the load, so the training runs may then go on two at a time (--jobs 2, one thread each) without
changing a number in the table. Each model is evaluated on the first --eval valid sentences (greedy
from mu): Rec, z-shuffle gap, teacher-forced token accuracy, BLEU, exact match, the fluency of the
reconstructions against the inputs' (NLL per token under the decoder alone), and --samples prior
samples from the aggregate posterior and from N(0, I) (fluency, share that never ended, distinct-2).
Every variant's JSON line (with ten reconstructions and five samples of each prior) is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from old_defaults import BEFORE_ISSUE_17  # benchmarks/ is on sys.path when a benchmark runs as a script

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# Today's defaults spelled out (latent 32, z from the last MiniLM layer, new layers at 10x the learning
# rate), so the table reproduces after the defaults change. Each variant changes what it names.
TODAY = dict(BEFORE_ISSUE_17, pooling="mean", prefix_slots=8)  # free bits act in phase 2 only: the phase-2 rows set theirs
VARIANTS: dict[str, dict[str, Any]] = {
    "today's default (latent 32, last layer, new layers x10)": dict(TODAY),
    "latent 64": dict(TODAY, latent_dim=64),
    "latent 128": dict(TODAY, latent_dim=128),
    "latent 256": dict(TODAY, latent_dim=256),
    "latent 128, mean of all layers": dict(TODAY, latent_dim=128, layers="mean"),
    "latent 128, learned mix of all layers": dict(TODAY, latent_dim=128, layers="mix"),
    "latent 128, mean of all layers, attention pooling (4 queries)": dict(TODAY, latent_dim=128, layers="mean", pooling="attention"),
    "latent 128, mean of all layers, new layers x3": dict(TODAY, latent_dim=128, layers="mean", new_lr_scale=3.0),
    "latent 256, mean of all layers, new layers x3": dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=3.0),
    "latent 512, mean of all layers, new layers x3": dict(TODAY, latent_dim=512, layers="mean", new_lr_scale=3.0),
    "latent 256, mean of all layers, new layers x1": dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=1.0),
    "latent 256, mean of all layers, new layers x3, bag-of-words 1": dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=3.0, bow=1.0),
    "latent 256, mean of all layers, new layers x3, 20% of the time in phase 2 (free bits 0.5)":
        dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=3.0, free_bits=0.5, phase2_share=0.2),
    "latent 256, mean of all layers, new layers x3, 20% in phase 2 with the decoder frozen, no deletion (free bits 0.5)":
        dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=3.0, free_bits=0.5, freeze_decoder_phase2=True, denoise=0.0, phase2_share=0.2),
    "latent 256, mean of all layers, new layers x3, 20% in phase 2 with the decoder frozen, no deletion, beta 0.2 (free bits 0.5)":
        dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=3.0, free_bits=0.5, freeze_decoder_phase2=True, denoise=0.0, beta_max=0.2,
             phase2_share=0.2),
}
# Round two, on top of the new default (latent 256, mean of all layers, new layers x3).
NEW = dict(TODAY, latent_dim=256, layers="mean", new_lr_scale=3.0)
VARIANTS.update({
    "new default + LoRA 16 on the decoder (adapters at the new layers' rate)": dict(NEW, lora=16),
    "new default + LoRA 64 on the decoder": dict(NEW, lora=64),
    "new default + batch 16": dict(NEW, batch_size=16),
    "new default + encoder at 3x (--lr 3e-4, new layers x1)": dict(NEW, lr=3e-4, new_lr_scale=1.0),
    "new default + 16 prefix slots": dict(NEW, prefix_slots=16),
    "new default + LoRA 16 + batch 16": dict(NEW, lora=16, batch_size=16),
    "new default + LoRA 16 + batch 16 + 16 prefix slots": dict(NEW, lora=16, batch_size=16, prefix_slots=16),
    "new default + LoRA 16 + batch 16 + encoder at 3x": dict(NEW, lora=16, batch_size=16, lr=3e-4, new_lr_scale=1.0),
})
# Round three, on top of the default of round two (LoRA 16 on the attention, batches of 16).
ROUND2 = dict(NEW, lora=16, batch_size=16)
VARIANTS.update({
    "round-two default (LoRA 16 on attention, batch 16)": dict(ROUND2),
    "round-two default + LoRA on every linear layer": dict(ROUND2, lora_targets="all"),
    "round-two default + write scale 0.3": dict(ROUND2, write_scale=0.3),
    "round-two default + new layers and adapters x5": dict(ROUND2, new_lr_scale=5.0),
    "round-two default + encoder tokens deleted 10%": dict(ROUND2, phase1_denoise=0.1),
    "round-two default, the decoder LM as encoder (--encoder decoder)": dict(ROUND2, encoder="decoder"),
})
# Round five, on top of round four's default (the decoder LM reads its own sentences with all its layers).
ROUND4 = dict(ROUND2, encoder="decoder")
VARIANTS.update({
    "round-four default + the LM reads with its first 10 layers": dict(ROUND4, reader_layers=10),
    "round-four default + new layers and adapters x5": dict(ROUND4, new_lr_scale=5.0),
    "round-four default + the LM reads with its first 10 layers, x5": dict(ROUND4, reader_layers=10, new_lr_scale=5.0),
})
# Round six: against the second pass memorised (training Rec far under valid), on 5,000 sentences seen 2.2 times.
VARIANTS.update({
    "round-four default + LoRA dropout 0.1": dict(ROUND4, lora_dropout=0.1),
    "round-four default + LoRA dropout 0.3": dict(ROUND4, lora_dropout=0.3),
    "round-four default + weight decay 0.1": dict(ROUND4, weight_decay=0.1),
    "round-four default, seed 43": dict(ROUND4, seed=43),  # how far a seed alone moves a row
})
WARM = 3  # probe steps left out of the speed
PAIR = ("He was tapping his fingers on the table impatiently", "The motor burns cleanly")


def config(name: str, steps1: int, steps2: int, data: Path, threads: int, valid: int, out: str) -> Any:
    from vaecli.config import TrainConfig

    settings = {k: v for k, v in VARIANTS[name].items() if k != "phase2_share"}
    both = steps2 > 0
    return TrainConfig(train_file=str(data / "train.txt"), valid_file=str(data / "valid.txt"), out=out, phase="both" if both else "1",
                       phase1_steps=steps1, phase2_steps=steps2, valid_every=10**6, save_every=10**6, valid_size=valid,
                       threads=threads, **settings)


def probe(name: str, steps: int, data: Path, threads: int) -> dict[str, float]:
    """Steady steps/s of each phase the variant trains, measured here: over the phase's steps after its first
    WARM ones (the first steps pay for allocations and kernel set-up, which a long run does not)."""
    from vaecli.training.trainer import finetune

    times: dict[int, list[float]] = {}

    def clock(event: dict[str, Any]) -> None:
        if event["kind"] == "step":
            times.setdefault(event["phase"], []).append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        share = VARIANTS[name].get("phase2_share", 0.0)
        finetune(config(name, steps, steps if share else 0, data, threads, 8, str(Path(tmp) / "probe")), clock)
    return {f"phase{p}": (len(t) - 1 - WARM) / (t[-1] - t[WARM]) for p, t in times.items()}


def job(name: str, steps1: int, steps2: int, data: Path, threads: int, n_eval: int, samples: int, out: Path) -> dict[str, Any]:
    """Train one variant, evaluate it, return its row (run in a subprocess of its own)."""
    import torch

    from vaecli.api import TextVAE
    from vaecli.evaluation.evaluate import evaluate
    from vaecli.evaluation.fluency import generated_quality
    from vaecli.files.text import read_lines
    from vaecli.inference.latent import prior
    from vaecli.training.trainer import finetune

    torch.set_num_threads(threads)
    started = time.perf_counter()
    finetune(config(name, steps1, steps2, data, threads, n_eval, str(out)))
    seconds = time.perf_counter() - started
    vae = TextVAE.from_pretrained(out)
    texts = read_lines(path=str(data / "valid.txt")).texts[:n_eval]
    m = evaluate(vae, texts, iw_samples=1, samples=samples, seed=0, beam=1, refine=0)
    standard_texts, standard = generated_quality(vae, prior(vae, samples, seed=0), no_repeat_ngram=4)
    aggregate_texts = vae.sample(5, seed=0)
    path = vae.interpolate(*PAIR, steps=5, beam=1, refine=0)
    return {"variant": name, "steps": [steps1, steps2], "train_seconds": round(seconds), **m,
            **{f"standard_{k}": v for k, v in standard.items()},
            "examples": list(zip(texts[:10], vae.decode(vae.encode(texts[:10], refine=0), beam=1))), "interpolation": path,
            "aggregate_samples": aggregate_texts, "standard_samples": standard_texts[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--threads", type=int, default=2, help="threads of the speed probe (the idle machine's cores)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time (each with threads / jobs threads)")
    parser.add_argument("--data", default="wordnet", help="a folder of ../shared/data (wordnet, austen), or the path of one holding train.txt and valid.txt")
    parser.add_argument("--eval", type=int, default=300)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--probe", type=int, default=12)
    parser.add_argument("--only", default="", help="variant names, or prefixes of names, separated by ';' (the names hold commas)")
    parser.add_argument("--speeds", default="", help="a JSON file of steps/s per variant from an earlier probe (skips the probe)")
    parser.add_argument("--job", default="", help=argparse.SUPPRESS)
    parser.add_argument("--steps", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = DATA / args.data
    if args.job:  # one training run, in its own process
        s1, s2 = map(int, args.steps.split(","))
        print(json.dumps(job(args.job, s1, s2, data, args.threads, args.eval, args.samples, Path(args.out))), flush=True)
        return

    wanted = [o.strip() for o in args.only.split(";") if o.strip()]  # a whole name picks that variant alone, else a prefix
    chosen = [n for n in VARIANTS if not wanted or any(n == o or (o not in VARIANTS and n.startswith(o)) for o in wanted)]
    speeds = json.loads(Path(args.speeds).read_text()) if args.speeds else {}
    for name in chosen:
        if name not in speeds:
            speeds[name] = probe(name, args.probe, data, args.threads)
            print(json.dumps({"probe": name, "steps_per_s": speeds[name]}), flush=True)
    plans = {}
    for name in chosen:
        share = VARIANTS[name].get("phase2_share", 0.0)
        seconds = args.minutes * 60
        s1 = max(3, int(speeds[name]["phase1"] * seconds * (1 - share)))
        s2 = int(speeds[name].get("phase2", 0) * seconds * share)
        plans[name] = (s1, s2)
    threads = max(1, args.threads // args.jobs)

    def run(name: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--job", name, "--steps", ",".join(map(str, plans[name])), "--data", args.data,
                   "--threads", str(threads), "--eval", str(args.eval), "--samples", str(args.samples), "--out", str(Path(tmp) / "run")]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                return {"variant": name, "error": done.stderr[-2000:]}
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            return row

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run, chosen))
    print(f"\nMiniLM + SmolLM2 on {args.data}, {args.minutes:g} minutes of {args.threads} idle thread(s) per variant (steps from the "
          f"side-by-side probe), first {args.eval} valid sentences, greedy from mu; samples: {args.samples} greedy decodes of prior draws\n")
    print("| variant | steps | Rec | gap | token acc | BLEU | exact | fluency: inputs / reconstructions | aggregate-prior samples: "
          "fluency / never ended / distinct-2 | N(0, I) samples: fluency / never ended |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | failed: {r['error'].strip().splitlines()[-1][:80]} |")
            continue
        steps = f"{r['steps'][0]}" + (f" + {r['steps'][1]}" if r["steps"][1] else "")
        print(f"| {r['variant']} | {steps} | {r['rec']:.1f} | {r['shuffle_gap']:.1f} | {r['token_accuracy']:.1%} | {r['bleu']:.1f} | "
              f"{r['exact_match']:.1%} | {r['fluency_inputs']:.2f} / {r['fluency_reconstructions']:.2f} | {r['sample_fluency']:.2f} / "
              f"{r['sample_at_limit']:.0%} / {r['sample_distinct2']:.2f} | {r['standard_fluency']:.2f} / {r['standard_at_limit']:.0%} |")


if __name__ == "__main__":
    main()
