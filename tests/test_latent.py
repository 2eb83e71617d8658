"""Issue 17: the path from tokens to z (which layers, which tokens), token accuracy, fluency, and the aggregate prior."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import ConfigError, ModelDirError
from vaecli.evaluation.fluency import distinct_2, fluency, generated_quality, midpoints
from vaecli.modeling.backbones import build_causal_vae, build_vae
from vaecli.modeling.pooling import Pooler, masked_pool
from vaecli.modeling.prior import AggregatePrior
from vaecli.modeling.vae import VAEModel

SENTENCES = ["the old house", "a dog barked at the moon", "she soaks up foreign languages like a sponge", "it rained"]
POOLS = [("last", "mean"), ("mean", "mean"), ("mix", "mean"), ("mean", "attention"), ("mix", "max")]


def build(family: str, dirs: dict, layers: str, pooling: str) -> VAEModel:
    config = VAEConfig(latent_dim=8, layers=layers, pooling=pooling, pool_queries=3)
    if family == "causal":
        return build_causal_vae(str(dirs["bert"]), str(dirs["llama"]), config).eval()
    return build_vae(str(dirs[family]), config).eval()


@pytest.fixture(scope="module")
def dirs(t5_dir, bart_dir, bert_dir, llama_dir) -> dict:
    return {"t5": t5_dir, "bart": bart_dir, "bert": bert_dir, "llama": llama_dir}


# -- which layers, which tokens ---------------------------------------------------------------------


def test_layer_choices_combine_the_encoders_states_as_defined():
    torch.manual_seed(0)
    states = tuple(torch.randn(2, 5, 6) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(Pooler("last", "mean", 4, 6, 1).combine(states), states[-1])
    assert torch.allclose(Pooler("mean", "mean", 4, 6, 1).combine(states), sum(states) / 4)
    mix = Pooler("mix", "mean", 4, 6, 1)
    assert torch.allclose(mix.combine(states), sum(states) / 4)  # starts as the mean
    with torch.no_grad():
        mix.layer_weights.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0]))
    assert torch.allclose(mix.combine(states), states[-1], atol=1e-5)  # a learned weight can pick one layer
    attention = Pooler("last", "attention", 4, 6, 3)
    out = attention(states, mask)
    assert out.shape == (2, 18) and attention.out_dim == 18
    # queries at 0 attend uniformly to the real tokens: each query's vector is the masked mean
    with torch.no_grad():
        attention.queries.zero_()
    assert torch.allclose(attention(states, mask).view(2, 3, 6)[:, 0], masked_pool(states[-1], mask, "mean"), atol=1e-6)


@pytest.mark.parametrize("family", ["t5", "bart", "causal"])
@pytest.mark.parametrize("layers, pooling", POOLS)
def test_every_pooling_keeps_rows_independent_and_ignores_padding(dirs, family, layers, pooling):
    """A sentence's mu is the same alone and in a batch padded to a longer one's length, for every family."""
    vae = build(family, dirs, layers, pooling)
    batch = vae.tokenize_batch(SENTENCES)
    with torch.no_grad():
        together, _ = vae.posterior(batch["input_ids"], batch["attention_mask"])
        for i, text in enumerate(SENTENCES):
            alone = vae.tokenize_batch([text])
            mu, _ = vae.posterior(alone["input_ids"], alone["attention_mask"])
            torch.testing.assert_close(mu[0], together[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layers, pooling", [("mix", "attention")])
def test_learned_pooling_is_saved_trained_and_loaded(dirs, layers, pooling, tmp_path):
    vae = build("causal", dirs, layers, pooling)
    assert {id(p) for p in vae.pooler.parameters()} <= {id(p) for p in vae.new_parameters()}  # trains at the new layers' rate
    vae.train()
    out = vae(**vae.tokenize_batch(SENTENCES))
    out.loss.backward()
    assert vae.pooler.layer_weights.grad.abs().sum() > 0 and vae.pooler.queries.grad.abs().sum() > 0
    with torch.no_grad():
        vae.pooler.layer_weights.add_(torch.arange(3.0))
    vae.save_pretrained(tmp_path)
    loaded = VAEModel.from_pretrained(tmp_path)
    batch = vae.tokenize_batch(SENTENCES)
    vae.eval()
    with torch.no_grad():
        torch.testing.assert_close(vae(**batch, sample=False).mu, loaded(**batch, sample=False).mu)


def test_attention_pooling_for_a_causal_lm_by_default_mean_for_an_encoder_decoder_and_models_saved_before():
    from vaecli.config import TrainConfig

    assert TrainConfig(train_file="x").vae_config().pooling == "attention"
    assert TrainConfig(train_file="x", pooling="mean").vae_config().pooling == "mean"
    assert TrainConfig(train_file="x", model="minilm").vae_config().pooling == "mean"
    assert VAEConfig.from_dict({"latent_dim": 8, "layers": "mean"}).pooling == "mean"  # config.json saved before the default


def test_bad_pooling_settings_are_refused():
    with pytest.raises(ConfigError, match="--layers must be one of last, mean, mix, got 'first'; --pool-queries must be >= 1, got 0"):
        VAEConfig(layers="first", pool_queries=0)


# -- token accuracy and fluency ---------------------------------------------------------------------


def test_token_accuracy_counts_the_argmax_hits_of_real_tokens(dirs):
    vae = build("causal", dirs, "last", "mean")
    batch = vae.tokenize_batch(SENTENCES)
    with torch.no_grad():
        mu, _ = vae.posterior(batch["input_ids"], batch["attention_mask"])
        hits, tokens = vae.token_hits(mu, batch["target_ids"], batch["target_mask"])
        _, logits = vae.reconstruction_nll(mu, batch["target_ids"], batch["target_mask"])
    _, labels = vae.targets(batch["target_ids"], batch["target_mask"])
    assert tokens.tolist() == batch["target_mask"].sum(dim=1).tolist()  # every token of the sentence and its end, no padding
    expected = [sum(int(logits[i, t].argmax()) == int(labels[i, t]) for t in range(labels.shape[1]) if labels[i, t] != -100)
                for i in range(len(SENTENCES))]
    assert hits.tolist() == expected


def test_fluency_is_the_decoders_own_nll_without_z(dirs):
    vae = build("causal", dirs, "last", "mean")
    lm = vae.backbone.decoder
    ids = vae.family.target_ids(SENTENCES[:1], 64)[0]
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([[vae.start_id] + ids[:-1]])).logits[0]
    expected = float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids))) 
    assert fluency(vae, SENTENCES[:1]) == pytest.approx(expected, rel=1e-5)
    assert distinct_2(["a b a b", "a b c"]) == pytest.approx(3 / 5)


def test_generated_quality_counts_texts_that_never_end(dirs):
    vae = build("causal", dirs, "last", "mean")
    z = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32) * 5
    texts, quality = generated_quality(vae, z)
    assert texts == vae_texts(vae, z)
    from vaecli.inference.generate import generate

    ids = generate(vae, torch.from_numpy(z), vae.config.max_length)  # cut at the end token: full length = never ended
    assert quality["at_limit"] == pytest.approx(sum(len(r) == vae.config.max_length for r in ids) / 6)
    assert quality["words"] == pytest.approx(np.mean([len(t.split()) for t in texts]))
    m = midpoints(np.eye(5, dtype=np.float32), 50, seed=1)
    assert m.shape == (50, 5) and ((m == 0.5).sum(axis=1) == 2).all()  # always between two different rows


def vae_texts(vae: VAEModel, z: np.ndarray) -> list[str]:
    """What `vae decode --beam 1` gives: generated_quality's texts are greedy."""
    from vaecli.inference.latent import decode

    return decode(vae, z, beam=1)


# -- the aggregate prior ----------------------------------------------------------------------------


def test_the_aggregate_prior_has_the_moments_of_the_encodings(tmp_path):
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((4, 4))
    mu = (rng.standard_normal((20000, 4)) @ mixing.T + np.array([1.0, -2.0, 0.5, 3.0])).astype(np.float32)
    prior = AggregatePrior.fit(mu)
    draws = prior.draw(20000, seed=1)
    np.testing.assert_allclose(draws.mean(0), mu.mean(0), atol=0.06)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), np.cov(mu, rowvar=False), atol=0.15)
    np.testing.assert_allclose(prior.draw(5, temperature=0.0), np.tile(prior.mean, (5, 1)))
    prior.save(tmp_path / "prior.safetensors")
    loaded = AggregatePrior.load(tmp_path / "prior.safetensors", 4)
    assert loaded.count == 20000 and np.array_equal(loaded.scale_tril, prior.scale_tril)
    with pytest.raises(ModelDirError, match="does not fit the model's latent of 8 dimensions"):
        AggregatePrior.load(tmp_path / "prior.safetensors", 8)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelDirError, match="corrupt"):
        AggregatePrior.load(tmp_path / "bad.safetensors", 4)


def finetuned(bert_dir, llama_dir, corpus, out, *options: str):
    """(a tiny BERT + Llama VAE trained by the real `vae finetune`, loaded; its training sentences: the corpus less the
    5% held out for validation)."""
    from vaecli.api import TextVAE

    r = CliRunner().invoke(app, ["finetune", str(corpus), "--encoder", str(bert_dir), "--decoder", str(llama_dir), "--out", str(out),
                                 "--batch-size", "8", "--latent-dim", "6", *options])
    assert r.exit_code == 0, r.output
    train = [t.strip() for t in corpus.read_text().splitlines() if t.strip()]
    return TextVAE.from_pretrained(out), train[: len(train) - len(train) // 20]


def test_finetune_fits_the_prior_and_sample_draws_from_it(bert_dir, llama_dir, corpus, tmp_path):
    out = tmp_path / "m"
    vae, train = finetuned(bert_dir, llama_dir, corpus, out, "--phase1-steps", "4", "--phase2-steps", "2", "--bf16", "no")
    prior = vae.aggregate_prior
    assert prior.count == len(train)  # the training sentences (under 5,000), not the held-out ones
    mu = vae.encode(train, refine=0)
    np.testing.assert_allclose(prior.mean, mu.mean(0), atol=1e-4)
    assert np.array_equal(vae.prior(3, seed=0), prior.draw(3, seed=0))
    assert not np.array_equal(vae.prior(3, seed=0, kind="standard"), prior.draw(3, seed=0))
    r = CliRunner().invoke(app, ["sample", "-n", "3", "--seed", "0", "--model", str(out)])
    assert r.exit_code == 0 and r.stdout.splitlines() == vae.decode(prior.draw(3, seed=0), beam=1, no_repeat_ngram=4)
    r = CliRunner().invoke(app, ["sample", "-n", "2", "--prior", "nope", "--model", str(out)])
    assert r.exit_code == 2 and r.stderr == "error: --prior must be aggregate or standard, not 'nope'\n"
    r = CliRunner().invoke(app, ["evaluate", str(corpus), "--limit", "6", "--iw-samples", "2", "--samples", "4", "--json", "--model", str(out)])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["prior"] == "aggregate" and 0 <= result["sample_at_limit"] <= 1 and result["token_accuracy"] <= 1


def test_prior_sentences_sets_how_many_training_sentences_the_prior_is_fitted_to(bert_dir, llama_dir, corpus, tmp_path):
    """--prior-sentences 7: the prior's count is 7 and its mean that of mu over the 7 training sentences its seed draws."""
    vae, train = finetuned(bert_dir, llama_dir, corpus, tmp_path / "m", "--phase1-steps", "2", "--phase2-steps", "0", "--bf16", "no",
                           "--prior-sentences", "7", "--seed", "5")
    rows = np.sort(np.random.default_rng(5).permutation(len(train))[:7])
    assert vae.aggregate_prior.count == 7
    np.testing.assert_allclose(vae.aggregate_prior.mean, vae.encode([train[i] for i in rows], refine=0).mean(0), atol=1e-4)
    with pytest.raises(ConfigError, match=r"--prior-sentences must be >= 2 \(a covariance needs two\), got 1"):
        TrainConfig(train_file="x", prior_sentences=1)


def test_the_prior_is_fitted_in_the_runs_precision(bert_dir, llama_dir, corpus, tmp_path):
    # Under --bf16 yes the prior's encodings run in bf16 autocast, as training did (2.2x faster than fp32 for
    # SmolLM2 reading 5,000 sentences): its mean is that of bf16 encodings, not of fp32 ones.
    vae, train = finetuned(bert_dir, llama_dir, corpus, tmp_path / "m", "--phase1-steps", "2", "--phase2-steps", "0", "--bf16", "yes")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = vae.encode(train, refine=0)
    fp32 = vae.encode(train, refine=0)
    np.testing.assert_allclose(vae.aggregate_prior.mean, bf16.mean(0), atol=1e-5)
    assert np.abs(vae.aggregate_prior.mean - fp32.mean(0)).max() > 1e-4
