"""The encoder-decoder family: T5, BART, BERT2BERT (`EncoderDecoderModel`) as one backbone.

The backbone's own encoder reads the sentence; its decoder reconstructs it, reading z through
cross-attention (`memory`), a key/value prefix in its self-attention cache, or an added embedding.
One tokenizer serves both sides, so the targets are the encoder's own token ids.
"""

from __future__ import annotations

from typing import Any

import torch

from vaecli.errors import ModelDirError
from vaecli.modeling.family import DecodeState, Dims


def dims_of(config: Any) -> Dims:
    """Sizes of an encoder-decoder config, across the families' attribute names."""
    if getattr(config, "model_type", "") == "encoder-decoder":
        enc, dec = config.encoder, config.decoder
        heads = dec.num_attention_heads
        return Dims(enc.hidden_size, dec.hidden_size, dec.num_hidden_layers, heads, dec.hidden_size // heads, enc.num_hidden_layers + 1)
    d_model = getattr(config, "d_model", None) or config.hidden_size
    layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None) or config.num_layers
    heads = getattr(config, "decoder_attention_heads", None) or config.num_heads
    head_dim = getattr(config, "d_kv", None) or d_model // heads
    encoder_layers = getattr(config, "encoder_layers", None) or getattr(config, "num_layers", None) or config.num_hidden_layers
    return Dims(d_model, d_model, layers, heads, head_dim, encoder_layers + 1)


class Seq2SeqFamily:
    """Operations on a Hugging Face encoder-decoder; holds no parameters of its own."""

    name = "seq2seq"

    def __init__(self, backbone: Any) -> None:
        self.backbone = backbone
        self.dims = dims_of(backbone.config)
        config = backbone.config
        start, eos, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
        if isinstance(eos, list):
            eos = eos[0]
        if start is None or eos is None or pad is None:
            raise ModelDirError(
                "the backbone config lacks decoder_start_token_id, eos_token_id or pad_token_id; set them in its config.json"
            )
        self.start_id, self.eos_id, self.pad_id = int(start), int(eos), int(pad)

    def encoder_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.backbone.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return (*out.hidden_states[:-1], out.last_hidden_state)

    @staticmethod
    def target_ids(texts: list[str], max_length: int) -> None:
        """None: the decoder reconstructs the encoder's own tokens. (Static: `datasets` hashes it without the model.)"""
        return None

    def new_state(self, batch: int, memory: torch.Tensor | None, prefix: list[tuple[torch.Tensor, torch.Tensor]] | None,
                  z_embedding: torch.Tensor | None, reference: torch.Tensor, cache: bool) -> DecodeState:
        from transformers import DynamicCache, EncoderDecoderCache

        if memory is None:
            # Cross-attention gets one constant zero vector: z stays the decoder's only view of x.
            memory = reference.new_zeros(batch, 1, self.dims.enc_hidden)
        self_cache = DynamicCache(ddp_cache_data=prefix) if prefix is not None else DynamicCache()
        mask = torch.ones(memory.shape[:2], dtype=torch.long, device=memory.device)
        use = cache or prefix is not None
        return DecodeState(memory, mask, EncoderDecoderCache(self_cache, DynamicCache()) if use else None, z_embedding)

    def logits(self, state: DecodeState, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        kwargs: dict[str, Any] = {"decoder_input_ids": decoder_input_ids}
        if state.z_embedding is not None:
            embed = self.input_embeddings()
            kwargs = {"decoder_inputs_embeds": embed(decoder_input_ids) + state.z_embedding.to(embed.weight.dtype)}
        out = self.backbone(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.memory),
            attention_mask=state.memory_mask,
            cache=state.cache,
            use_cache=state.cache is not None,
            **kwargs,
        )
        return out.logits

    def context_states(self, dec_in: torch.Tensor, dec_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError("--distill teaches a causal LM decoder (config.family_problems refuses it before this)")

    def read_with_context(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dec_in: torch.Tensor,
                          dec_mask: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        raise NotImplementedError("--distill teaches a causal LM decoder (config.family_problems refuses it before this)")

    def add_lora(self, rank: int, targets: str, dropout: float = 0.0) -> None:
        raise NotImplementedError("LoRA adapts a causal LM decoder (config.family_problems refuses it before this)")

    def input_embeddings(self) -> torch.nn.Module:
        return self.backbone.get_decoder().get_input_embeddings()

    def output_embeddings(self) -> torch.Tensor:
        return self.backbone.get_output_embeddings().weight

    @staticmethod
    def self_attention_cache(state: DecodeState) -> Any:
        return state.cache.self_attention_cache

    def decoder_parameter_ids(self) -> tuple[set[int], set[int]]:
        """(ids of decoder parameters, ids of parameters the encoder shares with it)."""
        encoder = {id(p) for p in self.backbone.get_encoder().parameters()}
        decoder = {id(p) for p in self.backbone.get_decoder().parameters()}
        head = self.backbone.get_output_embeddings()
        if head is not None:
            decoder |= {id(p) for p in head.parameters()}
        return decoder, encoder

    def config_dict(self) -> dict[str, Any]:
        return {"backbone_class": type(self.backbone).__name__, "backbone": self.backbone.config.to_dict()}

    @staticmethod
    def backbone_from_config(saved: dict[str, Any], build: Any) -> Any:
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

        return build(saved["backbone_class"], saved["backbone"], MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    def save_tokenizers(self, tokenizer: Any, decoder_tokenizer: Any, directory: Any) -> None:
        tokenizer.save_pretrained(str(directory))

    @staticmethod
    def load_tokenizers(directory: Any, load: Any) -> tuple[Any, Any]:
        tok = load(directory)
        return tok, tok
