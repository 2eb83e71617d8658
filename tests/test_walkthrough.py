"""A new user's walk through the commands: what they tried that broke, each on a tiny model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vaecli.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(t5_dir, tmp_path_factory) -> Path:
    """An untrained VAE on the tiny T5, saved as a model directory (no prior.safetensors)."""
    from vaecli.config import VAEConfig
    from vaecli.modeling.backbones import build_vae

    out = tmp_path_factory.mktemp("walk-model")
    build_vae(str(t5_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr, repr(result.exception))
    assert result.stdout == "" and result.stderr.count("\n") == 1, repr(result.stderr)
    return result.stderr.rstrip("\n")


def pipe_path(text: str) -> str:
    """What a shell's `<(printf ...)` hands a command: /dev/fd/N, a pipe whose writer has finished."""
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    return f"/dev/fd/{r}"


def test_encode_keeps_the_sentence_column_and_a_column_named_text(model_dir, tmp_path):
    corpus = tmp_path / "c.csv"
    corpus.write_text("id,text,title\n1,the old house,A\n2,a dog,B\n")
    m = ["--model", str(model_dir)]
    # the sentences' own column kept beside the text (it was a KeyError traceback)
    r = runner.invoke(app, ["encode", "-i", str(corpus), "--column", "title", "--keep", "id,title", "-f", "tsv", *m])
    assert r.exit_code == 0, (r.stderr, repr(r.exception))
    assert [line.split("\t")[:3] for line in r.stdout.splitlines()] == [["1", "A", "A"], ["2", "B", "B"]]
    # a column named `text` kept while another is encoded, and a name given twice (tracebacks before)
    r = runner.invoke(app, ["encode", "-i", str(corpus), "--column", "title", "--keep", "id,id,text", "-f", "tsv", *m])
    assert r.exit_code == 0, (r.stderr, repr(r.exception))
    assert [line.split("\t")[:3] for line in r.stdout.splitlines()] == [["1", "the old house", "A"], ["2", "a dog", "B"]]
    decoded = runner.invoke(app, ["decode", "--beam", "1", *m], input=r.stdout)
    assert decoded.exit_code == 0 and len(decoded.stdout.splitlines()) == 2
    r = runner.invoke(app, ["encode", "-i", str(corpus), "--column", "title", "--keep", "id,title", *m])
    assert r.exit_code == 0, (r.stderr, repr(r.exception))
    assert [(row["id"], row["title"], row["text"]) for row in map(json.loads, r.stdout.splitlines())] == [(1, "A", "A"), (2, "B", "B")]
    # in jsonl a kept `text`, `mu`, ... would be read back as the text or the vector: one line, exit 2
    line = one_error_line(runner.invoke(app, ["encode", "-i", str(corpus), "--column", "title", "--keep", "text", *m]), 2)
    assert line == "error: --keep text: jsonl records use the key 'text' themselves; keep it with --format tsv, or rename the column"


def test_commands_read_sentences_from_a_process_substitution(model_dir):
    m = ["--model", str(model_dir)]
    r = runner.invoke(app, ["encode", "-i", pipe_path("the old house\na dog\n"), *m])
    assert r.exit_code == 0, (r.stderr, repr(r.exception))
    assert [json.loads(line)["text"] for line in r.stdout.splitlines()] == ["the old house", "a dog"]
    r = runner.invoke(app, ["steer", "the old house", "--from", pipe_path("a sad day\n"), "--to", pipe_path("a happy day\n"), "--beam", "1", *m])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1, (r.stderr, repr(r.exception))
    r = runner.invoke(app, ["evaluate", pipe_path("the old house\na dog\n"), "--iw-samples", "1", "--samples", "0", "--no-bleu", *m])
    assert r.exit_code == 0 and json.loads(r.stdout)["sentences"] == 2, (r.stderr, repr(r.exception))


def test_an_unknown_extension_names_the_commands_own_way_out(model_dir, tmp_path):
    sents = tmp_path / "neg.sents"
    sents.write_text("a sad day\n")
    m = ["--model", str(model_dir)]
    line = one_error_line(runner.invoke(app, ["encode", "-i", str(sents), *m]), 2)
    assert line.endswith("unknown extension '.sents'; name the format with --input-format (txt, csv, tsv, jsonl, json, parquet, disk)")
    line = one_error_line(runner.invoke(app, ["steer", "a", "--from", str(sents), "--to", str(sents), *m]), 2)  # steer has no --format
    assert line.endswith("unknown extension '.sents'; give it one of the extensions .txt, .csv, .tsv, .jsonl, .json, .parquet")
    line = one_error_line(runner.invoke(app, ["evaluate", str(sents), *m]), 2)
    assert line.endswith("unknown extension '.sents'; name the format with --format (txt, csv, tsv, jsonl, json, parquet, disk)")


def test_plot_reads_the_runs_valid_corpus_with_its_column_from_any_directory(t5_dir, corpus, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from vaecli.config import TrainConfig
    from vaecli.training.trainer import finetune

    data = tmp_path / "data"
    data.mkdir()
    rows = [line for line in corpus.read_text().splitlines() if line.strip()][:40]
    with open(data / "valid.csv", "w", newline="") as f:
        csv.writer(f).writerows([["sent", "label"], *([t, "pos" if i % 2 else "neg"] for i, t in enumerate(rows))])
    monkeypatch.chdir(data)  # --valid given relative to where finetune ran, with --column: two text columns
    finetune(TrainConfig(train_file=str(corpus), valid_file="valid.csv", column="sent", model=str(t5_dir), out=str(tmp_path / "run"),
                         phase1_steps=2, phase2_steps=0, batch_size=8, valid_every=2, bf16="no", latent_dim=4))
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["plot", "run"])
    assert r.exit_code == 0, (r.stderr, repr(r.exception))
    assert r.stdout.splitlines() == ["run/curves.png", "run/latent-map.png"]


def test_evaluate_one_sentence_gives_midpoints_null_not_missing(model_dir, tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("the old house\n")
    r = runner.invoke(app, ["evaluate", str(one), "--iw-samples", "1", "--samples", "2", "--no-bleu", "--model", str(model_dir)])
    assert r.exit_code == 0, (r.stderr, repr(r.exception))
    result = json.loads(r.stdout)
    keys = ("midpoint_fluency", "midpoint_at_limit", "midpoint_words", "midpoint_distinct2")
    assert {k: result[k] for k in keys if k in result} == dict.fromkeys(keys)
    assert result["sample_at_limit"] is not None  # prior samples need no second sentence


def test_api_refuses_an_unknown_prior(model_dir):
    from vaecli.api import TextVAE

    vae = TextVAE.from_pretrained(model_dir)
    with pytest.raises(ValueError, match="prior must be 'aggregate' or 'standard', not 'agregate'"):
        vae.sample(2, seed=0, prior="agregate")
    assert vae.prior(2, seed=0, kind="standard").shape == (2, 8)


def test_finetune_refuses_a_pipe_before_any_weights_load(t5_dir, tmp_path):
    # `datasets` reads a corpus more than once, and a pipe's st_size is 0: it trained on nothing, or said the file was empty
    line = one_error_line(runner.invoke(app, ["finetune", pipe_path("the old house\na dog\n"), "--model", str(t5_dir),
                                              "--out", str(tmp_path / "run")]), 2)
    assert line.endswith("is a pipe, not a file: a training corpus is read more than once; save it to a file first")
    assert not (tmp_path / "run").exists()


def test_encode_refuses_a_log_variance_that_npy_cannot_hold(model_dir, tmp_path):
    out = tmp_path / "z.npy"
    line = one_error_line(runner.invoke(app, ["encode", "the old house", "-f", "npy", "--with-logvar", "-o", str(out),
                                              "--model", str(model_dir)]), 2)
    assert line == "error: --with-logvar: npy holds one array, the vectors; use safetensors, jsonl or tsv for the log-variance"
    assert not out.exists()


def test_api_interpolate_needs_both_ends(model_dir):
    from vaecli.api import TextVAE

    vae = TextVAE.from_pretrained(model_dir)
    with pytest.raises(ValueError, match="steps must be at least 2, not 1"):  # a ZeroDivisionError before
        vae.interpolate("the old house", "a dog", steps=1)
    assert len(vae.interpolate("the old house", "a dog", steps=2, beam=1)) == 2


def test_api_refuses_vectors_and_sides_it_cannot_decode(model_dir):
    import numpy as np

    from vaecli.api import TextVAE
    from vaecli.errors import InputError

    vae = TextVAE.from_pretrained(model_dir)
    z = np.zeros((2, 8), dtype=np.float32)
    with pytest.raises(InputError, match=r"not an array of shape \(2, 2, 8\)"):  # "vectors have 8 values, the latent has 8" before
        vae.decode(np.zeros((2, 2, 8)), beam=1)
    z[1, 3] = np.nan
    with pytest.raises(InputError, match="vector 1 holds NaN or infinity"):  # decoded silently before
        vae.decode(z, beam=1)
    with pytest.raises(InputError, match=r"sentences on both sides \(0 from, 1 to\)"):  # a NaN direction before
        vae.steer("the old house", [], ["a dog"], beam=1)
    assert len(vae.decode(np.zeros((2, 8), dtype=np.float32), beam=1)) == 2


def test_encode_refuses_a_corpus_format_on_stdin(model_dir):
    # the header and both cells of each row were encoded as sentences before
    line = one_error_line(runner.invoke(app, ["encode", "-i", "-", "--input-format", "csv", "--model", str(model_dir)],
                                        input="id,text\n1,the old house\n"), 2)
    assert line == "error: --input-format csv reads a file given with -i FILE; stdin and arguments are text, one sentence per line"
