"""The default pair (MiniLM + SmolLM2) against its baselines, side by side in one run; prints one table.

    python benchmarks/pair_perf.py              # on ../shared/data/wordnet, 2 threads; run it on an idle machine
    python benchmarks/pair_perf.py --rounds 9

| measure | target |
| VAE training step, phase 1 (frozen decoder) and phase 2 / a plain SmolLM2 finetuning step, same sentences and batch | <= 1.15 |
| peak RSS of `vae finetune` (N steps) / a plain SmolLM2 finetuning script (same corpus, N steps), separate processes  | <= 1.3  |
| vaecli greedy decode / HF `generate` of the same decoder and z (same tokens asserted)                                | <= 1.0  |
| `vae evaluate`'s computation at K samples / the K x N decoder passes it needs, on the same tokens                    | ~ (K + 3) / K |

Timings alternate between the two sides round by round and take medians: only ratios measured in
the same run mean anything. The plain baselines are what a user would write with transformers:
AutoModelForCausalLM on `start + sentence -> sentence + end`, AdamW over every weight, bf16 autocast
as `vae finetune` uses it here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wordnet"


def sentences(n: int) -> list[str]:
    lines = [line.strip() for line in (DATA / "valid.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    return (lines * (n // len(lines) + 1))[:n]


def default_pair():
    """The model `vae finetune corpus.txt` builds, calibrated, in training mode."""
    from vaecli.config import TrainConfig
    from vaecli.modeling.backbones import build_causal_vae
    from vaecli.training.calibrate import calibrate

    torch.manual_seed(0)
    cfg = TrainConfig(train_file="x")
    vae = build_causal_vae(cfg.encoder, cfg.decoder, cfg.vae_config())
    calibrate(vae, vae.tokenize_batch(sentences(64)))
    return vae.train(), cfg


def alternate(fns: list, rounds: int) -> list[float]:
    """Median seconds of each function, run in turn round by round (after one warm-up round)."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(rounds + 1):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            if r:
                spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def step_fns(vae, cfg, texts: list[str]):
    """One optimizer step: VAE phase 1 (frozen decoder), VAE phase 2, plain SmolLM2 finetuning; same sentences."""
    from vaecli.training.trainer import make_optimizer, set_trainable

    batch = vae.tokenize_batch(texts)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)

    def vae_step(phase: int):
        params = set_trainable(vae, cfg, phase)
        optimizer, _ = make_optimizer(vae, params, cfg, 1000)

        def step():
            with autocast:
                out = vae(**batch, beta=0.0 if phase == 1 else 0.5, free_bits=0.0 if phase == 1 else cfg.free_bits)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    lm = vae.backbone.decoder
    dec_in, labels = vae.targets(batch["target_ids"], batch["target_mask"])
    plain_opt = torch.optim.AdamW(lm.parameters(), lr=cfg.lr)

    def plain_step():
        for p in lm.parameters():
            p.requires_grad_(True)
        with autocast:
            logits = lm(input_ids=dec_in).logits
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                                     reduction="sum") / len(texts)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), cfg.clip)
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    phase1, phase2 = vae_step(1), vae_step(2)
    return phase1, phase2, plain_step


def peak_rss_child(kind: str, steps: int, threads: int) -> float:
    """Peak RSS (MiB, VmHWM) of a fresh process: `vae finetune` for `steps` phase-1 steps, or the plain script."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--steps", str(steps), "--threads", str(threads)],
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def child(kind: str, steps: int, threads: int) -> None:
    import tempfile

    torch.set_num_threads(threads)
    if kind == "vae":
        from vaecli.config import TrainConfig
        from vaecli.training.trainer import finetune

        with tempfile.TemporaryDirectory() as tmp:
            finetune(TrainConfig(train_file=str(DATA / "train.txt"), valid_file=str(DATA / "valid.txt"), out=str(Path(tmp) / "m"),
                                 phase="1", phase1_steps=steps, valid_size=300, threads=threads))
    else:  # plain finetuning of SmolLM2, written as a user would: the same corpus through datasets, AdamW, bf16
        from datasets import load_dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from vaecli.modeling.embedded import smollm2_path

        path = smollm2_path()
        tok, lm = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
        ds = load_dataset("text", data_files=str(DATA / "train.txt"), split="train")
        ds = ds.map(lambda b: {"ids": [[tok.eos_token_id] + r + [tok.eos_token_id] for r in tok(b["text"], add_special_tokens=False)["input_ids"]]},
                    batched=True, remove_columns=["text"])
        optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4)
        lm.train()
        for step in range(steps):
            rows = ds[step * 32 : step * 32 + 32]["ids"]
            width = max(map(len, rows))
            ids = torch.tensor([r + [tok.eos_token_id] * (width - len(r)) for r in rows])
            labels = torch.tensor([r[1:] + [-100] * (width - len(r)) for r in rows])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = lm(input_ids=ids[:, :-1]).logits
                loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels[:, : width - 1].reshape(-1),
                                                         ignore_index=-100)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024
    print(json.dumps({"peak_mib": peak}))


def decode_fns(n: int, max_new: int):
    """Greedy decoding of the same z by vaecli's loop and by HF generate, on an embedding-injection pair (z added to
    every input embedding through a hook, positions from 0 as in training), so that both do the same work."""
    from vaecli.config import TrainConfig
    from vaecli.inference.generate import generate
    from vaecli.modeling.backbones import build_causal_vae

    torch.manual_seed(0)
    cfg = TrainConfig(train_file="x", injection="embedding")
    vae = build_causal_vae(cfg.encoder, cfg.decoder, cfg.vae_config()).eval()
    with torch.no_grad():
        vae.to_decoder.weight.mul_(0.05)  # z writes at a small scale, as calibration makes it
    z = torch.randn(n, cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    lm = vae.backbone.decoder
    embed = lm.get_input_embeddings()

    def ours():
        return generate(vae, z, max_new)

    @torch.inference_mode()
    def theirs():
        added = vae.decode_state(z).z_embedding
        hook = embed.register_forward_hook(lambda module, args, output: output + added.to(output.dtype))
        try:
            start = torch.full((n, 1), vae.start_id)
            return lm.generate(input_ids=start, attention_mask=torch.ones_like(start), max_new_tokens=max_new, do_sample=False,
                               num_beams=1, eos_token_id=vae.eos_id, pad_token_id=vae.pad_id)[:, 1:]
        finally:
            hook.remove()

    from vaecli.inference.generate import strip_ids

    same = ours() == strip_ids(theirs(), vae)
    return ours, theirs, same


def evaluate_fns(vae, texts: list[str], k: int):
    """evaluate()'s whole computation (no reconstructions, no samples) and the K x N decoder passes it needs."""
    from vaecli.evaluation.evaluate import evaluate, rows_per_pass

    vae.eval()
    batch = vae.tokenize_batch(texts)

    def ours():
        evaluate(vae, texts, iw_samples=k, bleu=False, samples=0, refine=0)

    targets, mask = batch["target_ids"].repeat(k, 1), batch["target_mask"].repeat(k, 1)
    rows = rows_per_pass(targets.shape[1], len(vae.decoder_tokenizer))  # the same memory bound as evaluate's passes

    @torch.inference_mode()
    def passes():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mu, logvar = vae.posterior(batch["input_ids"], batch["attention_mask"])
            z = mu.float().repeat(k, 1)
            for start in range(0, len(z), rows):
                vae.reconstruction_nll(z[start : start + rows], targets[start : start + rows], mask[start : start + rows])

    return ours, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rss-steps", type=int, default=30)
    parser.add_argument("--eval-n", type=int, default=16)
    parser.add_argument("--eval-k", type=int, default=100)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.threads)
        return
    torch.set_num_threads(args.threads)
    rows = []
    vae, cfg = default_pair()
    phase1, phase2, plain = step_fns(vae, cfg, sentences(args.batch))
    t1, t2, tp = alternate([phase1, phase2, plain], args.rounds)
    rows.append(("VAE training step, phase 1 (frozen decoder) / plain SmolLM2 step", f"{t1:.3f} s / {tp:.3f} s", t1 / tp, "<= 1.15"))
    rows.append(("VAE training step, phase 2 / plain SmolLM2 step", f"{t2:.3f} s / {tp:.3f} s", t2 / tp, "<= 1.15"))
    ours, theirs = evaluate_fns(vae, sentences(args.eval_n), args.eval_k)
    te, tk = alternate([ours, theirs], max(3, args.rounds // 2))
    rows.append((f"`vae evaluate` at K={args.eval_k}, {args.eval_n} sentences / K x N decoder passes", f"{te:.2f} s / {tk:.2f} s", te / tk,
                 f"~ {(args.eval_k + 3) / args.eval_k:.2f}"))
    del vae
    ours, theirs, same = decode_fns(64, 32)
    to, th = alternate([ours, theirs], args.rounds)
    rows.append(("greedy decode, 64 sentences x 32 tokens / HF generate" + ("" if same else " (TOKENS DIFFER)"), f"{to:.2f} s / {th:.2f} s",
                 to / th, "<= 1.0"))
    rv, rp = peak_rss_child("vae", args.rss_steps, args.threads), peak_rss_child("plain", args.rss_steps, args.threads)
    rows.append((f"peak RSS, `vae finetune` / plain SmolLM2 finetuning ({args.rss_steps} steps of 32 WordNet sentences)",
                 f"{rv:,.0f} MiB / {rp:,.0f} MiB", rv / rp, "<= 1.3"))
    print(f"\nMiniLM + SmolLM2 (the default pair), {args.threads} threads, medians of {args.rounds} alternating rounds\n")
    print("| measure | vaecli / baseline | ratio | target |")
    print("| --- | --- | --- | --- |")
    for name, values, ratio, target in rows:
        print(f"| {name} | {values} | {ratio:.2f} | {target} |")


if __name__ == "__main__":
    main()
