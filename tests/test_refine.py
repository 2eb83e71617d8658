"""Encodings refined by gradient steps (`--refine`, inference.refine) for every model family: closer to giving the sentence
back, each row on its own, the weights untouched, and the same through the API and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import FAMILIES
from vaecli.api import TextVAE
from vaecli.cli import app
from vaecli.config import ENCODE_REFINE, VAEConfig
from vaecli.evaluation.evaluate import evaluate
from vaecli.inference.latent import encode
from vaecli.inference.refine import refine, refine_rows
from vaecli.modeling.backbones import build_causal_vae
from vaecli.modeling.tokens import pad_batch, tokenize
from vaecli.modeling.vae import VAEModel

SENTENCES = ["the old house", "a dog barked at the moon", "she soaks up foreign languages like a sponge", "it rained"]


@pytest.fixture(scope="module")
def models(family_vaes) -> dict[str, VAEModel]:
    return family_vaes


def targets_of(model: VAEModel, texts: list[str]) -> list[list[int]]:
    return model.family.target_ids(texts, model.config.max_length) or tokenize(model.tokenizer, texts, model.config.max_length)[0]


def nll(model: VAEModel, z: np.ndarray, targets: list[list[int]]) -> torch.Tensor:
    batch = pad_batch(targets, model.pad_id)
    with torch.no_grad():
        return model.reconstruction_nll(torch.from_numpy(z), batch["input_ids"], batch["attention_mask"])[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_refining_lowers_every_sentences_reconstruction_loss_and_touches_no_weight(models, family):
    model = models[family]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mu = encode(model, SENTENCES, refine=0).mu
    refined = encode(model, SENTENCES, refine=4).mu
    targets = targets_of(model, SENTENCES)
    assert (nll(model, refined, targets) < nll(model, mu, targets)).all()
    assert not np.array_equal(refined, mu)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize("family", FAMILIES)
def test_each_rows_refinement_is_its_own_whatever_the_batch(models, family):
    """A sentence refined in a batch of four, padded beside longer ones, gets the z it gets alone."""
    model = models[family]
    targets = targets_of(model, SENTENCES)
    mu = encode(model, SENTENCES, refine=0).mu
    together = refine_rows(model, mu, targets, 3, batch_size=4)
    for i in range(len(SENTENCES)):
        alone = refine_rows(model, mu[i : i + 1], targets[i : i + 1], 3, batch_size=1)
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)


def test_zero_steps_give_mu_itself_and_refine_works_under_inference_mode(models):
    model = models["causal, its own reader"]
    mu = encode(model, SENTENCES, refine=0).mu
    assert np.array_equal(refine_rows(model, mu, targets_of(model, SENTENCES), 0, 4), mu)
    batch = pad_batch(targets_of(model, SENTENCES), model.pad_id)
    with torch.inference_mode():  # as evaluate runs: the steps still take their gradients
        z = refine(model, torch.from_numpy(mu), batch["input_ids"], batch["attention_mask"], 2)
    assert z.shape == mu.shape and not torch.equal(z, torch.from_numpy(mu))


@pytest.fixture(scope="module")
def saved(bert_dir, llama_dir, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("refine") / "m"
    build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


def test_the_cli_and_api_refine_by_default_and_refine_0_gives_the_encoders_mu(saved):
    out = saved
    vae = TextVAE.from_pretrained(out)
    mu, default = vae.encode(SENTENCES[:2], refine=0), vae.encode(SENTENCES[:2])
    np.testing.assert_array_equal(default, vae.encode(SENTENCES[:2], refine=ENCODE_REFINE))
    assert not np.array_equal(default, mu)

    def cli(*args: str) -> np.ndarray:
        r = CliRunner().invoke(app, ["encode", *SENTENCES[:2], "--model", str(out), *args])
        assert r.exit_code == 0, r.output
        return np.array([json.loads(line)["mu"] for line in r.stdout.splitlines()], dtype=np.float32)

    np.testing.assert_allclose(cli(), default, atol=1e-6)
    np.testing.assert_allclose(cli("--refine", "0"), mu, atol=1e-6)
    np.testing.assert_allclose(cli("--refine", "2"), vae.encode(SENTENCES[:2], refine=2), atol=1e-6)
    r = CliRunner().invoke(app, ["encode", "x", "--refine", "-1", "--model", str(out)])
    assert r.exit_code == 2


def test_evaluate_reports_token_accuracy_from_mu_and_from_the_refined_encoding(models):
    model = models["causal, its own reader"]
    plain = evaluate(model, SENTENCES, iw_samples=1, samples=0, beam=1, refine=0)
    refined = evaluate(model, SENTENCES, iw_samples=1, samples=0, beam=1, refine=3)
    assert plain["refine"] == 0 and plain["token_accuracy_refined"] is None
    assert refined["refine"] == 3 and refined["token_accuracy"] == plain["token_accuracy"]
    targets = targets_of(model, SENTENCES)
    z = refine_rows(model, encode(model, SENTENCES, refine=0).mu, targets, 3, 32)
    batch = pad_batch(targets, model.pad_id)
    with torch.no_grad():
        hits, tokens = model.token_hits(torch.from_numpy(z), batch["input_ids"], batch["attention_mask"])
    assert refined["token_accuracy_refined"] == pytest.approx(float(hits.sum() / tokens.sum()))


def test_paraphrase_draws_around_the_encoders_mu_unless_asked_to_refine(saved, monkeypatch):
    vae = TextVAE.from_pretrained(saved)
    import vaecli.inference.latent as latent

    centres = []
    real = latent.decode

    def decode(model, z, **args):
        centres.append(z.mean(axis=0))
        return real(model, z, **args)

    monkeypatch.setattr(latent, "decode", decode)
    text = SENTENCES[1]
    for steps, expected in ((0, vae.encode(text, refine=0)), (2, vae.encode(text, refine=2))):
        centres.clear()
        vae.paraphrase(text, 2, scale=0.0, seed=0, refine=steps)  # scale 0: every draw is the centre
        np.testing.assert_allclose(centres[0], expected, atol=1e-5)
    centres.clear()
    vae.paraphrase(text, 2, scale=0.0, seed=0)  # the default
    np.testing.assert_allclose(centres[0], vae.encode(text, refine=0), atol=1e-5)
    r = CliRunner().invoke(app, ["paraphrase", text, "-n", "2", "--seed", "0", "--scale", "3", "--model", str(saved)])
    assert r.exit_code == 0 and r.stdout.splitlines() == TextVAE.from_pretrained(saved).paraphrase(text, 2, scale=3.0, seed=0, refine=0)
