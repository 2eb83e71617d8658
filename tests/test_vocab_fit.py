"""--vocab-fit: the vocabulary bias's map from z starts as a ridge fit of the sentence's mean output embedding, scaled on
held-out calibration sentences (vaecli/training/vocab_fit.py)."""

from __future__ import annotations

import pytest
import torch

import vaecli.training.vocab_fit as vocab_fit
from vaecli.config import TrainConfig, VAEConfig
from vaecli.errors import ConfigError
from vaecli.modeling.backbones import build_causal_vae
from vaecli.training.calibrate import calibrate
from vaecli.training.trainer import finetune
from vaecli.training.vocab_fit import SIZES, mean_embeddings, ridge_map

CALIBRATION = ["he breathed new life into the old house", "the priest said mass", "she soaks up foreign languages like a sponge",
               "a dog", "you could see the tumor", "the old man", "he said it was a long day at the house", "it"] * 2


def build(bert_dir, llama_dir):
    torch.manual_seed(0)
    return build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(injection="both", latent_dim=16, prefix_slots=2,
                                                                      vocab_bias=True)).eval()


def test_mean_embeddings_average_each_sentences_rows_and_skip_padding():
    table = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    labels = torch.tensor([[0, 1, -100], [2, 2, 0]])
    torch.testing.assert_close(mean_embeddings(table, labels), torch.tensor([[0.5, 1.0], [3.0, 8 / 3]]))


def test_ridge_map_without_a_penalty_recovers_a_linear_map_of_the_centred_targets():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(40, 5, generator=gen)
    true = torch.randn(3, 5, generator=gen)
    targets = z @ true.T + torch.tensor([7.0, -2.0, 0.5])
    weight, bias = ridge_map(z, targets, ridge=0.0)
    torch.testing.assert_close(weight, true, atol=1e-5, rtol=0)
    torch.testing.assert_close(z @ weight.T + bias, targets - targets.mean(dim=0), atol=1e-5, rtol=0)
    shrunk, _ = ridge_map(z, targets, ridge=1.0)
    assert shrunk.norm() < weight.norm()


def test_fit_raises_each_sentences_own_word(bert_dir, llama_dir):
    """Sentences of one word (said 1-4 times, each word in both halves) and a z that names the word: fitted, the bias is
    largest at each sentence's own word, and the size the held-out half chose is one of SIZES and not 0."""
    vae = build(bert_dir, llama_dir)
    words = [w for w, i in sorted(vae.decoder_tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if w.isalpha()][:8]
    sentences = [" ".join([words[i % 8]] * (1 + (i // 8) % 4)) for i in range(64)]
    batch = vae.tokenize_batch(sentences)
    z = torch.nn.functional.one_hot(torch.arange(64) % 8, 16).float() + 0.01 * torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    dec_in, labels = vae.targets(batch["target_ids"], batch["target_mask"])
    with torch.no_grad():
        size = vocab_fit.fit_vocab_bias(vae, z, dec_in, labels)
        top = vae.vocab_bias(z).argmax(dim=-1).tolist()
    assert size in SIZES and size > 0
    assert top == [vae.decoder_tokenizer.convert_tokens_to_ids(s.split()[0]) for s in sentences]


def test_calibration_fits_the_bias_on_its_sentences(bert_dir, llama_dir):
    """calibrate(..., vocab_fit=True) fits the map from the calibrated mu: its report gives the size, and the bias is zero
    exactly where the size is."""
    vae = build(bert_dir, llama_dir)
    batch = vae.tokenize_batch(CALIBRATION)
    with torch.no_grad():
        report = calibrate(vae, batch, 0.1, vocab_fit=True)
        mu, _ = vae.posterior(batch["input_ids"], batch["attention_mask"])
        spread = vae.vocab_bias(mu).std(dim=-1)
    assert report["vocab_bias_rms"] in SIZES
    assert bool((spread > 0).all()) == (report["vocab_bias_rms"] > 0)


def test_fit_that_cannot_tell_sentences_apart_leaves_the_bias_at_zero(bert_dir, llama_dir):
    vae = build(bert_dir, llama_dir)
    with torch.no_grad():
        report = calibrate(vae, vae.tokenize_batch(["the old house"] * 8), 0.1, vocab_fit=True)
    assert report["vocab_bias_rms"] == 0.0
    assert vae.to_vocab.weight.abs().sum() == 0 and vae.to_vocab.bias.abs().sum() == 0


def test_the_fit_is_the_causal_lms_default_and_a_bias_without_one_slot_just_skips_it():
    """On by default for a causal LM, off for an encoder-decoder; the default with several slots or without the bias or
    calibration is not an error (only an explicit --vocab-fit is)."""
    assert TrainConfig(train_file="x.txt").vocab_fit is True
    assert TrainConfig(train_file="x.txt", model="minilm").vocab_fit is False
    for options in ({"vocab_slots": 2}, {"vocab_bias": False}, {"calibrate": False}):
        assert TrainConfig(train_file="x.txt", **options).vocab_fit is True


@pytest.mark.parametrize("options, want", [
    ({"vocab_slots": 2}, True), ({"calibrate": False}, True), ({"vocab_bias": False}, True), ({}, False)])
def test_vocab_fit_needs_a_one_slot_bias_and_calibration(options, want):
    message = "--vocab-fit fits the vocabulary bias at calibration: it needs --vocab-bias with one slot and --calibrate"
    if want:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(train_file="x.txt", vocab_fit=True, **options)
    else:
        assert TrainConfig(train_file="x.txt", vocab_fit=True, **options).vocab_fit is True


def test_calibration_scores_the_fit_in_the_pass_the_prefix_needs_and_fits_as_a_pass_of_its_own(bert_dir, llama_dir):
    """With prefix injection the fit is scored on the logits of calibration's own pass of the decoder: the map and the
    size are those of fit_vocab_bias's pass of its own on the same z."""
    shared, alone = build(bert_dir, llama_dir), build(bert_dir, llama_dir)
    words = [w for w, i in sorted(shared.decoder_tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if w.isalpha()][:8]
    batch = shared.tokenize_batch([" ".join([words[i % 8]] * (1 + (i // 8) % 4)) for i in range(64)])
    with torch.no_grad():
        report = calibrate(shared, batch, 0.1, vocab_fit=True)
        calibrate(alone, batch, 0.1)
        mu, _ = alone.posterior(batch["input_ids"], batch["attention_mask"])
        dec_in, labels = alone.targets(batch["target_ids"], batch["target_mask"])
        size = vocab_fit.fit_vocab_bias(alone, mu, dec_in, labels)
    assert report["vocab_bias_rms"] == size > 0
    torch.testing.assert_close(shared.to_vocab.weight, alone.to_vocab.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(shared.to_vocab.bias, alone.to_vocab.bias, atol=1e-6, rtol=1e-5)


def test_finetune_fits_the_bias_once_on_the_calibration_sentences(bert_dir, llama_dir, corpus, tmp_path, monkeypatch):
    fitted = []
    original = vocab_fit.VocabFit.finish

    def spy(self):
        fitted.append(len(self.z))
        return original(self)

    monkeypatch.setattr(vocab_fit.VocabFit, "finish", spy)
    cfg = TrainConfig(train_file=str(corpus), encoder=str(bert_dir), decoder=str(llama_dir), out=str(tmp_path / "m"), phase1_steps=1,
                      phase2_steps=0, batch_size=8, valid_size=8, latent_dim=8, bf16="no", vocab_fit=True)
    finetune(cfg)
    assert fitted == [256]
