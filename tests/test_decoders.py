"""More causal-LM architectures as the decoder: Qwen2 and Gemma-3 (scaled embeddings, sliding-window
layers), on tiny random models. The full guarantees run on Llama and GPT-2 in test_causal.py; here each
architecture shows row independence, generation consistent with the training forward, and save -> load."""

from __future__ import annotations

import pytest
import torch

from vaecli.config import VAEConfig
from vaecli.inference.generate import generate
from vaecli.modeling.backbones import build_causal_vae
from vaecli.modeling.vae import VAEModel
from vaecli.training.calibrate import calibrate

SENTENCES = ["he breathed new life into the old house", "the priest said mass", "she soaks up foreign languages like a sponge", "a dog"]
OTHERS = ["you could see the tumor", "the old man", "he said it was a long day at the house", "it"]


@pytest.mark.parametrize("lm", ["qwen2", "gemma3"])
@pytest.mark.parametrize("injection", ["prefix", "embedding", "both"])
def test_decoder_architecture(bert_dir, more_lm_dirs, lm, injection, tmp_path):
    torch.manual_seed(0)
    vae = build_causal_vae(str(bert_dir), str(more_lm_dirs[lm]), VAEConfig(injection=injection, latent_dim=8, prefix_slots=2)).eval()
    with torch.no_grad():
        calibrate(vae, vae.tokenize_batch(SENTENCES + OTHERS), 0.1)
        a_batch, b_batch = vae.tokenize_batch(SENTENCES), vae.tokenize_batch([SENTENCES[0]] + OTHERS[1:])
        a, b = vae(**a_batch, sample=False), vae(**b_batch, sample=False)
    n = int(a_batch["target_mask"][0].sum())  # longer than the sliding window of 4
    assert n > 4
    torch.testing.assert_close(a.logits[0, :n], b.logits[0, :n], atol=1e-4, rtol=0)

    out = generate(vae, a.mu, 10)
    for i, ids in enumerate(out):
        with torch.no_grad():
            logits = vae.decoder_logits(vae.decode_state(a.mu[i : i + 1], cache=False), torch.tensor([[vae.start_id] + ids]))
        assert logits[0].argmax(-1).tolist()[: len(ids)] == ids
    assert out == [generate(vae, a.mu[i : i + 1], 10)[0] for i in range(len(SENTENCES))]

    vae.save_pretrained(tmp_path)
    loaded = VAEModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**a_batch, sample=False).logits, a.logits)
    assert generate(loaded, a.mu, 10) == out


@pytest.mark.parametrize("lm", ["qwen2", "gemma3"])
def test_finetune_and_lora(bert_dir, more_lm_dirs, lm, corpus, tmp_path):
    """Both phases train, with peft's LoRA targets for the architecture; the saved model reloads and decodes."""
    pytest.importorskip("peft")
    from vaecli.api import TextVAE
    from vaecli.config import TrainConfig
    from vaecli.training.trainer import finetune

    out = finetune(TrainConfig(train_file=str(corpus), encoder=str(bert_dir), decoder=str(more_lm_dirs[lm]), out=str(tmp_path / "m"),
                               phase1_steps=2, phase2_steps=2, lora=2, batch_size=8, valid_every=2, save_every=100, bf16="no",
                               valid_size=16, latent_dim=8))
    vae = TextVAE.from_pretrained(out)
    assert any("lora_" in name for name, _ in vae.named_parameters())
    assert len(vae.decode(vae.encode(SENTENCES[:2]))) == 2
