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


def steps_per_second(steps: int, warm: int, train: str, **settings: object) -> float:
    """`vae finetune`'s loop with `settings` (TrainConfig fields), stopped after `steps` steps; timed from the step after `warm`."""
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
                          threads=2, **settings)
        try:
            trainer.finetune(cfg, clock)
        except KeyboardInterrupt:
            pass
    return (len(times) - 1 - warm) / (times[-1] - times[warm])


def compare(script: str, variants: list[str], args: argparse.Namespace, first: str = "") -> None:
    """Each variant as `script --child VARIANT` (which prints {"steps_per_s": ...} last), alternating for `args.rounds`
    rounds; prints each variant's median and its ratio to the first's (`first` names it in the header; default, its name)."""
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            out = subprocess.run([sys.executable, script, "--child", name, "--steps", str(args.steps), "--warm", str(args.warm),
                                  "--train", args.train], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-2000:]}")
            speeds[name].append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])
            print(f"{name}: {speeds[name][-1]:.3f} steps/s", file=sys.stderr, flush=True)
    base = statistics.median(speeds[variants[0]])
    print(f"\n{args.steps} steps of batches of 16, the first {args.warm} untimed, medians of {args.rounds} rounds\n")
    print(f"| variant | steps/s | x {first or variants[0]} |")
    print("| --- | --- | --- |")
    for name, values in speeds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


def options(doc: str, variants: str | None) -> argparse.Namespace:
    """The options of a speed comparison (and `--variants`, when `variants` gives its default)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if variants is not None:
        parser.add_argument("--variants", default=variants)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--train", default=str(ROOT / "examples/wordnet/train-10k.txt"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = options(__doc__, "default;reader_echo=on")
    if args.child:
        print(json.dumps({"steps_per_s": steps_per_second(args.steps, args.warm, args.train, **settings_of(args.child))}))
        return
    variants = args.variants.split(";")
    check(variants, args.train)
    compare(__file__, variants, args)


if __name__ == "__main__":
    main()
