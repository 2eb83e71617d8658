"""Steps per second of `vae finetune` settings, side by side: what a variant's step costs against the default's.

    python benchmarks/settings_speed.py --variants "default;reader_echo=on" --rounds 2 --steps 60

`--variants` as in benchmarks/settings_screen.py (`default`, or `field=value` pairs of `vaecli.config.TrainConfig`, `;` between
variants). Each variant runs the default's own loop (batches of 16 of examples/wordnet/train-10k.txt) in a fresh process,
the variants alternating for `--rounds` rounds; steps/s is timed from the step after `--warm` to the last, and the table
gives each variant's median and its ratio to the first variant's. Run it on an idle machine: a second job on the two
cores makes every number meaningless.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from settings_screen import check, settings_of  # benchmarks/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parent.parent


def child(variant: str, steps: int, warm: int, train: str) -> None:
    """One variant's run: prints {"steps_per_s": ...} as its last line."""
    import torch

    from vaecli.config import TrainConfig
    from vaecli.training import trainer

    torch.set_num_threads(2)
    times: list[float] = []

    def clock(event: dict) -> None:
        if event["kind"] == "step":
            times.append(time.perf_counter())
            if len(times) == steps:
                raise KeyboardInterrupt

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(train_file=train, out=str(Path(tmp) / "m"), phase1_steps=10 * steps, valid_every=10**6, save_every=10**6,
                          threads=2, **settings_of(variant))
        try:
            trainer.finetune(cfg, clock)
        except KeyboardInterrupt:
            pass
    print(json.dumps({"steps_per_s": (len(times) - 1 - warm) / (times[-1] - times[warm])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="default;reader_echo=on")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--train", default=str(ROOT / "examples/wordnet/train-10k.txt"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.warm, args.train)
        return
    variants = args.variants.split(";")
    check(variants, args.train)
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            out = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--warm", str(args.warm),
                                  "--train", args.train], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-2000:]}")
            speeds[name].append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])
            print(f"{name}: {speeds[name][-1]:.3f} steps/s", file=sys.stderr, flush=True)
    base = statistics.median(speeds[variants[0]])
    print(f"\n{args.steps} steps of batches of 16, the first {args.warm} untimed, medians of {args.rounds} rounds\n")
    print(f"| settings | steps/s | x {variants[0]} |")
    print("| --- | --- | --- |")
    for name, values in speeds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
