"""Hot paths against their natural baselines, side by side in one run; prints ratios.

    pip install sentence-transformers          # the encode baseline (not a vaecli dependency)
    python benchmarks/perf.py                   # MiniLM BERT2BERT on ../shared/data/wordnet/valid.txt
    python benchmarks/perf.py --device cuda     # on a GPU machine

| measure | target |
| VAE training step / plain seq2seq finetuning step, same backbone and batch | <= 1.05 |
| peak RSS of VAE training / plain finetuning (separate processes)           | <= 1.10 |
| vaecli encode sentences/s / sentence-transformers encode, same weights     | >= 1.0  |
| vaecli greedy decode sentences/s / HF generate, same model and z           | >= 1.0  |
| time to a usage error (`vae encode -f nope x`, ...) / time of `vae --help`  | <= 2.0  |
| `vae evaluate` sentences/s at K=100 / 6.67 (2,000 sentences in 5 minutes)   | >= 1.0  |

    python benchmarks/perf.py --only startup    # just the usage-error timings (a few seconds)
    python benchmarks/perf.py --only evaluate --eval-n 50   # just evaluate's throughput

Timings alternate between the two sides round by round and take medians: these machines are
noisy, so only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wordnet" / "valid.txt"


def sentences(path: Path, n: int) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return (lines * (n // len(lines) + 1))[:n]


def fresh_vae(device: str):
    from vaecli.api import TextVAE
    from vaecli.config import VAEConfig
    from vaecli.modeling.backbones import build_minilm

    torch.manual_seed(0)
    backbone, tokenizer, fresh = build_minilm()
    return TextVAE(backbone, VAEConfig(frozen_exempt=fresh), tokenizer).to(device)


def alternate(a, b, rounds: int) -> tuple[float, float]:
    """Median seconds of a() and b(), run alternately."""
    ta, tb = [], []
    for _ in range(rounds):
        for fn, times in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- training step ---------------------------------------------------------------------------------


def step_fns(vae, texts: list[str], batch: int, device: str, bf16: bool):
    """One AdamW step of the VAE (memory injection) and of plain seq2seq finetuning on the same batch."""
    tok = vae.tokenizer
    enc = tok(texts[:batch], padding=True, truncation=True, max_length=64, return_tensors="pt").to(device)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    dec_in, labels = vae.targets(ids, mask)
    plain = vae.backbone
    opt_vae = torch.optim.AdamW(vae.parameters(), lr=1e-5)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-5)
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)

    def vae_step():
        with autocast:
            loss = vae(ids, mask, beta=0.5, free_bits=0.5).loss
        loss.backward()
        opt_vae.step()
        opt_vae.zero_grad(set_to_none=True)
        sync(device)

    def plain_step():
        with autocast:
            loss = plain(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_in, labels=labels).loss
        loss.backward()
        opt_plain.step()
        opt_plain.zero_grad(set_to_none=True)
        sync(device)

    return vae_step, plain_step


def rss_child(kind: str, batch: int, steps: int, bf16: bool) -> float:
    """Peak RSS (MiB) of a fresh process doing `steps` training steps of `kind`.

    The child reports VmHWM from /proc: ru_maxrss would carry over the parent's peak through fork + exec.
    """
    code = (
        "import sys; sys.path.insert(0, %r); import perf\n"
        "vae = perf.fresh_vae('cpu'); v, p = perf.step_fns(vae, perf.sentences(perf.DATA, %d), %d, 'cpu', %r)\n"
        "fn = v if %r == 'vae' else p\nfor _ in range(%d): fn()\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    ) % (str(Path(__file__).parent), batch, batch, bf16, kind, steps)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


# -- encode and decode -----------------------------------------------------------------------------


def encode_fns(vae, texts: list[str], batch: int, device: str):
    from sentence_transformers import SentenceTransformer

    from vaecli.inference import latent as infer
    from vaecli.modeling.backbones import minilm_path

    st = SentenceTransformer(str(minilm_path()), device=device)

    def ours():
        infer.encode(vae, texts, batch_size=batch)
        sync(device)

    def theirs():
        st.encode(texts, batch_size=batch, convert_to_numpy=True)
        sync(device)

    return ours, theirs


def decode_fns(vae, n: int, max_new: int, device: str):
    """Greedy decoding of the same z: vaecli's KV-cached loop vs HF generate on the memory states."""
    from transformers.modeling_outputs import BaseModelOutput

    from vaecli.inference.generate import generate, strip_ids

    z = torch.randn(n, vae.config.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)

    def ours():
        return generate(vae, z, max_new)

    @torch.inference_mode()
    def theirs():
        state = vae.decode_state(z)
        out = vae.backbone.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.memory), attention_mask=state.memory_mask,
            max_new_tokens=max_new, do_sample=False, num_beams=1, decoder_start_token_id=vae.start_id,
            eos_token_id=vae.eos_id, pad_token_id=vae.pad_id,
        )
        return out

    same = ours() == strip_ids(theirs()[:, 1:], vae)
    return ours, theirs, same


# -- time to a usage error ---------------------------------------------------------------------------

USAGE_ERRORS = {
    "vae encode -f nope x": ["encode", "-f", "nope", "x"],
    "vae finetune missing.txt": ["finetune", "missing.txt"],
    "vae finetune train.txt --model nosuch-model": ["finetune", str(ROOT / "examples" / "wordnet" / "train.txt"), "--model", "nosuch-model"],
}


def cli_seconds(argv: list[str]) -> float:
    """Wall time of one `python -m vaecli ARGV` process, start to exit."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaecli", *argv], env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def startup_rows(rounds: int) -> list[tuple]:
    """Each usage error against `vae --help`, alternating, medians: an error must not wait for torch."""
    rows = []
    for name, argv in USAGE_ERRORS.items():
        t_err, t_help = alternate(lambda: cli_seconds(argv), lambda: cli_seconds(["--help"]), rounds)
        rows.append((f"time to a usage error, `{name}` / `vae --help` (s)", t_err, t_help, t_err / t_help, "<= 2.0"))
    return rows


# -- evaluate's throughput --------------------------------------------------------------------------

EVAL_TARGET = 2000 / 300  # sentences/s: 2,000 sentences with K=100 in 5 minutes


def evaluate_row(vae, texts: list[str], k: int) -> tuple:
    """One `vaecli.evaluation.evaluate.evaluate` over `texts` (all metrics, BLEU included) with K importance samples."""
    from vaecli.evaluation.evaluate import evaluate

    vae.eval()
    start = time.perf_counter()
    evaluate(vae, texts, iw_samples=k, beam=1, refine=0)
    rate = len(texts) / (time.perf_counter() - start)
    return (f"`vae evaluate` at K={k}, {len(texts)} sentences (sentences/s) / the target 2,000 in 5 min", rate, EVAL_TARGET,
            rate / EVAL_TARGET, ">= 1.0")


def print_rows(rows: list[tuple]) -> None:
    print("| measure | vaecli | baseline | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for name, a, b, ratio, target in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.2f} | {target} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--encode-n", type=int, default=2000)
    parser.add_argument("--decode-n", type=int, default=128)
    parser.add_argument("--max-new", type=int, default=24)
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS children (they take a minute)")
    parser.add_argument("--only", choices=["startup", "evaluate"], help="run one group of measures")
    parser.add_argument("--eval-n", type=int, default=200, help="sentences for the evaluate throughput")
    parser.add_argument("--eval-k", type=int, default=100, help="importance samples for the evaluate throughput")
    args = parser.parse_args()
    if args.only == "startup":
        print(f"python -m vaecli subprocesses, {args.rounds} alternating rounds (medians)")
        print_rows(startup_rows(args.rounds))
        return
    if args.only == "evaluate":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, MiniLM BERT2BERT (fresh heads)")
        print_rows([evaluate_row(fresh_vae(args.device), sentences(DATA, args.eval_n), args.eval_k)])
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from vaecli.modeling.precision import use_bf16

    bf16 = use_bf16("auto", 50_000_000)
    texts = sentences(DATA, max(args.encode_n, args.batch))
    vae = fresh_vae(args.device).train()
    rows = []
    vae_step, plain_step = step_fns(vae, texts, args.batch, args.device, bf16)
    vae_step(), plain_step()  # warm-up
    t_vae, t_plain = alternate(vae_step, plain_step, args.rounds)
    rows.append(("training step, VAE / plain finetuning (s per step)", t_vae, t_plain, t_vae / t_plain, "<= 1.05"))
    if not args.no_rss and args.device == "cpu":
        r_vae, r_plain = rss_child("vae", args.batch, 5, bf16), rss_child("plain", args.batch, 5, bf16)
        rows.append(("peak RSS of training, VAE / plain (MiB)", r_vae, r_plain, r_vae / r_plain, "<= 1.10"))
    vae.eval()
    ours, theirs = encode_fns(vae, texts[: args.encode_n], 64, args.device)
    ours(), theirs()
    t_ours, t_theirs = alternate(ours, theirs, args.rounds)
    n = args.encode_n
    rows.append(("encode, vaecli / sentence-transformers (sentences/s)", n / t_ours, n / t_theirs, t_theirs / t_ours, ">= 1.0"))
    ours, theirs, same = decode_fns(vae, args.decode_n, args.max_new, args.device)
    t_ours, t_theirs = alternate(ours, theirs, args.rounds)
    n = args.decode_n
    rows.append((f"greedy decode, vaecli / HF generate (sentences/s; same output: {same})", n / t_ours, n / t_theirs, t_theirs / t_ours, ">= 1.0"))
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, bf16 autocast for training: {bf16}, "
          f"MiniLM BERT2BERT, batch {args.batch}, {args.rounds} alternating rounds (medians)")
    rows.append(evaluate_row(vae, texts[: args.eval_n], args.eval_k))
    rows.extend(startup_rows(args.rounds))
    print_rows(rows)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
