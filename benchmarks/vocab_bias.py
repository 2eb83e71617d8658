"""A path for a word's identity that is the same for every word: z -> a bias on the decoder's vocabulary
(`vae finetune --vocab-bias`), screened against the default.

    python benchmarks/vocab_bias.py --train ../shared/data/wordnet/train.txt --steps 460 --seeds 42,43

The default (SmolLM2 reading and writing its own sentences) trains `--steps` phase-1 steps of 16 on `--train`
without the bias ("off", `--no-vocab-bias`: the default until round eight) and with it ("on", the default since):
a linear map A from z to the LM's hidden size, whose product with the LM's output embedding table W (tied to its
input table in SmolLM2) is added to the decoder's logits at every position, `logits += W (A z)`, in training and
in every decoding. A starts at 0 (the model starts as it would without it) and trains at
the new layers' rate. The reader's states, which z is pooled from, include its input embeddings of the sentence's
tokens, so a word's own embedding can reach its own logit the same way for every word, rare or not (the default's
held-out errors are mostly rare tokens: `benchmarks/token_errors.py`). Each (variant, seed) trains in a fresh process,
one after the other, and is evaluated as `vae evaluate --iw-samples 1 --samples 20` on the first `--limit` sentences of
`--test`. (Round seven's table was measured with the same computation patched into the model, before it was an option.)
`--variants` may also name `slotsK` (see `patch_slots`: K vectors, their soft maximum per word; a patch).
"""

from __future__ import annotations

from lever_screen import arguments, table, train_and_evaluate  # benchmarks/ is on sys.path when a benchmark runs as a script


def patch_slots(k: int) -> None:
    """`slotsK`: A z is K vectors, each scored against the output table, and the bias is their soft maximum per word,
    `logsumexp_k (W a_k) - log K` (zero at the start, as one vector's): K words can each be raised on their own, where one
    vector raises the words its direction favours together. A patch, not an option."""
    import math

    import torch
    from torch import nn

    from vaecli.modeling import vae

    init = vae.VAEModel.__init__

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        with torch.random.fork_rng(devices=[]):
            self.to_vocab = nn.Linear(self.config.latent_dim, k * self.family.output_embeddings().shape[1])
        nn.init.zeros_(self.to_vocab.weight)
        nn.init.zeros_(self.to_vocab.bias)

    def vocab_bias(self, z):
        table = self.family.output_embeddings()
        slots = self.to_vocab(z).to(table.dtype).view(z.shape[0], k, table.shape[1])
        return torch.logsumexp((slots @ table.T).float(), dim=1) - math.log(k)

    vae.VAEModel.__init__, vae.VAEModel.vocab_bias = patched_init, vocab_bias


def main() -> None:
    args = arguments(__doc__, "variants", "off,on")
    if args.child:
        variant = args.child[0]
        if variant.startswith("slots"):
            patch_slots(int(variant.removeprefix("slots")))
        train_and_evaluate(args, vocab_bias=variant != "off")
        return
    table(__file__, args, "z -> vocabulary bias", lambda variant: f"{variant} (the default)" if variant == "on" else variant)


if __name__ == "__main__":
    main()
