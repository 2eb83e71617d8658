"""A path for a word's identity that is the same for every word: z -> a bias on the decoder's vocabulary, through the
LM's own (tied) embedding table.

    python benchmarks/vocab_bias.py --train ../shared/data/wordnet/train.txt --steps 460 --seeds 42,43

The default (SmolLM2 reading and writing its own sentences) trains `--steps` phase-1 steps of 16 on `--train`, as
itself ("off") and with one more new layer ("on"): a linear map A from z to the LM's hidden size, whose product with
the LM's input embedding table E (tied to its output layer in SmolLM2) is added to the decoder's logits at every
position, `logits += E (A z)`, in training and in every decoding. A starts at 0 (the model starts as the default) and
trains at the new layers' rate. The reader's states, which z is pooled from, include its input embeddings of the
sentence's tokens, so a word's own embedding can reach its own logit the same way for every word, rare or not (the
default's held-out errors are mostly rare tokens: `benchmarks/token_errors.py`). A screen, patched into the model
here, not an option of `vae finetune`. Each (variant, seed) trains in a fresh process, one after the other, and is
evaluated as `vae evaluate --iw-samples 1 --samples 20` on the first `--limit` sentences of `--test`.
"""

from __future__ import annotations

from lever_screen import arguments, table, train_and_evaluate  # benchmarks/ is on sys.path when a benchmark runs as a script


def patch() -> None:
    """z -> E (A z) added to the decoder's logits (A: the new layer `to_vocab`, zero at the start)."""
    from torch import nn

    from vaecli.modeling import family, vae

    init, decode_state, decoder_logits, new_parameters = (vae.VAEModel.__init__, vae.VAEModel.decode_state, vae.VAEModel.decoder_logits,
                                                          vae.VAEModel.new_parameters)
    select = family.DecodeState.select

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.to_vocab = nn.Linear(self.config.latent_dim, self.family.input_embeddings().weight.shape[1])
        nn.init.zeros_(self.to_vocab.weight)
        nn.init.zeros_(self.to_vocab.bias)

    def patched_decode_state(self, z, cache=True):
        state = decode_state(self, z, cache)
        table = self.family.input_embeddings().weight
        state.vocab_bias = self.to_vocab(z).to(table.dtype) @ table.T  # (B, V)
        return state

    def patched_logits(self, state, ids):
        logits = decoder_logits(self, state, ids)
        bias = getattr(state, "vocab_bias", None)
        return logits if bias is None else logits + bias.unsqueeze(1).to(logits.dtype)

    def patched_select(self, index):
        select(self, index)
        if getattr(self, "vocab_bias", None) is not None:
            self.vocab_bias = self.vocab_bias.index_select(0, index)

    def patched_new_parameters(self):
        return [*new_parameters(self), *self.to_vocab.parameters()]

    vae.VAEModel.__init__, vae.VAEModel.decode_state, vae.VAEModel.decoder_logits = patched_init, patched_decode_state, patched_logits
    vae.VAEModel.new_parameters, family.DecodeState.select = patched_new_parameters, patched_select


def main() -> None:
    args = arguments(__doc__, "variants", "off,on")
    if args.child:
        if args.child[0] == "on":
            patch()
        train_and_evaluate(args)
        return
    table(__file__, args, "z -> vocabulary bias", lambda variant: f"{variant} (the default)" if variant == "off" else variant)


if __name__ == "__main__":
    main()
