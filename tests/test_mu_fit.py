"""--mu-fit: z's head starts reading the directions of the pooled states that predict the sentence's tokens
(vaecli/training/mu_fit.py)."""

from __future__ import annotations

import pytest
import torch

import vaecli.training.mu_fit as mu_fit
from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import ConfigError
from vaecli.modeling.backbones import build_causal_vae, build_vae
from vaecli.training.calibrate import calibrate
from vaecli.training.mu_fit import bags, fit_mu_directions, reduced_rank_directions
from vaecli.training.trainer import finetune

SENTENCES = ["he breathed new life into the old house", "the priest said mass", "she soaks up foreign languages like a sponge",
             "a dog", "you could see the tumor", "the old man", "he said it was a long day at the house", "it"] * 4


def test_bags_mark_each_rows_tokens_once_without_padding_or_the_end():
    labels = torch.tensor([[5, 7, 5, 2, -100], [7, 9, 2, -100, -100]])
    y, vocab = bags(labels, eos_id=2)
    assert vocab.tolist() == [5, 7, 9]
    assert y.tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]


def test_reduced_rank_directions_span_what_predicts_the_targets():
    """Targets that depend on x's first two coordinates only (through a mix, plus noise-free): the two directions found lie
    in those coordinates' plane, have unit norm, and a third is not made up from the rest."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen)
    y = x[:, :2] @ torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 3.0, 0.0]])
    directions = reduced_rank_directions(x, y, rank=3, ridge=1e-6)
    assert directions.shape == (2, 6)
    torch.testing.assert_close(directions.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(directions[:, 2:], torch.zeros(2, 4), atol=1e-4, rtol=0)
    assert torch.linalg.matrix_rank(directions[:, :2]) == 2


def _families(t5_dir, bert_dir, llama_dir):
    torch.manual_seed(0)
    yield "causal", build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(injection="both", latent_dim=16, prefix_slots=2)).eval()
    torch.manual_seed(0)
    yield "seq2seq", build_vae(str(t5_dir), VAEConfig(latent_dim=16)).eval()


def test_fit_sets_the_heads_directions_in_each_family(t5_dir, bert_dir, llama_dir):
    """For both families: the first rows of to_mu become the fit's directions at their old norms, the bias zero, the other
    rows untouched; the directions are those of reduced_rank_directions on the same pooled states and bags; calibration
    afterwards still gives every dimension unit spread."""
    for family, vae in _families(t5_dir, bert_dir, llama_dir):
        batch = vae.tokenize_batch(SENTENCES)
        before = vae.to_mu.weight.detach().clone()
        with torch.no_grad():
            pooled = vae.pooled(batch["input_ids"], batch["attention_mask"]).float()
            _, labels = vae.targets(batch.get("target_ids", batch["input_ids"]), batch.get("target_mask", batch["attention_mask"]))
            want = reduced_rank_directions(pooled, bags(labels, vae.eos_id)[0], 16)
            rows = fit_mu_directions(vae, batch)
        assert rows == len(want) > 0, family
        weight = vae.to_mu.weight.detach()
        torch.testing.assert_close(weight[:rows] / weight[:rows].norm(dim=1, keepdim=True), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(weight[:rows].norm(dim=1), before[:rows].norm(dim=1))
        assert torch.equal(weight[rows:], before[rows:]), family
        assert vae.to_mu.bias.abs().sum() == 0
        with torch.no_grad():
            calibrate(vae, batch, 0.1)
            mu, _ = vae.posterior(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(mu.std(dim=0), torch.ones(16), atol=1e-4, rtol=0)


def test_fit_is_per_row_independent_of_chunking(bert_dir, llama_dir, monkeypatch):
    """The encoder reads CHUNK sentences at a time: reading them all at once gives the same head."""
    heads = []
    for chunk in (3, 1000):
        monkeypatch.setattr(mu_fit, "CHUNK", chunk)
        torch.manual_seed(0)
        vae = build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(injection="both", latent_dim=16, prefix_slots=2)).eval()
        with torch.no_grad():
            fit_mu_directions(vae, vae.tokenize_batch(SENTENCES))
        heads.append(vae.to_mu.weight.detach().clone())
    torch.testing.assert_close(heads[0], heads[1], atol=1e-5, rtol=0)


def test_mu_fit_needs_calibration_and_is_off_by_default():
    assert TrainConfig(train_file="x.txt").mu_fit is False
    assert TrainConfig(train_file="x.txt", model="minilm").mu_fit is False
    with pytest.raises(ConfigError, match="--mu-fit sets z's head at calibration: it needs --calibrate"):
        TrainConfig(train_file="x.txt", mu_fit=True, calibrate=False)


def test_finetune_fits_the_head_once_on_the_first_training_sentences(bert_dir, llama_dir, corpus, tmp_path, monkeypatch):
    seen = []
    original = mu_fit.fit_mu_directions

    def spy(model, batch):
        seen.append(len(batch["input_ids"]))
        return original(model, batch)

    monkeypatch.setattr(mu_fit, "fit_mu_directions", spy)
    for fit in (True, False):
        cfg = TrainConfig(train_file=str(corpus), encoder=str(bert_dir), decoder=str(llama_dir), out=str(tmp_path / f"m{fit}"),
                          phase1_steps=1, phase2_steps=0, batch_size=8, valid_size=8, latent_dim=8, bf16="no", mu_fit=fit)
        finetune(cfg)
    lines = sum(1 for line in corpus.read_text().splitlines() if line.strip())
    assert seen == [min(mu_fit.ROWS, lines - min(8, max(1, lines // 20)))]
