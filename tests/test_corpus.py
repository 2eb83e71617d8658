"""Issue 18, item 1: corpora in the formats people have, read through `datasets`, and their bad inputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vaecli.cli import app
from vaecli.errors import InputError
from vaecli.files.corpus import read_sentences_dataset

SENTENCES = ["the old house", "a dog barked", "she soaks up foreign languages like a sponge"]


def texts(source, **kw) -> tuple[list[str], int]:
    read = read_sentences_dataset(str(source), **kw)
    return read.dataset["text"], read.skipped


@pytest.fixture
def files(tmp_path) -> dict:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {}
    out["csv"] = tmp_path / "c.csv"
    out["csv"].write_text('id,review,stars\n1,the old house,5\n2,"a dog barked",3\n3,,1\n4,"she soaks up foreign languages like a sponge",4\n')
    out["tsv"] = tmp_path / "c.tsv"
    out["tsv"].write_text("review\tid\nthe old house\t1\na dog barked\t2\n  \t3\nshe soaks up foreign languages like a sponge\t4\n")
    out["jsonl"] = tmp_path / "c.jsonl"
    rows = [{"meta": {"text": t, "lang": "en"}, "n": i} for i, t in enumerate(SENTENCES)] + [{"meta": {"text": None, "lang": "en"}, "n": 9}]
    out["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    out["parquet"] = tmp_path / "c.parquet"
    pq.write_table(pa.table({"sentence": SENTENCES + [None], "label": [0, 1, 0, 1]}), out["parquet"])
    out["disk"] = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": SENTENCES, "y": [1, 2, 3]}).save_to_disk(str(out["disk"]))
    return out


def test_every_format_gives_the_sentences_and_counts_the_empty_cells(files):
    assert texts(files["csv"], column="review") == (SENTENCES, 1)
    assert texts(files["tsv"]) == (SENTENCES, 1)  # the one text column
    assert texts(files["jsonl"], column="meta.text") == (SENTENCES, 1)  # a nested key, a null cell
    assert texts(files["parquet"]) == (SENTENCES, 1)
    assert texts(files["disk"]) == (SENTENCES, 0)
    kept = read_sentences_dataset(str(files["csv"]), column="review", keep=["id"]).dataset
    assert kept["id"] == [1, 2, 4]


def test_bad_corpora_are_one_line(files, tmp_path):
    with pytest.raises(InputError, match=r"c\.csv has no column 'body' \(columns: id, review, stars\)$"):
        read_sentences_dataset(str(files["csv"]), column="body")
    with pytest.raises(InputError, match=r"column 'stars' holds Value\('int64'\), not text$"):
        read_sentences_dataset(str(files["csv"]), column="stars")
    with pytest.raises(InputError, match=r"has 2 text columns; choose one with --column \(columns: meta\.text \(Value\('string'\)\), meta\.lang"):
        read_sentences_dataset(str(files["jsonl"]))
    broken = tmp_path / "broken.csv"
    broken.write_text('id,text\n1,ok\n2,fine\n3,"the old house\n4,a dog\n')
    with pytest.raises(InputError, match="broken.csv is not readable as csv: a quote opened on line 4 is never closed$"):
        read_sentences_dataset(str(broken))
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(files["parquet"].read_bytes()[:-20])
    with pytest.raises(InputError, match="bad.parquet is not readable as parquet: not a Parquet file, or a truncated one$"):
        read_sentences_dataset(str(corrupt))
    odd = tmp_path / "c.xlsx"
    odd.write_text("x")
    with pytest.raises(InputError, match=r"c\.xlsx: unknown extension '\.xlsx'; name the format with --format \(txt, csv, tsv"):
        read_sentences_dataset(str(odd))
    assert texts(odd, fmt="txt") == (["x"], 0)


def test_finetune_reads_a_csv_column(t5_dir, files, tmp_path):
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["finetune", str(files["csv"]), "--column", "review", "--model", str(t5_dir), "--out", str(out),
                                 "--phase1-steps", "2", "--phase2-steps", "1", "--batch-size", "2", "--latent-dim", "4", "--bf16", "no"])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0] == "2 training / 1 validation sentences; 1 blank line(s) skipped, 0 truncated to --max-length"
    bad = CliRunner().invoke(app, ["finetune", str(files["jsonl"]), "--model", str(t5_dir), "--out", str(tmp_path / "n")])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and "choose one with --column" in bad.stderr
    assert bad.stderr.count("\n") == 1 and not (tmp_path / "n").exists()


@pytest.fixture(scope="module")
def model_dir(t5_dir, tmp_path_factory):
    from vaecli.config import VAEConfig
    from vaecli.modeling.backbones import build_vae

    out = tmp_path_factory.mktemp("saved")
    build_vae(str(t5_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_encode_keeps_the_columns_asked_for_and_decode_reads_them_back(files, model_dir, fmt):
    from vaecli.api import TextVAE
    from vaecli.files.vector_reader import read_vectors

    r = CliRunner().invoke(app, ["encode", "-i", str(files["csv"]), "--column", "review", "--keep", "id,stars", "-f", fmt,
                                 "--model", str(model_dir)])
    assert r.exit_code == 0, r.output
    assert r.stderr == "skipped 1 blank line(s)\n"
    mu = TextVAE.from_pretrained(model_dir).encode(SENTENCES)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert [(row["id"], row["stars"], row["text"]) for row in rows] == [(1, 5, SENTENCES[0]), (2, 3, SENTENCES[1]), (4, 4, SENTENCES[2])]
    else:
        assert [line.split("\t")[:3] for line in r.stdout.splitlines()] == [["1", "5", SENTENCES[0]], ["2", "3", SENTENCES[1]],
                                                                            ["4", "4", SENTENCES[2]]]
    vectors, texts = read_vectors(r.stdout.encode(), dim=8)
    assert texts == SENTENCES and abs(vectors - mu).max() < 1e-6
    decoded = CliRunner().invoke(app, ["decode", "--model", str(model_dir)], input=r.stdout)
    assert decoded.exit_code == 0 and len(decoded.stdout.splitlines()) == 3


def test_every_command_that_reads_sentences_takes_a_corpus(files, model_dir, tmp_path):
    r = CliRunner().invoke(app, ["evaluate", str(files["parquet"]), "--iw-samples", "2", "--samples", "0", "--json", "--model", str(model_dir)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sentences"] == 3 and r.stderr.splitlines()[0] == "skipped 1 blank line(s)"
    r = CliRunner().invoke(app, ["steer", "the old house", "--from", str(files["jsonl"]), "--to", str(files["jsonl"]), "--column", "meta.text",
                                 "--model", str(model_dir)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["encode", "a dog", "--keep", "id", "--model", str(model_dir)])
    assert r.exit_code == 2 and r.stderr.startswith("error: --keep copies columns of a corpus file")
