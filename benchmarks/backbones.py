"""Training steps per second of the VAE on each backbone shape, same batch, in one run.

    python benchmarks/backbones.py            # batch 32 x 16 tokens, fp32 and bf16 autocast side by side

Random weights (speed does not depend on them): the embedded MiniLM BERT2BERT, and T5 / BART of
t5-small and bart-base shape, plus the tiny models the tests use. Token ids are random within each
vocabulary, 16 tokens per sentence (WordNet sentences average ~10 subword tokens).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def backbones() -> dict[str, object]:
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    from vaecli.modeling.backbones import build_minilm

    def t5(**kw):
        return T5ForConditionalGeneration(T5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **kw))

    def bart(**kw):
        return BartForConditionalGeneration(BartConfig(pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2, **kw))

    return {
        "MiniLM BERT2BERT (embedded, 49M)": lambda: build_minilm()[0],
        "T5, t5-small shape (60M)": lambda: t5(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
        "BART, bart-base shape (140M)": lambda: bart(vocab_size=50265),
        "tiny T5 (tests)": lambda: t5(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
        "tiny BART (tests)": lambda: bart(vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                          decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64),
    }


def steps_per_second(backbone, batch: int, length: int, steps: int, bf16: bool) -> float:
    from vaecli.config import VAEConfig
    from vaecli.modeling.vae import VAEModel

    torch.manual_seed(0)
    vae = VAEModel(backbone, VAEConfig()).train()
    vocab = backbone.config.get_text_config(decoder=True).vocab_size if hasattr(backbone.config, "get_text_config") else backbone.config.vocab_size
    ids = torch.randint(5, vocab, (batch, length))
    ids[:, -1] = vae.eos_id
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-5)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = vae(ids, mask, beta=1.0, free_bits=0.5).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from vaecli.modeling.precision import use_bf16

    bf16 = use_bf16("auto", 50_000_000)
    print(f"batch {args.batch} x {args.length} tokens, torch threads {torch.get_num_threads()}, memory injection, medians of {args.steps} steps; "
          f"`--bf16 auto` picks bf16 for these large shapes here: {bf16}")
    print("| backbone | steps/s fp32 | steps/s bf16 autocast | bf16 speed-up | sentences/s (bf16) |")
    print("| --- | --- | --- | --- | --- |")
    for name, make in backbones().items():
        backbone = make()
        fp32 = steps_per_second(backbone, args.batch, args.length, args.steps, False)
        half = steps_per_second(backbone, args.batch, args.length, args.steps, True)
        print(f"| {name} | {fp32:.2f} | {half:.2f} | {half / fp32:.2f} | {half * args.batch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
