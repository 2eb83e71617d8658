"""Time per epoch and peak RSS of `vae finetune` as the corpus grows (10k, 100k, 1M lines).

    python benchmarks/scaling.py                      # tiny random T5, WordNet lines repeated
    python benchmarks/scaling.py --sizes 10000,100000 # a quicker look

The backbone is a tiny random T5 (vocab 120, d_model 32) so that a 1M-line epoch takes minutes on
a CPU: what grows with the corpus is reading, tokenising, batching and data loading, which do not
depend on the backbone. Each size runs in its own process; RSS is that process's peak. Expected:
seconds per epoch linear in lines (the per-line column flat), RSS flat (token ids stay in a
memory-mapped Arrow cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wordnet" / "train.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    lines = [line for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "tiny-t5"
        # Built in a child: this process stays small, since a child's ru_maxrss starts from its parent's.
        build = (f"import sys; from pathlib import Path; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
                 f"from conftest import tiny_t5; tiny_t5(Path({str(model)!r}))")
        subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)
        for size in (int(s) for s in args.sizes.split(",")):
            corpus = tmp / f"corpus-{size}.txt"
            with corpus.open("w", encoding="utf-8") as f:
                for i in range(size):
                    f.write(lines[i % len(lines)] + "\n")
            cmd = [sys.executable, "-m", "vaecli", "finetune", str(corpus), "--model", str(model), "--out", str(tmp / f"out-{size}"),
                   "--phase", "1", "--phase1-epochs", "1", "--batch-size", str(args.batch_size), "--valid-every", str(10**9),
                   "--save-every", str(10**9), "--valid-size", "200", "--bf16", "no"]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp / "hf-cache")}
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            if status != 0:
                raise RuntimeError(f"run of {size} lines failed: {' '.join(cmd)}")
            resolved = json.loads((tmp / f"out-{size}" / "training.json").read_text())["resolved"]
            epoch = resolved["phase1_steps"] / resolved["steps_per_second"]["phase1"]
            rows.append((size, epoch, seconds, usage.ru_maxrss / 1024))
    base = rows[0]
    print(f"tiny random T5, one epoch of phase 1, batch {args.batch_size}; epoch = training loop only, wall = whole command")
    print("| lines | epoch s | us per line | (epoch ratio) / (lines ratio) | wall s | peak RSS MiB | RSS ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size, epoch, wall, rss in rows:
        linear = (epoch / base[1]) / (size / base[0])
        print(f"| {size:,} | {epoch:.1f} | {1e6 * epoch / size:.0f} | {linear:.2f} | {wall:.1f} | {rss:.0f} | {rss / base[3]:.2f} |")


if __name__ == "__main__":
    main()
