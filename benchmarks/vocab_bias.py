"""A path for a word's identity that is the same for every word: z -> a bias on the decoder's vocabulary
(`vae finetune --vocab-bias`), screened against the default.

    python benchmarks/vocab_bias.py --train ../shared/data/wordnet/train.txt --steps 460 --seeds 42,43

The default (SmolLM2 reading and writing its own sentences) trains `--steps` phase-1 steps of 16 on `--train`, as
itself ("off") and with `--vocab-bias` ("on"): a linear map A from z to the LM's hidden size, whose product with the
LM's output embedding table W (tied to its input table in SmolLM2) is added to the decoder's logits at every position,
`logits += W (A z)`, in training and in every decoding. A starts at 0 (the model starts as the default) and trains at
the new layers' rate. The reader's states, which z is pooled from, include its input embeddings of the sentence's
tokens, so a word's own embedding can reach its own logit the same way for every word, rare or not (the default's
held-out errors are mostly rare tokens: `benchmarks/token_errors.py`). Each (variant, seed) trains in a fresh process,
one after the other, and is evaluated as `vae evaluate --iw-samples 1 --samples 20` on the first `--limit` sentences of
`--test`. (Round seven's table was measured with the same computation patched into the model, before it was an option.)
"""

from __future__ import annotations

from lever_screen import arguments, table, train_and_evaluate  # benchmarks/ is on sys.path when a benchmark runs as a script


def main() -> None:
    args = arguments(__doc__, "variants", "off,on")
    if args.child:
        train_and_evaluate(args, vocab_bias=args.child[0] == "on")
        return
    table(__file__, args, "z -> vocabulary bias", lambda variant: f"{variant} (the default)" if variant == "off" else variant)


if __name__ == "__main__":
    main()
