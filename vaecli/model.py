"""The VAE around a pretrained encoder-decoder: pool, heads, inject z, loss.

`VAEModel` holds any Hugging Face encoder-decoder (T5, BART, BERT2BERT `EncoderDecoderModel`) as
`backbone` and adds four small parts: masked pooling, the `mu` / `logvar` heads and one projection
that carries z into the decoder. z is the decoder's only view of the input:

- memory:    z -> k vectors that the decoder's cross-attention reads in place of encoder states;
- prefix:    z -> one key/value slot prepended to every decoder self-attention layer;
- embedding: z -> one vector added to every decoder input embedding.

Every row of a batch is independent: each projection is reshaped batch-first and permuted, never
reshaped across the batch dimension (the authors' code got this wrong).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vaecli.config import VAEConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or inconsistent; one line for stderr."""


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


@dataclass
class DecoderDims:
    enc_hidden: int
    dec_hidden: int
    layers: int
    heads: int
    head_dim: int


def decoder_dims(config: Any) -> DecoderDims:
    """Sizes of an encoder-decoder config, across the families' attribute names."""
    if getattr(config, "model_type", "") == "encoder-decoder":
        enc, dec = config.encoder, config.decoder
        heads = dec.num_attention_heads
        return DecoderDims(enc.hidden_size, dec.hidden_size, dec.num_hidden_layers, heads, dec.hidden_size // heads)
    d_model = getattr(config, "d_model", None) or config.hidden_size
    layers = (
        getattr(config, "num_decoder_layers", None)
        or getattr(config, "decoder_layers", None)
        or config.num_layers
    )
    heads = getattr(config, "decoder_attention_heads", None) or config.num_heads
    head_dim = getattr(config, "d_kv", None) or d_model // heads
    return DecoderDims(d_model, d_model, layers, heads, head_dim)


def special_ids(config: Any) -> tuple[int, int, int]:
    """(decoder_start, eos, pad) token ids of a backbone config."""
    start, eos, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
    if isinstance(eos, list):
        eos = eos[0]
    if start is None or eos is None or pad is None:
        raise ModelDirError(
            "the backbone config lacks decoder_start_token_id, eos_token_id or pad_token_id; set them in its config.json"
        )
    return int(start), int(eos), int(pad)


def masked_pool(states: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Mean or max of `states` (B, T, H) over positions where `mask` (B, T) is 1; padding never counts."""
    keep = mask.to(torch.bool).unsqueeze(-1)
    if how == "mean":
        total = states.masked_fill(~keep, 0.0).sum(dim=1)
        return total / keep.sum(dim=1).clamp(min=1).to(states.dtype)
    return states.masked_fill(~keep, torch.finfo(states.dtype).min).max(dim=1).values


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each example and dimension, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_dims: torch.Tensor, lam: float) -> torch.Tensor:
    """The KL term under free bits, per dimension on the batch-averaged KL (as Optimus).

    Each dimension's KL, averaged over the batch, counts as at least `lam` nats: sum_d max(mean_b KL_bd, lam).
    A dimension below the floor gets no gradient from the KL, but one example's low KL is not floored
    on its own, so the floor is `lam * latent_dim` for the batch, not for each sentence.
    """
    per_dim = kl_dims.mean(dim=0)
    if lam <= 0:
        return per_dim.sum()
    return torch.clamp(per_dim, min=lam).sum()


@dataclass
class DecodeState:
    """What the decoder needs besides tokens: the memory it reads, and the self-attention cache."""

    memory: torch.Tensor
    memory_mask: torch.Tensor
    cache: Any
    z_embedding: torch.Tensor | None

    def select(self, index: torch.Tensor) -> None:
        """Keep / reorder / repeat rows (beam search)."""
        self.memory = self.memory.index_select(0, index)
        self.memory_mask = self.memory_mask.index_select(0, index)
        if self.z_embedding is not None:
            self.z_embedding = self.z_embedding.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder_cache(index)


class VAEModel(nn.Module):
    """A text VAE made of a pretrained encoder-decoder and a few new layers."""

    def __init__(self, backbone: nn.Module, config: VAEConfig, tokenizer: Any = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.tokenizer = tokenizer
        dims = decoder_dims(backbone.config)
        self.dims = dims
        self.start_id, self.eos_id, self.pad_id = special_ids(backbone.config)
        d = config.latent_dim
        self.to_mu = nn.Linear(dims.enc_hidden, d)
        self.to_logvar = nn.Linear(dims.enc_hidden, d)
        if config.injection == "memory":
            self.to_decoder = nn.Linear(d, config.memory_slots * dims.enc_hidden)
        elif config.injection == "prefix":
            self.to_decoder = nn.Linear(d, dims.layers * 2 * dims.heads * dims.head_dim)
        else:
            self.to_decoder = nn.Linear(d, dims.dec_hidden)
        self.reset_new_parameters()

    def reset_new_parameters(self) -> None:
        """Initialise the VAE's own layers deliberately (a backbone's init scheme would not suit them)."""
        nn.init.normal_(self.to_mu.weight, std=0.02)
        nn.init.zeros_(self.to_mu.bias)
        # logvar starts near 0 (unit variance), so the first KL values are moderate.
        nn.init.normal_(self.to_logvar.weight, std=0.002)
        nn.init.zeros_(self.to_logvar.bias)
        nn.init.xavier_uniform_(self.to_decoder.weight)
        nn.init.zeros_(self.to_decoder.bias)

    # -- encoder side ------------------------------------------------------------------------

    def posterior(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar of q(z|x), each (B, latent_dim)."""
        encoder = self.backbone.get_encoder()
        states = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = masked_pool(states, attention_mask, self.config.pooling)
        return self.to_mu(pooled), self.to_logvar(pooled)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    # -- decoder side ------------------------------------------------------------------------

    def decode_state(self, z: torch.Tensor, cache: bool = True) -> DecodeState:
        """Turn z (B, d) into what the decoder reads. A fresh cache every call (forward passes mutate it).

        cache=False (a whole-sequence forward, as in training) keeps no cache unless the prefix lives in it.
        """
        from transformers import DynamicCache, EncoderDecoderCache

        b, dims = z.shape[0], self.dims
        projected = self.to_decoder(z)
        z_embedding, self_cache = None, DynamicCache()
        if self.config.injection == "memory":
            memory = projected.view(b, self.config.memory_slots, dims.enc_hidden)
        else:
            # Cross-attention gets one constant zero vector: z stays the decoder's only view of x.
            memory = projected.new_zeros(b, 1, dims.enc_hidden)
            if self.config.injection == "prefix":
                # (B, L*2*H*dh) -> (B, L, 2, H, 1, dh) -> (L, 2, B, H, 1, dh): batch stays batch.
                kv = projected.view(b, dims.layers, 2, dims.heads, 1, dims.head_dim).permute(1, 2, 0, 3, 4, 5)
                self_cache = DynamicCache(ddp_cache_data=[(kv[i, 0], kv[i, 1]) for i in range(dims.layers)])
            else:
                z_embedding = projected.unsqueeze(1)
        mask = torch.ones(memory.shape[:2], dtype=torch.long, device=z.device)
        if not cache and self.config.injection != "prefix":
            return DecodeState(memory, mask, None, z_embedding)
        return DecodeState(memory, mask, EncoderDecoderCache(self_cache, DynamicCache()), z_embedding)

    def decoder_logits(self, state: DecodeState, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for the next token at each position; appends to state.cache."""
        from transformers.modeling_outputs import BaseModelOutput

        kwargs: dict[str, Any] = {"decoder_input_ids": decoder_input_ids}
        if state.z_embedding is not None:
            embed = self.backbone.get_decoder().get_input_embeddings()
            kwargs = {"decoder_inputs_embeds": embed(decoder_input_ids) + state.z_embedding.to(embed.weight.dtype)}
        out = self.backbone(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.memory),
            attention_mask=state.memory_mask,
            cache=state.cache,
            use_cache=state.cache is not None,
            **kwargs,
        )
        return out.logits

    def targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoder inputs, labels) for reconstructing the clean input; labels are -100 at padding."""
        ids, mask = input_ids, attention_mask
        if bool((ids[:, 0] == self.start_id).all()) and self.start_id != self.pad_id:
            # BERT-style [CLS] ... [SEP]: the start token is fed, never predicted.
            ids, mask = ids[:, 1:], mask[:, 1:]
        labels = ids.masked_fill(mask == 0, -100)
        start = torch.full_like(ids[:, :1], self.start_id)
        dec_in = torch.cat([start, ids[:, :-1]], dim=1).masked_fill(torch.cat([mask[:, :1], mask[:, :-1]], 1) == 0, self.pad_id)
        return dec_in, labels

    def reconstruction_nll(self, z: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-log p(x|z) per sentence (B,), summed over target tokens; and the logits."""
        dec_in, labels = self.targets(input_ids, attention_mask)
        logits = self.decoder_logits(self.decode_state(z, cache=False), dec_in)
        # Flattened (rows, vocab) layout: cross-entropy over a transposed (B, V, T) view is much slower.
        flat = logits.float().reshape(-1, logits.shape[-1])
        nll = F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="none").view(labels.shape)
        return nll.sum(dim=1), logits

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
    ) -> VAEOutput:
        """Encode `input_ids` (possibly noised), reconstruct `target_ids` (default: the input itself)."""
        mu, logvar = self.posterior(input_ids, attention_mask)
        mu, logvar = mu.float(), logvar.float()
        z = self.reparameterize(mu, logvar, generator) if sample else mu
        if target_ids is None:
            target_ids, target_mask = input_ids, attention_mask
        rec, logits = self.reconstruction_nll(z, target_ids, target_mask)
        kl_dims = kl_per_dim(mu, logvar)
        kl_term = free_bits_kl(kl_dims, free_bits)
        loss = rec.mean() + beta * kl_term
        kl = kl_dims.sum(dim=1)
        return VAEOutput(loss, rec.mean(), kl.mean(), kl_term, mu, logvar, z, logits, rec, kl)

    # -- parameter groups ----------------------------------------------------------------------

    def freeze_decoder(self) -> list[str]:
        """Stop gradients to the backbone decoder's pretrained weights; returns the frozen names.

        Weights shared with the encoder (tied embeddings), the VAE's own layers and the backbone parts
        listed in config.frozen_exempt (freshly initialised at warm-start) keep training.
        """
        encoder_params = {id(p) for p in self.backbone.get_encoder().parameters()}
        decoder_params = {id(p) for p in self.backbone.get_decoder().parameters()}
        head = self.backbone.get_output_embeddings()
        if head is not None:
            decoder_params |= {id(p) for p in head.parameters()}
        frozen = []
        for name, p in self.backbone.named_parameters():
            if id(p) in decoder_params and id(p) not in encoder_params:
                if any(part in name for part in self.config.frozen_exempt):
                    continue
                p.requires_grad_(False)
                frozen.append(name)
        return frozen

    # -- save / load ---------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json, model.safetensors and the tokenizer into `directory` (files written aside, then renamed)."""
        from safetensors.torch import save_model

        from vaecli.io import atomic_write_bytes

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "vaecli_format": FORMAT_VERSION,
            "vae": self.config.to_dict(),
            "backbone_class": type(self.backbone).__name__,
            "backbone": self.backbone.config.to_dict(),
        }
        atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
        tmp = directory / (WEIGHTS_NAME + ".tmp")
        save_model(self, str(tmp))
        tmp.replace(directory / WEIGHTS_NAME)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> VAEModel:
        """Load a vaecli model directory; never touches the network."""
        from vaecli.backbones import backbone_from_config, load_tokenizer

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if directory.exists() and not directory.is_dir():
            raise ModelDirError(f"{directory} is a file, not a model directory (train one with `vae finetune corpus.txt`)")
        if not directory.is_dir():
            raise ModelDirError(f"model directory {directory} not found; train one with `vae finetune corpus.txt --out {directory}`")
        if not config_path.is_file():
            raise ModelDirError(f"{directory} has no {CONFIG_NAME}: not a vaecli model directory (train one with `vae finetune`)")
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
            vae_config = VAEConfig.from_dict(saved["vae"])
            backbone = backbone_from_config(saved["backbone_class"], saved["backbone"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ModelDirError(f"{config_path} is not a valid vaecli config ({e.__class__.__name__}: {e})") from None
        model = cls(backbone, vae_config, load_tokenizer(directory))
        model.load_weights(directory / WEIGHTS_NAME)
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


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(dim=-1)
