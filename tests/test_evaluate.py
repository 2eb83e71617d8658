"""Estimators checked where the truth is known, and `vae evaluate` end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from vaecli.backbones import build_vae
from vaecli.cli import app
from vaecli.config import VAEConfig
from vaecli.evaluate import corpus_bleu, derangement, evaluate
from vaecli.metrics import active_units, mutual_information

TEXTS = ["the old house", "he breathed new life into the old house", "the priest said mass", "a dog", "she soaks up foreign languages"]


def test_mi_matches_closed_form_for_gaussian_posteriors():
    """mu ~ N(0, s^2), q(z|x) = N(mu, v): q(z) = N(0, s^2 + v), so I = d/2 log(1 + s^2 / v)."""
    gen = torch.Generator().manual_seed(0)
    n, d, s2, v = 4000, 2, 4.0, 1.0
    mu = torch.randn(n, d, generator=gen) * math.sqrt(s2)
    logvar = torch.full((n, d), math.log(v))
    truth = d / 2 * math.log(1 + s2 / v)
    assert mutual_information(mu, logvar, gen) == pytest.approx(truth, abs=0.06)
    # z independent of x: MI 0, and never capped by a batch size.
    assert mutual_information(torch.zeros(n, d), torch.zeros(n, d), gen) == pytest.approx(0.0, abs=1e-9)
    assert mutual_information(torch.randn(n, 8, generator=gen) * 10, torch.full((n, 8), -6.0), gen) > math.log(256)


def test_active_units_threshold():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(20000, 1, generator=gen)
    base = (base - base.mean()) / base.std(unbiased=False)
    mu = torch.cat([base * math.sqrt(v) for v in (0.5, 0.02, 0.005, 0.0)], dim=1)
    assert active_units(mu) == 2


def test_bleu_known_values():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert corpus_bleu(["a b c"], ["x y z w"]) == 0.0
    # 6-word hypothesis vs 7-word reference: precisions 6/6, 5/5, 4/4, 3/3; brevity exp(1 - 7/6)
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat today"]) == pytest.approx(100 * math.exp(1 - 7 / 6))


def test_derangement_has_no_fixed_point():
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 10, 101):
        p = derangement(n, gen)
        assert sorted(p.tolist()) == list(range(n)) and all(p[i] != i for i in range(n))


@pytest.fixture(scope="module")
def vae(t5_dir):
    torch.manual_seed(0)
    model = build_vae(str(t5_dir), VAEConfig(latent_dim=4)).eval()
    with torch.no_grad():
        model.to_logvar.bias.fill_(-1.0)
        model.to_mu.weight.mul_(30)  # spread posteriors so the bounds differ visibly
        model.to_decoder.weight.mul_(5)
    return model


def test_iw_nll_bounded_by_elbo_and_tightens(vae):
    results = {k: evaluate(vae, TEXTS * 4, iw_samples=k, seed=1, bleu=False) for k in (1, 10, 100)}
    elbo = results[1]["elbo"]
    assert results[100]["nll"] <= elbo
    assert results[100]["nll"] <= results[10]["nll"] <= results[1]["nll"] + 1e-6
    r = results[100]
    assert r["ppl"] == pytest.approx(math.exp(r["nll"] * r["sentences"] / r["tokens"]))
    assert r["tokens"] == sum(len(t.split()) + 1 for t in TEXTS * 4)  # words + EOS in this word-level vocabulary


def test_shuffle_gap_is_zero_when_decoder_ignores_z(t5_dir):
    model = build_vae(str(t5_dir), VAEConfig(latent_dim=4)).eval()
    with torch.no_grad():
        model.to_decoder.weight.zero_()
    r = evaluate(model, TEXTS, iw_samples=2, bleu=False)
    assert r["shuffle_gap"] == pytest.approx(0.0, abs=1e-5)


def test_evaluate_cli_json(vae, tmp_path):
    vae.save_pretrained(tmp_path / "m")
    test = tmp_path / "test.txt"
    test.write_text("\n".join(TEXTS) + "\n")
    r = CliRunner().invoke(app, ["evaluate", str(test), "--model", str(tmp_path / "m"), "--iw-samples", "5", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["sentences"] == 5 and result["iw_samples"] == 5
    assert {"rec", "kl", "elbo", "nll", "ppl", "ppl_word", "mi", "au", "shuffle_gap", "bleu", "exact_match"} <= set(result)
    assert result["elbo"] == pytest.approx(result["rec"] + result["kl"])
    assert 0.0 <= result["exact_match"] <= 1.0
