"""The VAE itself: row independence, masked pooling, KL arithmetic, save/load, freezing."""

from __future__ import annotations

import pytest
import torch

from vaecli.config import VAEConfig
from vaecli.modeling.backbones import build_vae
from vaecli.modeling.gaussian import free_bits_kl, kl_per_dim
from vaecli.modeling.pooling import masked_pool
from vaecli.modeling.vae import VAEModel

SENTENCES = [
    "he breathed new life into the old house",
    "the priest said mass",
    "she soaks up foreign languages like a sponge",
    "a dog",
]
OTHERS = ["you could see the tumor", "the old man", "he said it was a long day at the house", "it"]


def batch(vae: VAEModel, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(vae.tokenizer(texts, padding=True, return_tensors="pt"))


def run(vae: VAEModel, texts: list[str]):
    enc = batch(vae, texts)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = vae(enc["input_ids"], enc["attention_mask"], generator=gen)
    return out, enc


@pytest.mark.parametrize("family", ["t5", "bart"])
@pytest.mark.parametrize("injection", ["memory", "prefix", "embedding"])
def test_rows_are_independent(backbone_dirs, family, injection):
    """Row 0's mu, z and logits do not move when the other rows change (authors' bug 1)."""
    torch.manual_seed(0)
    vae = build_vae(str(backbone_dirs[family]), VAEConfig(injection=injection, latent_dim=8)).eval()
    with torch.no_grad():  # make z matter a lot, so a leak between rows would show
        vae.to_decoder.weight.mul_(20)
    a, enc_a = run(vae, SENTENCES)
    b, _ = run(vae, [SENTENCES[0]] + OTHERS[1:])
    n = int(enc_a["attention_mask"][0].sum())
    torch.testing.assert_close(a.mu[0], b.mu[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.z[0], b.z[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.logits[0, : n - 1], b.logits[0, : n - 1], atol=1e-4, rtol=0)
    # ... and z is really read: another row's z changes row 0's logits.
    z = a.z.clone()
    z[0] = a.z[1]
    ids, mask = enc_a["input_ids"], enc_a["attention_mask"]
    with torch.no_grad():
        _, moved = vae.reconstruction_nll(z, ids, mask)
    assert (moved[0] - a.logits[0]).abs().max() > 1e-3


def test_prefix_slots_follow_their_row(t5_dir):
    """Each row's prefix key/value comes from its own z: (B, ...) is permuted, never reshaped across rows."""
    vae = build_vae(str(t5_dir), VAEConfig(injection="prefix", latent_dim=8)).eval()
    z = torch.randn(3, 8)
    cache = vae.decode_state(z).cache.self_attention_cache
    for i in range(3):
        alone = vae.decode_state(z[i : i + 1]).cache.self_attention_cache
        for layer in range(vae.dims.layers):
            torch.testing.assert_close(cache.layers[layer].keys[i], alone.layers[layer].keys[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(cache.layers[layer].values[i], alone.layers[layer].values[0], atol=1e-6, rtol=0)


def test_layer_slots_are_each_layers_keys_and_values_with_the_same_gradient():
    """The prefix split into layers by unbind: the slices an index per layer gave, and the same gradient for z's projection."""
    from vaecli.modeling.vae import layer_slots

    torch.manual_seed(0)
    kv = torch.randn(3, 2, 2, 2, 4, 5, requires_grad=True)  # (L, 2, B, H, S, dh)
    weights = torch.randn(3, 2, 2, 2, 4, 5)
    grads = []
    for split in (layer_slots, lambda t: [(t[i, 0], t[i, 1]) for i in range(t.shape[0])]):
        kv.grad = None
        slots = split(kv)
        assert len(slots) == 3 and all(torch.equal(k, kv[i, 0]) and torch.equal(v, kv[i, 1]) for i, (k, v) in enumerate(slots))
        sum(((k * weights[i, 0]).sum() + (v * weights[i, 1]).sum()) for i, (k, v) in enumerate(slots[:2])).backward()  # layer 2 unread
        grads.append(kv.grad)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0][:2], weights[:2]) and not grads[0][2].any()


@pytest.mark.parametrize("how", ["mean", "max"])
def test_pooling_ignores_padding(how):
    states = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    garbage = states.clone()
    garbage[0, 3:] = 1e6
    pooled = masked_pool(garbage, mask, how)
    expected = states[0, :3].mean(0) if how == "mean" else states[0, :3].max(0).values
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[1], states[1].mean(0) if how == "mean" else states[1].max(0).values)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_posterior_ignores_extra_padding(t5_dir, pooling):
    vae = build_vae(str(t5_dir), VAEConfig(pooling=pooling, latent_dim=8)).eval()
    enc = batch(vae, ["the old house"])
    ids = torch.cat([enc["input_ids"], torch.full((1, 6), vae.pad_id)], 1)
    mask = torch.cat([enc["attention_mask"], torch.zeros(1, 6, dtype=torch.long)], 1)
    with torch.no_grad():
        mu, logvar = vae.posterior(enc["input_ids"], enc["attention_mask"])
        mu_pad, logvar_pad = vae.posterior(ids, mask)
    torch.testing.assert_close(mu, mu_pad, atol=1e-6, rtol=0)
    torch.testing.assert_close(logvar, logvar_pad, atol=1e-6, rtol=0)


def test_kl_and_free_bits_arithmetic():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.zeros(2, 2)
    kl = kl_per_dim(mu, logvar)
    assert kl.tolist() == [[0.5, 0.0], [0.0, 0.0]]
    # batch-averaged per dimension: [0.25, 0.0]; floor 0.1 -> 0.25 + 0.1
    assert free_bits_kl(kl, 0.1).item() == pytest.approx(0.35)
    # floor above the first dimension too: 0.3 + 0.3 (not 0.3 per example: not 1.2)
    assert free_bits_kl(kl, 0.3).item() == pytest.approx(0.6)
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(0.25)
    # a dimension under the floor gets no gradient; one above does
    mu = mu.clone().requires_grad_(True)
    free_bits_kl(kl_per_dim(mu, logvar), 0.2).backward()
    assert mu.grad[:, 1].abs().sum() == 0
    assert mu.grad[0, 0] == pytest.approx(0.5)


def test_forward_parts_and_clean_targets(t5_dir):
    vae = build_vae(str(t5_dir), VAEConfig(latent_dim=8)).eval()
    clean = batch(vae, ["the old house is here", "a dog"])
    noisy = batch(vae, ["old is", "dog"])
    with torch.no_grad():
        out = vae(noisy["input_ids"], noisy["attention_mask"], clean["input_ids"], clean["attention_mask"], beta=0.5, free_bits=0.0)
        rec, _ = vae.reconstruction_nll(out.z, clean["input_ids"], clean["attention_mask"])
    torch.testing.assert_close(out.rec, rec.mean())
    torch.testing.assert_close(out.kl, kl_per_dim(out.mu, out.logvar).sum(1).mean())
    torch.testing.assert_close(out.loss, out.rec + 0.5 * out.kl)
    assert out.z.shape == out.mu.shape == out.logvar.shape == (2, 8)


@pytest.mark.parametrize("family", ["t5", "bart"])
@pytest.mark.parametrize("injection", ["memory", "prefix", "embedding"])
def test_save_load_identical(backbone_dirs, family, injection, tmp_path):
    vae = build_vae(str(backbone_dirs[family]), VAEConfig(injection=injection, latent_dim=8)).eval()
    vae.save_pretrained(tmp_path)
    loaded = VAEModel.from_pretrained(tmp_path)
    assert loaded.config == vae.config
    enc = batch(vae, SENTENCES)
    with torch.no_grad():
        a = vae(enc["input_ids"], enc["attention_mask"], sample=False)
        b = loaded(enc["input_ids"], enc["attention_mask"], sample=False)
    assert torch.equal(a.mu, b.mu) and torch.equal(a.logits, b.logits)
    for (name, p), (_, q) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name


def test_freeze_keeps_tied_embeddings_and_new_parts_trainable(t5_dir):
    vae = build_vae(str(t5_dir), VAEConfig(latent_dim=8))
    frozen = set(vae.freeze_decoder())
    assert frozen and all(name.startswith("decoder.") or name == "lm_head.weight" for name in frozen)
    assert vae.backbone.shared.weight.requires_grad  # tied with the encoder (authors' bug 9)
    assert all(p.requires_grad for m in (vae.to_mu, vae.to_logvar, vae.to_decoder) for p in m.parameters())
    assert not any(p.requires_grad for n, p in vae.backbone.decoder.named_parameters() if "embed_tokens" not in n)
