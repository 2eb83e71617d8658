"""Estimators checked where the truth is known, and `vae evaluate` end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import VAEConfig
from vaecli.evaluation.evaluate import corpus_bleu, derangement, evaluate
from vaecli.evaluation.metrics import active_units, mutual_information
from vaecli.modeling.backbones import build_vae

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
    # sacrebleu's 13a tokenisation splits punctuation: the same sentence scores 100 however it is spaced
    assert corpus_bleu(["the cat sat on the mat."], ["the cat sat on the mat ."]) == pytest.approx(100.0)


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
    assert {"rec", "kl", "elbo", "nll", "ppl", "ppl_word", "mi", "au", "latent_dim", "shuffle_gap", "bleu", "exact_match", "token_accuracy",
            "fluency_inputs", "fluency_reconstructions", "sample_fluency", "sample_at_limit", "midpoint_fluency"} <= set(result)
    assert result["prior"] == "standard"  # saved without training: no aggregate prior
    assert r.stderr.splitlines() == ["evaluate: importance samples 5/5 sentences", "evaluate: shuffle gap 5/5 sentences",
                                     "evaluate: refined encodings 5/5 sentences", "evaluate: reconstructions 5/5 sentences",
                                     "evaluate: prior samples and midpoints 200/200 sentences"]
    assert result["elbo"] == pytest.approx(result["rec"] + result["kl"])
    assert 0.0 <= result["exact_match"] <= 1.0


def test_iw_nll_does_not_depend_on_rows_per_pass(vae, monkeypatch):
    """All importance samples are drawn at once: passes of 1 row and of 2048 rows give the same estimate."""
    import vaecli.evaluation.evaluate as ev

    big = evaluate(vae, TEXTS * 3, iw_samples=7, seed=2, bleu=False)
    monkeypatch.setattr(ev, "LOGITS_BUDGET", 1)
    assert ev.rows_per_pass(10, 100) == 1
    small = evaluate(vae, TEXTS * 3, iw_samples=7, seed=2, bleu=False)
    assert small["nll"] == pytest.approx(big["nll"], abs=1e-4)


def test_evaluate_reports_progress_per_stage(vae):
    calls = []
    r = evaluate(vae, TEXTS * 8, iw_samples=2, batch_size=16, bleu=False, progress=lambda *a: calls.append(a))
    assert r["latent_dim"] == 4 and 0 <= r["au"] <= 4
    assert calls == [("importance samples", 16, 40), ("importance samples", 32, 40), ("importance samples", 40, 40),
                     ("shuffle gap", 16, 40), ("shuffle gap", 32, 40), ("shuffle gap", 40, 40),
                     ("refined encodings", 16, 40), ("refined encodings", 32, 40), ("refined encodings", 40, 40)]  # reconstructions: the CLI test


def test_evaluate_table_rows_name_au_of_dims_and_bleu_tokenisation():
    from vaecli.cli.evaluate import metric_rows

    rows = metric_rows({"rec": 54.53, "au": 29, "latent_dim": 32, "bleu": 12.5, "beam": 4})
    assert rows == [
        ("Rec", "54.530", "nats/sentence, z ~ q(z|x)"),
        ("AU", "29 / 32", "active / latent dims, Cov(mu) >= 0.01"),
        ("beam", "4", "beam width of the reconstructions from the encoding (1 = greedy)"),
        ("BLEU", "12.500", "reconstructions from the encoding, corpus BLEU-4 (sacrebleu, 13a tokenisation)"),
    ]


def test_evaluate_progress_lines_off_a_terminal(capsys):
    from vaecli.cli.progress import StageProgress

    now = [0.0]
    with StageProgress(every=30.0, clock=lambda: now[0]) as progress:
        for t, call in ((10, ("importance samples", 100, 1000)), (20, ("importance samples", 200, 1000)),
                        (45, ("importance samples", 400, 1000)), (112.5, ("importance samples", 1000, 1000)),
                        (113.5, ("shuffle gap", 1000, 1000)), (118.5, ("reconstructions", 500, 1000))):
            now[0] = t
            progress(*call)
    assert capsys.readouterr().err.splitlines() == [
        "evaluate: importance samples 100/1000 sentences, ETA 1m30s",
        "evaluate: importance samples 400/1000 sentences, ETA 1m08s",
        "evaluate: importance samples 1000/1000 sentences",
        "evaluate: shuffle gap 1000/1000 sentences",
        "evaluate: reconstructions 500/1000 sentences, ETA 0m05s",
    ]
