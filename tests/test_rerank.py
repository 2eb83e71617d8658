"""Beam search's pool of ended hypotheses, and the encoder choosing among them (`--rerank`), for every model family."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.test_generate import ScriptedLM
from vaecli.config import DECODE_BEAM
from vaecli.inference.generate import beam_search, generate, strip_ids
from vaecli.inference.latent import encode
from vaecli.inference.rerank import choose as choose_lists
from vaecli.modeling.vae import VAEModel

A, B, C = "she soaks up foreign languages like a sponge", "he breathed new life into the old house", "the priest said mass"


@pytest.fixture(scope="module")
def models(family_vaes) -> dict[str, VAEModel]:
    return family_vaes


def pool_of(model: VAEModel, texts: list[list[str]], scores: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Hypotheses as beam_search returns them, (rows, keep, T) ids ending in the end token and (rows, keep) scores, for the
    given texts; and the ids of each text (as the decoder's tokenizer writes it)."""
    tok = model.decoder_tokenizer
    ids = [[tok(t, add_special_tokens=False)["input_ids"] for t in row] for row in texts]
    width = max(len(i) for row in ids for i in row) + 1
    out = torch.full((len(texts), len(texts[0]), width), model.pad_id, dtype=torch.long)
    for r, row in enumerate(ids):
        for j, i in enumerate(row):
            out[r, j, : len(i) + 1] = torch.tensor(i + [model.eos_id])
    return out, torch.tensor(scores), [i for row in ids for i in row]


def choose(model, z, ids, scores, margin=1.0):
    return choose_lists(model, z, [strip_ids(ids[:, j], model) for j in range(ids.shape[1])], scores, margin)


def text_of(model: VAEModel, ids: list[int]) -> str:
    return model.decoder_tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_the_pool_keeps_the_best_ended_hypotheses_best_first():
    """ScriptedLM: from the start 3 or 4 (1/2 each); 4 ends (0.9); 3 goes on (0.95) or ends (0.05). [4, end] scores
    (log .5 + log .9) / 2; [3, 3, 3, 3, 3, end], the longest that ends within 6 tokens, (log .5 + 4 log .95 + log .05) / 6,
    above every shorter run of 3s; the rows of a batch are alike and independent."""
    ids, scores = beam_search(ScriptedLM(), torch.zeros(2, 1), 6, 2, keep=3)
    assert ids.shape == (2, 3, 6)
    assert ids[0].tolist() == [[4, 1, 0, 0, 0, 0], [3, 3, 3, 3, 3, 1], [3, 3, 3, 3, 1, 0]] == ids[1].tolist()
    expected = [(math.log(0.5) + math.log(0.9)) / 2, (math.log(0.5) + 4 * math.log(0.95) + math.log(0.05)) / 6,
                (math.log(0.5) + 3 * math.log(0.95) + math.log(0.05)) / 5]
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(scores[0], scores[1])


def test_a_row_where_none_ended_gets_its_best_cut_one_first():
    ids, scores = beam_search(ScriptedLM(), torch.zeros(1, 1), 1, 2, keep=2)
    assert ids[0, 0].tolist() in ([3], [4]) and scores[0, 0] == pytest.approx(math.log(0.5))
    assert scores[0, 1] == -math.inf


@pytest.mark.parametrize("family", ["t5", "bart", "causal, its own reader", "causal, with BERT"])
def test_the_pool_best_is_the_beam_result_whatever_it_keeps(models, family):
    model = models[family]
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1)) * 2
    best = generate(model, z, 10, beam=3)
    for keep in (1, 3):
        ids, scores = beam_search(model, z, 10, 3, keep=keep)
        assert strip_ids(ids[:, 0], model) == best
        assert bool((scores[:, :-1] >= scores[:, 1:]).all())  # best first


@pytest.mark.parametrize("family", ["t5", "bart", "causal, its own reader", "causal, with BERT"])
def test_the_encoder_gives_back_the_sentence_z_was_encoded_from(models, family):
    model = models[family]
    ids, scores, own = pool_of(model, [[A, B, C], [A, B, C]], [[0.0, -0.5, -2.0], [0.0, -1.5, -2.0]])
    texts = [text_of(model, i) for i in own[:3]]
    with torch.inference_mode():
        z = torch.from_numpy(encode(model, texts).mu)  # the mu of each text as it decodes
        # z of B, then of C: in the first row B is within the margin and comes back in place of the beam's best; in the
        # second only the best is (B 1.5 nats below it, C 2)
        assert choose(model, z[[1, 2]], ids, scores, margin=1.0) == [own[1], own[0]]
        assert choose(model, z[[1, 2]], ids, scores, margin=3.0) == [own[1], own[2]]
        assert choose(model, z[[1, 2]], ids, scores, margin=0.1) == [own[0], own[0]]  # only the best qualifies
        # each row alone chooses as in the batch
        assert [choose(model, z[[r + 1]], ids[r : r + 1], scores[r : r + 1], margin=3.0)[0] for r in range(2)] == [own[1], own[2]]


def test_empty_and_missing_hypotheses_are_never_chosen(models):
    model = models["causal, its own reader"]
    ids, scores, own = pool_of(model, [[A, B, C]], [[0.0, -0.2, -math.inf]])
    ids[0, 1] = model.pad_id
    ids[0, 1, 0] = model.eos_id  # an empty hypothesis
    with torch.inference_mode():
        z = torch.from_numpy(encode(model, [text_of(model, own[2])]).mu)
        assert choose(model, z, ids, scores, margin=5.0) == [own[0]]  # C is -inf: not found; the empty one is out


def test_decode_reranks_on_request(tmp_path, models):
    from vaecli.cli import app

    model = models["causal, its own reader"]
    model.save_pretrained(tmp_path / "m")
    runner = CliRunner()
    with torch.inference_mode():
        z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3)) * 2
    np.save(tmp_path / "z.npy", z.numpy())
    plain = runner.invoke(app, ["decode", "-i", str(tmp_path / "z.npy"), "-m", str(tmp_path / "m"), "--no-rerank"])
    reranked = runner.invoke(app, ["decode", "-i", str(tmp_path / "z.npy"), "-m", str(tmp_path / "m"), "--rerank"])
    assert plain.exit_code == 0 and reranked.exit_code == 0, plain.output + reranked.output
    with torch.inference_mode():
        ids, scores = beam_search(model, z, model.config.max_length, DECODE_BEAM, keep=DECODE_BEAM)  # decode's default width
        expected = [text_of(model, i) for i in choose(model, z, ids, scores)]
    assert reranked.stdout.splitlines() == expected
    assert plain.stdout.splitlines() == [text_of(model, i) for i in strip_ids(ids[:, 0], model)]
    assert reranked.stdout != plain.stdout  # on these vectors the encoder chooses otherwise than the beam for some row
