"""The VAE around a pretrained backbone: pool, heads, inject z, loss, save and load.

`VAEModel` holds a backbone of one of two families and adds a few small parts: masked pooling, the
`mu` / `logvar` heads and the projections that carry z into the decoder. What differs between the
families (how the encoder runs, how the decoder reads z and scores tokens, which tokenizers) lives in
`seq2seq.Seq2SeqFamily` (T5, BART, BERT2BERT) and `causal.CausalFamily` (an encoder plus a causal LM).
z is the decoder's only view of the input:

- memory:    z -> k vectors that the decoder's cross-attention reads in place of encoder states;
- prefix:    z -> key/value slots prepended to every decoder self-attention layer;
- embedding: z -> one vector added to every decoder input embedding;
- both:      prefix and embedding together (Optimus);

and, with --vocab-bias, z -> a bias on every next-token logit (through the decoder's output embeddings).

Every row of a batch is independent: each projection is reshaped batch-first and permuted, never
reshaped across the batch dimension (the authors' code got this wrong).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vaecli.config import VAEConfig, family_problems, fill_family_defaults, slot_problems
from vaecli.errors import ModelDirError
from vaecli.modeling.adapters import adapters_off
from vaecli.modeling.distill import mismatch, spreads
from vaecli.modeling.family import DecodeState, Dims, Family
from vaecli.modeling.gaussian import free_bits_kl, kl_per_dim
from vaecli.modeling.layout import CONFIG_NAME, PRIOR_NAME, WEIGHTS_NAME
from vaecli.modeling.pooling import Pooler
from vaecli.modeling.prior import AggregatePrior
from vaecli.modeling.randomness import randn
from vaecli.modeling.vocab_bias import VOCAB_SLOTS_INIT, add_vocab_bias, vocab_biases

__all__ = ["VAEModel", "VAEOutput", "DecodeState", "Dims"]


FORMAT_VERSION = 2  # 2: a "family" key and the causal family; 1 (encoder-decoder only) still loads


@dataclass
class VAEOutput:
    """What a forward pass returns. Losses are means over the sentences of the batch."""

    loss: torch.Tensor
    """rec + beta * kl_term (what is optimised)."""
    rec: torch.Tensor
    """Reconstruction NLL per sentence, summed over target tokens, in nats."""
    kl: torch.Tensor
    """KL(q(z|x) || N(0, I)) per sentence, summed over latent dimensions, in nats."""
    kl_term: torch.Tensor
    """The KL as it enters the loss (after free bits)."""
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor
    rec_per_sentence: torch.Tensor
    kl_per_sentence: torch.Tensor
    distill: torch.Tensor | None = None
    """--distill: the mismatch of the decoder's hidden states with the teacher's, mean over sentences (modeling.distill)."""


def layer_slots(kv: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(L, 2, B, H, S, dh) -> each layer's (keys, values). By unbind, not `kv[i, 0]`: the backward of each index fills
    a zero tensor of kv's whole size and adds it up (60 of them a step for SmolLM2: 12 ms of a default bf16 step on a
    CPU, benchmarks/step_parts.py); unbind's backward stacks the slices' gradients once. The same numbers either way."""
    return [(k, v) for k, v in (layer.unbind(0) for layer in kv.unbind(0))]


def family_for(backbone: nn.Module, decoder_tokenizer: Any) -> Family:
    """The family object that knows how to drive `backbone`."""
    from vaecli.modeling.causal import CausalFamily, EncoderAndLM
    from vaecli.modeling.seq2seq import Seq2SeqFamily

    if isinstance(backbone, EncoderAndLM):
        return CausalFamily(backbone, decoder_tokenizer)
    return Seq2SeqFamily(backbone)


class VAEModel(nn.Module):
    """A text VAE made of a pretrained backbone (encoder-decoder, or encoder + causal LM) and a few new layers."""

    def __init__(self, backbone: nn.Module, config: VAEConfig, tokenizer: Any = None, decoder_tokenizer: Any = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.decoder_tokenizer = decoder_tokenizer if decoder_tokenizer is not None else tokenizer
        self.aggregate_prior: AggregatePrior | None = None
        """The training set's aggregate posterior, when the model directory has one (modeling.prior)."""
        self.context_spread: torch.Tensor | None = None
        """--distill: each layer's per-dimension spread of the teacher's states (modeling.distill), set by fit_context_spread."""
        self.family = family_for(backbone, self.decoder_tokenizer)
        config = dataclasses.replace(config)  # the caller's config stays as given
        fill_family_defaults(config, self.family.name)
        self.config = config
        problems = family_problems(self.family.name, config.injection, config.lora) + slot_problems(config.vocab_bias, config.vocab_slots)
        if problems:  # a crafted config.json, or VAEConfig settings that do not fit the backbone
            raise ModelDirError("; ".join(problems))
        if config.lora:
            self.family.add_lora(config.lora, config.lora_targets, config.lora_dropout)
        dims = self.family.dims
        self.dims = dims
        self.start_id, self.eos_id, self.pad_id = self.family.start_id, self.family.eos_id, self.family.pad_id
        enc_pad = getattr(tokenizer, "pad_token_id", None)
        self.input_pad_id = int(enc_pad) if enc_pad is not None else self.pad_id
        """Padding of the encoder's inputs (its own tokenizer's; `pad_id` pads the decoder's)."""
        d = config.latent_dim
        self.pooler = Pooler(config.layers, config.pooling, dims.enc_states, dims.enc_hidden, config.pool_queries)
        self.to_mu = nn.Linear(self.pooler.out_dim, d)
        self.to_logvar = nn.Linear(self.pooler.out_dim, d)
        if config.injection == "memory":
            self.to_decoder = nn.Linear(d, config.memory_slots * dims.enc_hidden)
        elif config.injection in ("prefix", "both"):
            self.to_decoder = nn.Linear(d, dims.layers * 2 * dims.kv_heads * config.prefix_slots * dims.head_dim)
        else:
            self.to_decoder = nn.Linear(d, dims.dec_hidden)
        self.to_embedding = nn.Linear(d, dims.dec_hidden) if config.injection == "both" else None
        # Bag-of-words head (Zhao et al. 2017): z alone must predict the sentence's words, so z carries them.
        # --bow-head table: z -> the decoder's output space, scored against its output table (a word's logit through its
        # own pretrained embedding)
        self.to_bow = None
        if config.bow > 0 and self.decoder_tokenizer is not None:
            width = self.family.output_embeddings().shape[1] if config.bow_head == "table" else len(self.decoder_tokenizer)
            self.to_bow = nn.Linear(d, width)
        # The vocabulary bias: z -> a vector in the decoder's output space, scored against every word's output embedding.
        # Made without drawing from the random generator (it starts at zero), so every other layer starts as it would without it.
        self.to_vocab = None
        if config.vocab_bias:
            with torch.random.fork_rng(devices=[]):
                self.to_vocab = nn.Linear(d, config.vocab_slots * self.family.output_embeddings().shape[1])
        self.reset_new_parameters()

    def reset_new_parameters(self) -> None:
        """Initialise the VAE's own layers deliberately (a backbone's init scheme would not suit them)."""
        self.pooler.reset_parameters()
        nn.init.normal_(self.to_mu.weight, std=0.02)
        nn.init.zeros_(self.to_mu.bias)
        # logvar starts well below 0 (small posterior variance, see config.init_logvar), so early z
        # carries mu's signal instead of unit noise that teaches the decoder to ignore it.
        nn.init.normal_(self.to_logvar.weight, std=0.002)
        nn.init.constant_(self.to_logvar.bias, self.config.init_logvar)
        for layer in (self.to_decoder, self.to_embedding, self.to_bow):
            if layer is not None:
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        if self.to_vocab is not None:  # zero: the model starts as it would without the bias
            nn.init.zeros_(self.to_vocab.weight)
            nn.init.zeros_(self.to_vocab.bias)
            if self.config.vocab_slots > 1:  # slots that start equal would get equal gradients and stay equal
                with torch.random.fork_rng(devices=[]):
                    nn.init.normal_(self.to_vocab.weight, std=VOCAB_SLOTS_INIT)

    # -- tokens ------------------------------------------------------------------------------

    def tokenize_batch(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded encoder inputs and decoder targets for `texts` (what `forward` takes)."""
        from vaecli.modeling.tokens import pad_batch, tokenize

        ids, _ = tokenize(self.tokenizer, texts, self.config.max_length)
        batch = pad_batch(ids, self.input_pad_id)
        targets = self.family.target_ids(texts, self.config.max_length)
        if targets is not None:
            t = pad_batch(targets, self.pad_id)
            batch.update(target_ids=t["input_ids"], target_mask=t["attention_mask"])
        return {k: v.to(self.device) for k, v in batch.items()}

    # -- encoder side ------------------------------------------------------------------------

    def posterior(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  states: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar of q(z|x), each (B, latent_dim); `states`: the encoder's states of the input, where already read."""
        pooled = self.pooled(input_ids, attention_mask) if states is None else self.pooler(states, attention_mask)
        return self.to_mu(pooled), self.to_logvar(pooled)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The one vector per sentence that the heads read (modeling.pooling)."""
        return self.pooler(self.family.encoder_states(input_ids, attention_mask), attention_mask)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = randn(mu.shape, generator, mu.device, mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    # -- decoder side ------------------------------------------------------------------------

    def decode_state(self, z: torch.Tensor, cache: bool = True) -> DecodeState:
        """Turn z (B, d) into what the decoder reads. A fresh cache every call (forward passes mutate it).

        cache=False (a whole-sequence forward, as in training) keeps no cache unless the prefix lives in it.
        """
        b, dims, injection = z.shape[0], self.dims, self.config.injection
        memory = prefix = z_embedding = None
        if injection == "memory":
            memory = self.to_decoder(z).view(b, self.config.memory_slots, dims.enc_hidden)
        elif injection == "embedding":
            z_embedding = self.to_decoder(z).unsqueeze(1)
        else:
            # (B, L*2*H*S*dh) -> (B, L, 2, H, S, dh) -> (L, 2, B, H, S, dh): batch stays batch.
            slots = self.config.prefix_slots
            kv = self.to_decoder(z).view(b, dims.layers, 2, dims.kv_heads, slots, dims.head_dim).permute(1, 2, 0, 3, 4, 5)
            prefix = layer_slots(kv)
            if injection == "both":
                z_embedding = self.to_embedding(z).unsqueeze(1)
        state = self.family.new_state(b, memory, prefix, z_embedding, z, cache)
        if self.to_vocab is not None:
            state.vocab_bias = self.vocab_bias(z)
        return state

    def vocab_bias(self, z: torch.Tensor) -> torch.Tensor:
        """--vocab-bias: W (A z) with W the decoder's output embeddings, (B, V), or (B, K, V) for --vocab-slots K
        (modeling.vocab_bias); row b from z[b] only."""
        return vocab_biases(self.to_vocab, z, self.family.output_embeddings(), self.config.vocab_slots)

    def decoder_logits(self, state: DecodeState, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for the next token at each position; appends to state.cache."""
        logits = self.family.logits(state, decoder_input_ids)
        return logits if state.vocab_bias is None else add_vocab_bias(logits, state.vocab_bias)

    def targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoder inputs, labels) for reconstructing the target ids; labels are -100 at padding."""
        ids, mask = input_ids, attention_mask
        if bool((ids[:, 0] == self.start_id).all()) and self.start_id != self.pad_id:
            # BERT-style [CLS] ... [SEP]: the start token is fed, never predicted.
            ids, mask = ids[:, 1:], mask[:, 1:]
        labels = ids.masked_fill(mask == 0, -100)
        start = torch.full_like(ids[:, :1], self.start_id)
        dec_in = torch.cat([start, ids[:, :-1]], dim=1).masked_fill(torch.cat([mask[:, :1], mask[:, :-1]], 1) == 0, self.pad_id)
        return dec_in, labels

    def reconstruction_nll(self, z: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor,
                           word_dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """-log p(x|z) per sentence (B,), summed over target tokens; and the logits.

        word_dropout > 0 (training only) replaces that fraction of the decoder's input tokens, the start
        token excepted, by padding (Bowman et al. 2016): the labels stay, so the decoder must read z.
        """
        nll, _, logits = self._token_nll(self.decode_state(z, cache=False), target_ids, target_mask, word_dropout)
        return nll.sum(dim=1), logits

    def token_hits(self, z: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced token accuracy's parts, per sentence: (target tokens that are the decoder's argmax given
        z and the true prefix, target tokens), the end token counted."""
        _, labels, logits = self._token_nll(self.decode_state(z, cache=False), target_ids, target_mask)
        real = labels != -100
        return ((logits.argmax(dim=-1) == labels) & real).sum(dim=1), real.sum(dim=1)

    def unconditional_nll(self, target_ids: torch.Tensor, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(-log p(x) per sentence under the decoder alone, z not given, LoRA adapters off; target tokens): how fluent
        a text is to the decoder LM itself (for a causal LM with a frozen decoder, the pretrained LM's own judgement)."""
        state = self.family.new_state(target_ids.shape[0], None, None, None, self.to_mu.weight, cache=False)
        with adapters_off(self.backbone):
            nll, labels, _ = self._token_nll(state, target_ids, target_mask)
        return nll.sum(dim=1), (labels != -100).sum(dim=1)

    def _token_nll(self, state: DecodeState, target_ids: torch.Tensor, target_mask: torch.Tensor,
                   word_dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(NLL of each target token (B, T), 0 at padding; labels, -100 at padding; logits) for the decoder reading `state`."""
        dec_in, labels = self.targets(target_ids, target_mask)
        if word_dropout > 0:
            drop = torch.rand(dec_in.shape, device=dec_in.device) < word_dropout
            drop[:, 0] = False
            dec_in = dec_in.masked_fill(drop, self.pad_id)
        logits = self.decoder_logits(state, dec_in)
        # Flattened (rows, vocab) layout: cross-entropy over a transposed (B, V, T) view is much slower.
        flat = logits.float().reshape(-1, logits.shape[-1])
        nll = F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="none").view(labels.shape)
        return nll, labels, logits

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        target_ids: torch.Tensor | None = None,
        target_mask: torch.Tensor | None = None,
        beta: float = 1.0,
        free_bits: float = 0.0,
        sample: bool = True,
        generator: torch.Generator | None = None,
        word_dropout: float = 0.0,
        bow: float = 0.0,
        distill: float = 0.0,
    ) -> VAEOutput:
        """Encode `input_ids` (possibly noised), reconstruct `target_ids` (default: the input itself).

        The causal family's decoder has its own tokens: pass its `target_ids` (see `tokenize_batch`).
        """
        teacher = None
        if distill > 0:  # the teacher's states come with the encoder's, in one pass where the LM reads its own sentences
            if target_ids is None:
                raise ValueError("--distill needs the decoder's target_ids (see tokenize_batch)")
            dec_in, labels = self.targets(target_ids, target_mask)
            encoded, teacher = self.family.read_with_context(input_ids, attention_mask, dec_in, labels != -100)
            mu, logvar = self.posterior(input_ids, attention_mask, encoded)
        else:
            mu, logvar = self.posterior(input_ids, attention_mask)
        mu, logvar = mu.float(), logvar.float()
        z = self.reparameterize(mu, logvar, generator) if sample else mu
        if target_ids is None:
            if self.family.name != "seq2seq":
                raise ValueError("this model's decoder has its own tokenizer: pass target_ids (see tokenize_batch)")
            target_ids, target_mask = input_ids, attention_mask
        state = self.decode_state(z, cache=False)
        state.keep_hidden = distill > 0
        nll, labels, logits = self._token_nll(state, target_ids, target_mask, word_dropout)
        rec = nll.sum(dim=1)
        kl_dims = kl_per_dim(mu, logvar)
        kl_term = free_bits_kl(kl_dims, free_bits)
        loss = rec.mean() + beta * kl_term
        match = None
        if distill > 0:
            match = self.distill_mismatch(state.hidden, target_ids, target_mask, teacher).mean()
            loss = loss + distill * match
        if bow > 0 and self.to_bow is not None:
            loss = loss + bow * self.bag_of_words_nll(z, target_ids, target_mask).mean()
        kl = kl_dims.sum(dim=1)
        return VAEOutput(loss, rec.mean(), kl.mean(), kl_term, mu, logvar, z, logits, rec, kl, match)

    def distill_mismatch(self, hidden: tuple[torch.Tensor, ...], target_ids: torch.Tensor, target_mask: torch.Tensor,
                         teacher: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """(B,): the mismatch of the decoder's hidden states (`hidden`, reading z) with the LM's own when it has read the
        sentence (modeling.distill; `teacher`, when given, are those states); needs fit_context_spread first."""
        if self.context_spread is None:
            raise RuntimeError("--distill needs the teacher's spreads: call fit_context_spread on training sentences first")
        dec_in, labels = self.targets(target_ids, target_mask)
        mask = labels != -100
        if teacher is None:
            teacher = self.family.context_states(dec_in, mask)
        return mismatch(hidden, teacher, mask, self.context_spread.to(mask.device))

    @torch.no_grad()
    def fit_context_spread(self, target_ids: torch.Tensor, target_mask: torch.Tensor, chunk: int = 32) -> None:
        """Set context_spread from the pretrained LM's (adapters off) teacher states of these sentences, `chunk` at a time
        (memory bounded): a function of the LM and the sentences only, so a resumed run measures the same."""
        def states() -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
            for start in range(0, target_ids.shape[0], chunk):
                dec_in, labels = self.targets(target_ids[start:start + chunk], target_mask[start:start + chunk])
                yield self.family.context_states(dec_in, labels != -100), labels != -100

        with adapters_off(self.backbone):
            self.context_spread = spreads(states())

    def bag_of_words_nll(self, z: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """-sum over the target's tokens of log softmax(to_bow(z)) (`--bow-head table`: of W to_bow(z), W the decoder's output
        table), per sentence (order ignored)."""
        _, labels = self.targets(target_ids, target_mask)
        if self.config.bow_head == "table":  # scored as z's vocabulary bias is: W (B z)
            scores = vocab_biases(self.to_bow, z, self.family.output_embeddings(), 1)
        else:
            scores = self.to_bow(z)
        logp = torch.log_softmax(scores.float(), dim=-1)
        picked = logp.gather(1, labels.clamp(min=0))
        return -(picked * (labels != -100)).sum(dim=1)

    # -- parameter groups ----------------------------------------------------------------------

    def new_parameters(self) -> list[nn.Parameter]:
        """What starts from scratch and trains at --lr x --new-lr-scale: the VAE's own layers (heads and
        injection) and LoRA adapters."""
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.") or "lora_" in name]

    def freeze_decoder(self) -> list[str]:
        """Stop gradients to the backbone decoder's pretrained weights; returns the frozen names.

        Weights shared with the encoder (tied embeddings), the VAE's own layers and the backbone parts
        listed in config.frozen_exempt (freshly initialised at warm-start) keep training, and so do LoRA adapters.
        """
        decoder_params, encoder_params = self.family.decoder_parameter_ids()
        frozen = []
        for name, p in self.backbone.named_parameters():
            if id(p) in decoder_params and id(p) not in encoder_params:
                if "lora_" in name or any(part in name for part in self.config.frozen_exempt):
                    continue
                p.requires_grad_(False)
                frozen.append(name)
        return frozen

    # -- save / load ---------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json, model.safetensors and the tokenizer(s) into `directory` (files written aside, then renamed)."""
        from safetensors.torch import save_model

        from vaecli.files.atomic import atomic_save, atomic_write_bytes

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"vaecli_format": FORMAT_VERSION, "family": self.family.name, "vae": self.config.to_dict(), **self.family.config_dict()}
        atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
        atomic_save(directory / WEIGHTS_NAME, lambda path: save_model(self, path))
        if self.tokenizer is not None:
            self.family.save_tokenizers(self.tokenizer, self.decoder_tokenizer, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> VAEModel:
        """Load a vaecli model directory; never touches the network.

        The sizes config.json declares are checked against the safetensors header (shapes only, read
        without loading) on a model built on the `meta` device, so a crafted config costs milliseconds
        and one line, never the memory it declares.
        """
        from vaecli.modeling.loading import build_backbone, build_checked, load_tokenizer, read_model_config

        directory = Path(directory)
        saved, family_cls = read_model_config(directory)
        tokenizer, decoder_tokenizer = family_cls.load_tokenizers(directory, load_tokenizer)

        def make() -> VAEModel:
            return cls(family_cls.backbone_from_config(saved, build_backbone), VAEConfig.from_dict(saved["vae"]), tokenizer, decoder_tokenizer)

        model = build_checked(make, directory / WEIGHTS_NAME, saved)
        model.load_weights(directory / WEIGHTS_NAME)
        if (directory / PRIOR_NAME).is_file():
            model.aggregate_prior = AggregatePrior.load(directory / PRIOR_NAME, model.config.latent_dim)
        return model.to(device).eval()

    def load_weights(self, path: Path) -> None:
        """Load model.safetensors strictly: a missing, corrupt or mismatched file is a ModelDirError."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        if not path.is_file():
            raise ModelDirError(f"{path} is missing; the model directory is incomplete")
        try:
            load_model(self, str(path), strict=True)
        except (SafetensorError, OSError) as e:
            raise ModelDirError(f"{path} is corrupt or truncated ({e}); re-run `vae finetune` or restore it") from None
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "shape mismatch"
            raise ModelDirError(f"{path} does not match config.json ({first[:200]})") from None

    @property
    def device(self) -> torch.device:
        return self.to_mu.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
