"""Tiny random backbones with small word-level tokenizers, built once per session.

Encoder-decoders: T5, BART. Encoder + causal LM: a BERT encoder with a Llama (grouped-query
attention) or GPT-2 decoder, each decoder with its own tokenizer (other ids, no BOS), as a real pair
(MiniLM + SmolLM2) has.

Each is saved as a Hugging Face model directory, so tests go through the same loading path a
user's local model takes (`--model DIR`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "examples" / "wordnet" / "train.txt"
VALID = ROOT / "examples" / "wordnet" / "valid.txt"


def _tokenizer(lines: list[str], bos: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    tok.train_from_iterator(lines, trainers.WordLevelTrainer(vocab_size=120, special_tokens=specials))
    single = "<s> $A </s>" if bos else "$A </s>"
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 3), ("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>"
    )


def _lm_tokenizer(lines: list[str]):
    """A decoder's own tokenizer: other ids than the encoder's, one boundary token (GPT-2 style), no BOS added."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.train_from_iterator(lines, trainers.WordLevelTrainer(vocab_size=150, special_tokens=["<unk>", "<|endoftext|>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="<unk>")


def tiny_bert(directory: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tok = _tokenizer(CORPUS.read_text().splitlines(), bos=True)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=128, pad_token_id=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def _tiny_lm(directory: Path, model_class: str, config_class: str, pad_is_eos: bool = False, **config) -> Path:
    """A tiny random causal LM of the named transformers classes, with `_lm_tokenizer`'s vocabulary and
    its one boundary token as BOS and EOS (and PAD, with pad_is_eos), saved with that tokenizer."""
    import torch
    import transformers

    torch.manual_seed(0)
    tok = _lm_tokenizer(CORPUS.read_text().splitlines())
    eos = tok.eos_token_id
    if pad_is_eos:
        config["pad_token_id"] = eos
    cfg = getattr(transformers, config_class)(vocab_size=len(tok), bos_token_id=eos, eos_token_id=eos, **config)
    getattr(transformers, model_class)(cfg).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def tiny_llama(directory: Path) -> Path:
    return _tiny_lm(directory, "LlamaForCausalLM", "LlamaConfig", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)


def tiny_gpt2(directory: Path) -> Path:
    return _tiny_lm(directory, "GPT2LMHeadModel", "GPT2Config", n_embd=32, n_layer=2, n_head=4, n_positions=128,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def tiny_qwen2(directory: Path) -> Path:
    return _tiny_lm(directory, "Qwen2ForCausalLM", "Qwen2Config", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def tiny_gemma3(directory: Path) -> Path:
    """Gemma-3's text model: scaled embeddings, explicit head size, and sliding-window layers (a window of
    4 tokens here, so the tests cross it) beside full-attention ones."""
    return _tiny_lm(directory, "Gemma3ForCausalLM", "Gemma3TextConfig", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128, sliding_window=4,
                    layer_types=["sliding_attention", "sliding_attention", "full_attention"], pad_is_eos=True)


def tiny_t5(directory: Path) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tok = _tokenizer(CORPUS.read_text().splitlines(), bos=False)
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0,
    )
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def tiny_bart(directory: Path) -> Path:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    tok = _tokenizer(CORPUS.read_text().splitlines(), bos=True)
    config = BartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, bos_token_id=3, decoder_start_token_id=1, forced_eos_token_id=None,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    )
    BartForConditionalGeneration(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory) -> Path:
    return tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def bart_dir(tmp_path_factory) -> Path:
    return tiny_bart(tmp_path_factory.mktemp("tiny-bart"))


@pytest.fixture(scope="session")
def backbone_dirs(t5_dir, bart_dir) -> dict[str, Path]:
    return {"t5": t5_dir, "bart": bart_dir}


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def more_lm_dirs(tmp_path_factory) -> dict[str, Path]:
    """Qwen2 and Gemma-3 decoders: the architectures' own tests (tests/test_decoders.py)."""
    return {"qwen2": tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2")), "gemma3": tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))}


@pytest.fixture(scope="session")
def lm_dirs(llama_dir, gpt2_dir) -> dict[str, Path]:
    """Causal LM decoders by name, for tests run on each."""
    return {"llama": llama_dir, "gpt2": gpt2_dir}


FAMILIES = ["t5", "bart", "causal, its own reader", "causal, with BERT"]
"""The model families that family_vaes builds, for tests parametrized over them."""


@pytest.fixture(scope="module")
def family_vaes(t5_dir, bart_dir, bert_dir, llama_dir) -> dict:
    """One untrained VAE (latent 8, seed 0, eval mode) of each of FAMILIES: T5, BART, the Llama reading itself, and BERT
    beside the Llama. Built anew for each test module; tests must not train them."""
    import torch

    from vaecli.config import VAEConfig
    from vaecli.modeling.backbones import build_causal_vae, build_vae

    torch.manual_seed(0)
    config = dict(latent_dim=8)
    return {
        "t5": build_vae(str(t5_dir), VAEConfig(**config)).eval(),
        "bart": build_vae(str(bart_dir), VAEConfig(**config)).eval(),
        "causal, its own reader": build_causal_vae("decoder", str(llama_dir), VAEConfig(**config)).eval(),
        "causal, with BERT": build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(**config)).eval(),
    }


@pytest.fixture
def corpus() -> Path:
    return CORPUS


@pytest.fixture
def valid() -> Path:
    return VALID
