"""Peak memory of reading a big corpus: a Parquet file against the text file of the same lines (issue 18).

    python benchmarks/corpus_rss.py                 # 1,000,000 rows (WordNet sentences, repeated and numbered)
    python benchmarks/corpus_rss.py --rows 200000

Each measure runs in a fresh process and reports its peak RSS (VmHWM): reading the corpus through
vaecli.files.corpus and walking all of it in Arrow batches (what `vae encode -i` does), and tokenising
it into a training corpus (what `vae finetune` does, with the embedded MiniLM tokenizer). Memory does
not depend on the machine's load, so this may run beside other work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "wordnet" / "train.txt"


def child(task: str, path: str) -> None:
    if task == "read":
        from vaecli.files.corpus import TEXT, read_sentences_dataset

        read = read_sentences_dataset(path)
        n = sum(len(batch[TEXT]) for batch in read.dataset.iter(batch_size=1024))
    else:
        from transformers import AutoTokenizer

        from vaecli.modeling.backbones import minilm_path
        from vaecli.training.data import load_corpus

        n = len(load_corpus(path, AutoTokenizer.from_pretrained(str(minilm_path())), 64))
    peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024
    print(json.dumps({"rows": n, "peak_mib": peak}))


def measure(task: str, path: Path, cache: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": cache}
    out = subprocess.run([sys.executable, __file__, "--child", task, str(path)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = [line.strip() for line in DATA.read_text().splitlines() if line.strip()]
    lines = [f"{base[i % len(base)]} ({i})" for i in range(args.rows)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        txt, parquet = Path(tmp) / "corpus.txt", Path(tmp) / "corpus.parquet"
        txt.write_text("".join(line + "\n" for line in lines))
        pq.write_table(pa.table({"id": list(range(args.rows)), "text": lines}), parquet)
        del lines
        for task, what in (("read", "read and walk in Arrow batches (`vae encode -i`)"), ("tokenise", "tokenised for training (`vae finetune`)")):
            a = measure(task, txt, str(Path(tmp) / "cache-txt"))
            b = measure(task, parquet, str(Path(tmp) / "cache-parquet"))
            assert a["rows"] == b["rows"] == args.rows
            rows.append((what, a["peak_mib"], b["peak_mib"]))
    print(f"\n{args.rows:,} rows; peak RSS of a fresh process\n")
    print("| task | .txt | .parquet | parquet / txt |")
    print("| --- | --- | --- | --- |")
    for what, a, b in rows:
        print(f"| {what} | {a:,.0f} MiB | {b:,.0f} MiB | {b / a:.2f} |")


if __name__ == "__main__":
    main()
