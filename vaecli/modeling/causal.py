"""The encoder + causal-LM family: a sentence encoder (BERT, MiniLM, RoBERTa, ...) and a pretrained
decoder-only language model (Llama/SmolLM, Qwen2, GPT-2, Gemma, ...), the shape of Optimus and LangVAE.

The two keep their own tokenizers: the encoder reads its tokens, the decoder reconstructs the sentence
in its own, `start + sentence` in and `sentence + end` out. z reaches the decoder as a key/value
prefix in every layer's cache (sized by the config's key/value heads, so grouped-query attention
works), as an embedding added to every input embedding, or both (Optimus). A decoder-only LM has no
cross-attention, so `memory` injection does not exist here. Positions count from 0 after the prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vaecli.errors import ModelDirError
from vaecli.modeling.distill import context_rows, second_copy
from vaecli.modeling.family import DecodeState, Dims
from vaecli.modeling.layout import DECODER_DIR
from vaecli.modeling.lm_reader import READER_CLASS, LMReader


class EncoderAndLM(nn.Module):
    """The two pretrained networks, as one module (parameter names `encoder.*`, `decoder.*`)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            # BERT's [CLS] pooler is never used (z comes from masked pooling of the last states): dropped,
            # so it costs nothing and no parameter goes without a gradient (DDP refuses that).
            encoder.pooler = None
        self.encoder = encoder
        self.decoder = decoder


def dims_of(encoder_config: Any, decoder_config: Any) -> Dims:
    heads = decoder_config.num_attention_heads
    kv_heads = getattr(decoder_config, "num_key_value_heads", None) or heads
    head_dim = getattr(decoder_config, "head_dim", None) or decoder_config.hidden_size // heads
    return Dims(encoder_config.hidden_size, decoder_config.hidden_size, decoder_config.num_hidden_layers, kv_heads, head_dim,
                encoder_config.num_hidden_layers + 1)


def special_ids(tokenizer: Any) -> tuple[int, int, int]:
    """(start, end, pad) of a causal LM's tokenizer: BOS (else EOS) starts, EOS ends, PAD (else EOS) pads."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ModelDirError("the decoder's tokenizer has no end-of-sequence token; set eos_token in its tokenizer_config.json")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return int(start), int(eos), int(pad)


class DecoderTargets:
    """The decoder's tokens of each sentence (no special tokens), cut to max_length - 1, then the end token.

    A small object, not a method of the family: `datasets` hashes what its map function holds to name its
    cache, and a bound method would hold (and serialise) the whole model."""

    def __init__(self, tokenizer: Any, eos_id: int) -> None:
        self.tokenizer, self.eos_id = tokenizer, eos_id

    def __call__(self, texts: list[str], max_length: int) -> list[list[int]]:
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length - 1)["input_ids"]
        return [row + [self.eos_id] for row in ids]


def same_sentences(input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor, starts: torch.Tensor) -> bool:
    """Whether each row of the encoder's right-padded input is exactly the first `starts` tokens of its teacher row
    (the LM reading its own tokens, none deleted or added)."""
    width = input_ids.shape[1]
    if width > rows.shape[1] or not torch.equal(attention_mask.to(torch.long).sum(dim=1), starts):
        return False
    real = attention_mask.to(torch.bool)
    return torch.equal(input_ids[real], rows[:, :width][real])


class CausalFamily:
    """Operations on an `EncoderAndLM`; holds no parameters of its own."""

    name = "causal"

    def __init__(self, backbone: EncoderAndLM, decoder_tokenizer: Any) -> None:
        self.backbone = backbone
        self.dims = dims_of(backbone.encoder.config, backbone.decoder.config)
        self.decoder_tokenizer = decoder_tokenizer
        self.start_id, self.eos_id, self.pad_id = special_ids(decoder_tokenizer)
        self.target_ids = DecoderTargets(decoder_tokenizer, self.eos_id)

    def encoder_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.backbone.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return (*out.hidden_states[:-1], out.last_hidden_state)

    def new_state(self, batch: int, memory: torch.Tensor | None, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None,
                  z_embedding: torch.Tensor | None, reference: torch.Tensor, cache: bool) -> DecodeState:
        from transformers import DynamicCache

        kv = None
        if cache or prefix is not None:
            kv = DynamicCache(config=self.backbone.decoder.config)
            for layer, (k, v) in enumerate(prefix or []):
                kv.update(k, v, layer)
        return DecodeState(None, None, kv, z_embedding)

    def logits(self, state: DecodeState, ids: torch.Tensor) -> torch.Tensor:
        decoder = self.backbone.decoder
        b, t = ids.shape
        positions = torch.arange(state.position, state.position + t, device=ids.device).unsqueeze(0).expand(b, t)
        kwargs: dict[str, Any] = {"input_ids": ids}
        if state.z_embedding is not None:
            embed = self.input_embeddings()
            kwargs = {"inputs_embeds": embed(ids) + state.z_embedding.to(embed.weight.dtype)}
        # No attention mask: every row starts at position 0 with the start token and padding only
        # follows real tokens, so the causal mask (prefix slots included) is exact.
        out = decoder(position_ids=positions, cache=state.cache, use_cache=state.cache is not None,
                      output_hidden_states=state.keep_hidden, **kwargs)
        if state.keep_hidden:
            state.hidden = out.hidden_states
        state.position += t
        return out.logits

    def context_states(self, dec_in: torch.Tensor, dec_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ids, mask, starts = context_rows(dec_in, dec_mask, self.pad_id)
        with torch.no_grad():
            out = self.backbone.decoder.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        return tuple(second_copy(h, starts, dec_in.shape[1]) for h in out.hidden_states)

    def read_with_context(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dec_in: torch.Tensor,
                          dec_mask: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        # The LM reading its own sentences plainly reads them as the first part of the teacher's rows: one pass, not two.
        rows, rows_mask, starts = context_rows(dec_in, dec_mask, self.pad_id)
        reader = self.backbone.encoder
        if isinstance(reader, LMReader) and reader.plain and same_sentences(input_ids, attention_mask, rows, starts):
            read, hidden = reader.read_in_context(input_ids.shape[1], rows, rows_mask)
            encoded = (*read.hidden_states[:-1], read.last_hidden_state)
            return encoded, tuple(second_copy(h, starts, dec_in.shape[1]) for h in hidden)
        return self.encoder_states(input_ids, attention_mask), self.context_states(dec_in, dec_mask)

    def add_lora(self, rank: int, targets: str, dropout: float = 0.0) -> None:
        """LoRA adapters (peft) on the decoder's attention projections, or on every linear layer of its blocks
        (targets "all": peft's "all-linear", which leaves the output layer alone), in place: the module stays the HF model."""
        try:
            from peft import LoraConfig, inject_adapter_in_model
            from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS
        except ImportError:
            raise ModelDirError("--lora needs peft: pip install peft") from None
        modules: Any = "all-linear"
        if targets == "attention":
            model_type = self.backbone.decoder.config.model_type
            # peft's table of attention projections, else the query / value projections by their usual names (a model
            # type newer than the table: Phi-3's fused qkv_proj is not covered and is refused)
            names = {name.rsplit(".", 1)[-1] for name, m in self.backbone.decoder.named_modules() if isinstance(m, nn.Linear)}
            modules = TARGETS.get(model_type) or sorted(names & {"q_proj", "v_proj"})
            if not modules:
                raise ModelDirError(f"--lora: no attention projections known for model type {model_type!r} (peft's table, or q_proj/v_proj)")
        config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout, target_modules=modules)
        inject_adapter_in_model(config, self.backbone.decoder)

    def input_embeddings(self) -> nn.Module:
        return self.backbone.decoder.get_input_embeddings()

    def output_embeddings(self) -> torch.Tensor:
        return self.backbone.decoder.get_output_embeddings().weight

    @staticmethod
    def self_attention_cache(state: DecodeState) -> Any:
        return state.cache

    def decoder_parameter_ids(self) -> tuple[set[int], set[int]]:
        return {id(p) for p in self.backbone.decoder.parameters()}, {id(p) for p in self.backbone.encoder.parameters()}

    def config_dict(self) -> dict[str, Any]:
        enc, dec = self.backbone.encoder, self.backbone.decoder
        # An LMReader's config is the decoder's own (written twice: config.json stays one shape for both encoders).
        return {"encoder_class": type(enc).__name__, "encoder": enc.config.to_dict(),
                "decoder_class": type(dec).__name__, "decoder": dec.config.to_dict()}

    @staticmethod
    def backbone_from_config(saved: dict[str, Any], build: Any) -> EncoderAndLM:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

        decoder = build(saved["decoder_class"], saved["decoder"], MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        if saved.get("encoder_class") == READER_CLASS:  # the decoder reads its own sentences: nothing more to build
            from vaecli.config import VAEConfig

            vae = VAEConfig.from_dict(saved["vae"])
            return EncoderAndLM(LMReader(decoder, vae.reader_layers, vae.reader_echo), decoder)
        encoder = build(saved["encoder_class"], saved["encoder"], MODEL_MAPPING_NAMES)
        return EncoderAndLM(encoder, decoder)

    def save_tokenizers(self, tokenizer: Any, decoder_tokenizer: Any, directory: Any) -> None:
        from pathlib import Path

        tokenizer.save_pretrained(str(directory))
        decoder_tokenizer.save_pretrained(str(Path(directory) / DECODER_DIR))

    @staticmethod
    def load_tokenizers(directory: Any, load: Any) -> tuple[Any, Any]:
        from pathlib import Path

        return load(directory), load(Path(directory) / DECODER_DIR)
