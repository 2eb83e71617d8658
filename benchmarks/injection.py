"""Injection modes side by side at equal budget: steps/s and validation Rec, KL, AU, MI, shuffle gap.

    python benchmarks/injection.py                       # MiniLM on ../shared/data/wordnet, 100+100 steps
    python benchmarks/injection.py --steps 300 --jobs 2  # longer; two runs at a time, one thread each

Each mode runs `vae finetune` in its own process (one torch thread each, so parallel jobs do not
oversubscribe the cores) with the same seed, data and budget; the table compares the final
validation. Ratios of steps/s are comparable within one run only: these machines are noisy.
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
DATA = ROOT.parent / "shared" / "data" / "wordnet"


def run(mode: str, args: argparse.Namespace, workdir: Path) -> dict:
    out = workdir / mode
    cmd = [
        sys.executable, "-m", "vaecli", "finetune", str(args.train), "--valid", str(args.valid), "--model", args.model,
        "--out", str(out), "--injection", mode, "--phase1-steps", str(args.steps), "--phase2-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--valid-every", str(10**9), "--save-every", str(10**9),
        "--valid-size", str(args.valid_size), "--threads", "1", "--seed", "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if r["kind"] == "valid"][-1]
    speed = json.loads((out / "training.json").read_text())["resolved"]["steps_per_second"]
    return {"mode": mode, "steps_per_s": speed["phase2"], **{k: final[k] for k in ("rec", "kl", "elbo", "au", "mi", "gap")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train", type=Path, default=DATA / "train.txt")
    parser.add_argument("--valid", type=Path, default=DATA / "valid.txt")
    parser.add_argument("--steps", type=int, default=100, help="steps per phase")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--valid-size", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--modes", default="memory,prefix,embedding")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda m: run(m, args, Path(tmp)), args.modes.split(",")))
    base = rows[0]["steps_per_s"]
    print(f"model {args.model}, {args.steps}+{args.steps} steps, batch {args.batch_size}, valid {args.valid_size} sentences of {args.valid.name}")
    print("| injection | steps/s ratio | Rec | KL | -ELBO | AU | MI | shuffle gap |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['mode']} | {r['steps_per_s'] / base:.2f} | {r['rec']:.2f} | {r['kl']:.2f} | {r['elbo']:.2f} | {r['au']} "
              f"| {r['mi']:.2f} | {r['gap']:.2f} |")


if __name__ == "__main__":
    main()
