"""Against the memorised second pass: a sentence seen before comes back with some of its tokens deleted, on both sides.

    python benchmarks/repeat_deletion.py --train wn3k/train.txt --steps 460 --seeds 42,43 --rates 0,0.15

The default (SmolLM2 reading and writing its own sentences) trains `--steps` phase-1 steps of 16 on `--train`; from
its second pass over the data on (the steps after one epoch), each batch has every real token deleted with
probability `--rates` from the encoder's input AND from the decoder's target (the survivors move left, the end token
follows them), so no sequence repeats exactly and none can be memorised as such. `--phase1-denoise` deletes from the
encoder's input only, a different task. This is a screen of a lever that is not in `vae finetune`: the deletion is
patched into the training loop's batch stream here (it needs one tokenizer on both sides, and `vae`'s
default `--encoder decoder` has one). Each (rate, seed) trains in a fresh process, one after the other, and is
evaluated as `vae evaluate --iw-samples 1 --samples 20` on the first `--limit` sentences of `--test`.
Rate 0 is the default itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = {"rec": "Rec", "shuffle_gap": "shuffle gap", "token_accuracy": "token accuracy", "bleu": "BLEU", "exact_match": "exact",
           "fluency_reconstructions": "fluency of the reconstructions", "sample_fluency": "aggregate-prior samples' fluency"}


def child(rate: float, seed: int, steps: int, train: str, valid: str, test: str, limit: int, out: str) -> None:
    """One run: prints its metrics as JSON on its last line."""
    import torch

    import vaecli.training.trainer as trainer
    from vaecli.api import TextVAE
    from vaecli.config import TrainConfig
    from vaecli.evaluation.evaluate import evaluate
    from vaecli.files.text import read_lines

    plain_stream = trainer.batch_stream

    def batch_stream(run, phase, start_step):
        model, per_epoch = run.model, -(-len(run.train_data) // run.cfg.batch_size)
        if rate > 0 and not model.eos_id == model.pad_id == model.input_pad_id:
            raise SystemExit("this screen rebuilds the target as the kept input + end token, with end = pad")
        protected = [int(t) for t in model.tokenizer.all_special_ids]
        generator = torch.Generator().manual_seed(seed + 7)
        for step, batch in enumerate(plain_stream(run, phase, start_step), start=start_step):
            if rate > 0 and step >= per_epoch:
                ids, mask = trainer.delete_tokens(batch["input_ids"], batch["attention_mask"], rate, model.input_pad_id, protected, generator)
                rows = ids.shape[0]
                target_mask = torch.cat([mask, torch.zeros(rows, 1, dtype=mask.dtype)], 1)
                target_mask[torch.arange(rows), mask.sum(1)] = 1
                batch = {**batch, "input_ids": ids, "attention_mask": mask, "target_mask": target_mask,
                         "target_ids": torch.cat([ids, torch.full((rows, 1), model.eos_id, dtype=ids.dtype)], 1)}
            yield batch

    trainer.batch_stream = batch_stream
    torch.set_num_threads(2)
    cfg = TrainConfig(train_file=train, valid_file=valid, out=out, phase1_steps=steps, valid_every=10**6, save_every=10**6,
                      seed=seed, threads=2)
    started = time.perf_counter()
    trainer.finetune(cfg, overwrite=True)
    seconds = time.perf_counter() - started
    vae = TextVAE.from_pretrained(out)
    m = evaluate(vae, read_lines(path=test).texts[:limit], iw_samples=1, samples=20, seed=0)
    print(json.dumps({"train_s": round(seconds), **{k: m[k] for k in COLUMNS}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training sentences, one per line")
    parser.add_argument("--valid", default=str(ROOT / "examples" / "wordnet" / "valid.txt"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "data" / "wordnet" / "valid.txt"))
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--steps", type=int, default=460)
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--rates", default="0,0.15")
    parser.add_argument("--child", nargs=2, metavar=("RATE", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(float(args.child[0]), int(args.child[1]), args.steps, args.train, args.valid, args.test, args.limit, args.out)
        return
    print(f"{args.steps} steps of 16 on {args.train}; first {args.limit} sentences of {args.test}\n")
    print("| deletion on repeats | seed | " + " | ".join(COLUMNS.values()) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds.split(","):
            for rate in args.rates.split(","):
                cmd = [sys.executable, __file__, "--train", args.train, "--valid", args.valid, "--test", args.test, "--limit", str(args.limit),
                       "--steps", str(args.steps), "--child", rate, seed, "--out", str(Path(tmp) / f"m{rate}_{seed}")]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"rate {rate} seed {seed} failed:\n{done.stderr[-2000:]}")
                m = json.loads(done.stdout.strip().splitlines()[-1])
                cells = [f"{100 * m[k]:.1f}%" if k in ("token_accuracy", "exact_match") else f"{m[k]:.2f}" for k in COLUMNS]
                label = f"{rate} (the default)" if float(rate) == 0 else rate
                print(f"| {label} | {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
