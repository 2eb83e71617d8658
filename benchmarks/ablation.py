"""The paper's central claim at equal budget: two phases vs. phase 2 only vs. no free bits vs. no denoising.

    python benchmarks/ablation.py                                   # MiniLM on ../shared/data/wordnet
    python benchmarks/ablation.py --data austen --steps 100         # the Austen novels
    python benchmarks/ablation.py --steps 2000 --jobs 1             # a longer budget

Every variant gets the same total number of optimizer steps (2 x --steps: phase 1 + phase 2, or all
of it in phase 2), the same seed, data and batch; each runs `vae finetune` then `vae evaluate` on the
validation file (first --eval-n sentences) in its own process, one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

VARIANTS = {
    "two phases (default: free bits 0.5, denoise 0.15)": [],
    "phase 2 only": ["--phase", "2"],
    "no free bits": ["--free-bits", "0"],
    "no denoising": ["--denoise", "0"],
}


def run(name: str, extra: list[str], args: argparse.Namespace, workdir: Path) -> dict:
    out = workdir / name.split(" (")[0].replace(" ", "-")
    steps = ["--phase2-steps", str(2 * args.steps)] if "--phase" in extra else ["--phase1-steps", str(args.steps), "--phase2-steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    train = [sys.executable, "-m", "vaecli", "finetune", str(args.train), "--valid", str(args.valid), "--model", args.model, "--out", str(out),
             *steps, "--batch-size", str(args.batch_size), "--valid-every", str(10**9), "--save-every", str(10**9), "--valid-size", "500",
             "--threads", "1", "--seed", "0", *extra]
    subprocess.run(train, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    evaluate = [sys.executable, "-m", "vaecli", "evaluate", str(args.valid), "--model", str(out), "--iw-samples", str(args.iw_samples),
                "--limit", str(args.eval_n), "--refine", "0", "--json"]
    result = json.loads(subprocess.run(evaluate, check=True, env=env, capture_output=True, text=True).stdout)
    return {"name": name, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="wordnet", help="a folder of ../shared/data")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--steps", type=int, default=150, help="steps per phase (phase-2-only runs twice this)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-n", type=int, default=500)
    parser.add_argument("--iw-samples", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    args.train, args.valid = DATA / args.data / "train.txt", DATA / args.data / "valid.txt"
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda item: run(item[0], item[1], args, Path(tmp)), VARIANTS.items()))
    print(f"{args.model} on {args.data}: {2 * args.steps} steps in all, batch {args.batch_size}; evaluated on the first "
          f"{args.eval_n} lines of {args.data}/valid.txt, NLL with {args.iw_samples} importance samples")
    print("| variant | Rec | KL | -ELBO | NLL | PPL | MI | AU | shuffle gap | BLEU | exact |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['rec']:.2f} | {r['kl']:.2f} | {r['elbo']:.2f} | {r['nll']:.2f} | {r['ppl']:.1f} | {r['mi']:.2f} | "
              f"{r['au']} | {r['shuffle_gap']:.2f} | {r['bleu']:.1f} | {r['exact_match']:.3f} |")


if __name__ == "__main__":
    main()
