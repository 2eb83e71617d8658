"""The default's training step on a CPU in bf16: the attention kernel and the AdamW implementation, side by side.

    python benchmarks/step.py --rounds 2 --steps 60

Four variants of `vae finetune`'s own loop (the default: SmolLM2 reading and writing its own sentences, batches of 16 of
examples/wordnet/train-10k.txt, bf16 autocast), each in a fresh process, one after the other, `--rounds` times
alternating; steps/s is timed from the step after `--warm` to the last, and the table gives each variant's median.
"before" is how the loop ran until the change (PyTorch's choice of attention kernel, the CPU flash kernel, and AdamW's
per-tensor loop); "today" is `vaecli.modeling.precision.training_attention` (the math kernel where a backward follows)
with a fused AdamW. Run it on an idle machine: a second job on the two cores makes every number meaningless.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

VARIANTS = {
    "before: flash attention, AdamW per-tensor loop": (False, False),
    "math attention where a backward follows, AdamW loop": (True, False),
    "flash attention, fused AdamW": (False, True),
    "today: math attention, fused AdamW": (True, True),
}
ROOT = Path(__file__).resolve().parent.parent


def child(name: str, steps: int, warm: int, train: str) -> None:
    """One variant's run: prints {"steps_per_s": ...} as its last line."""
    import torch

    import vaecli.training.trainer as trainer
    from vaecli.config import TrainConfig

    math_attention, fused = VARIANTS[name]
    if not math_attention:
        trainer.training_attention = lambda *args: nullcontext()
    if not fused:
        class LoopAdamW(torch.optim.AdamW):
            def __init__(self, *args, fused=None, **kwargs):
                super().__init__(*args, fused=False, foreach=False, **kwargs)

        torch.optim.AdamW = LoopAdamW
    times: list[float] = []

    def clock(event: dict) -> None:
        if event["kind"] == "step":
            times.append(time.perf_counter())
            if len(times) == steps:
                raise KeyboardInterrupt

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(train_file=train, out=str(Path(tmp) / "m"), phase1_steps=10 * steps, valid_every=10**6, save_every=10**6,
                          threads=2)
        try:
            trainer.finetune(cfg, clock)
        except KeyboardInterrupt:
            pass
    print(json.dumps({"steps_per_s": (len(times) - 1 - warm) / (times[-1] - times[warm])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--train", default=str(ROOT / "examples/wordnet/train-10k.txt"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.warm, args.train)
        return
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--warm", str(args.warm),
                                  "--train", args.train], capture_output=True, text=True, check=True)
            speeds[name].append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])
            print(f"{name}: {speeds[name][-1]:.3f} steps/s", file=sys.stderr, flush=True)
    base = statistics.median(speeds[next(iter(VARIANTS))])
    print(f"\n{args.steps} steps of batches of 16, the first {args.warm} untimed, medians of {args.rounds} rounds\n")
    print("| variant | steps/s | x before |")
    print("| --- | --- | --- |")
    for name, values in speeds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
