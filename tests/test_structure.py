"""Issue 16: one structure a newcomer can see. Settings declared once, errors in one place, imports one way,
the family interface written down, decode streaming, subpackages in the wheel."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import select
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from vaecli import errors
from vaecli.cli import app
from vaecli.cli.common import handled
from vaecli.cli.settings import help_of, option_fields
from vaecli.config import FAMILY_DEFAULTS, RESUMABLE, TrainConfig, VAEConfig

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vaecli"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

# -- settings once ----------------------------------------------------------------------------------


def finetune_params() -> dict[str, object]:
    command = typer.main.get_command(app).commands["finetune"]
    return {p.name: p for p in command.params}


def test_every_train_setting_is_an_option_with_the_fields_name_default_and_help():
    params = finetune_params()
    fields = option_fields()
    assert {f.name for f in dataclasses.fields(TrainConfig)} - {f.name for f in fields} == set()  # every field is settable
    for f in fields:
        param = params[f.name]
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        if flag.isupper():
            assert param.param_type_name == "argument" and param.metavar == flag
            continue
        assert flag in param.opts, (f.name, param.opts)
        assert param.default == f.default, f.name
        assert param.help == help_of(f), f.name
    assert set(params) == {f.name for f in fields} | {"resume", "overwrite"}


def test_a_family_default_is_written_once_and_shown_in_the_help():
    params = finetune_params()
    for name in FAMILY_DEFAULTS["causal"]:
        assert TrainConfig.__dataclass_fields__[name].default is None, name
        assert "for an encoder-decoder" in params[name].help and "for a causal LM" in params[name].help, name
    causal, seq2seq = TrainConfig(train_file="x"), TrainConfig(train_file="x", model="minilm")
    assert {n: getattr(causal, n) for n in FAMILY_DEFAULTS["causal"]} == FAMILY_DEFAULTS["causal"]
    assert {n: getattr(seq2seq, n) for n in FAMILY_DEFAULTS["seq2seq"]} == FAMILY_DEFAULTS["seq2seq"]


def test_model_settings_are_declared_once_for_both_configs():
    vae_fields = {f.name for f in dataclasses.fields(VAEConfig)} - {"frozen_exempt"}
    train = TrainConfig(train_file="x", latent_dim=16, lora=4, bow=0.5)
    assert vae_fields <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert {n: getattr(train.vae_config(), n) for n in vae_fields} == {n: getattr(train, n) for n in vae_fields}
    # a config.json written before the names were unified still loads
    old = VAEConfig.from_dict({"latent_dim": 8, "lora_rank": 2, "bow": True, "injection": "both", "prefix_slots": 1, "init_logvar": 0.0})
    assert (old.lora, old.bow) == (2, 1.0)
    assert set(RESUMABLE) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_the_command_line_reaches_the_config(tmp_path, monkeypatch):
    """--weight-decay (once not settable) and a model setting arrive in TrainConfig; `given` holds what was typed."""
    from vaecli.training import trainer

    seen = {}

    def fake(cfg, report, resume, overwrite, given):
        seen.update(cfg=cfg, given=given)
        return Path(cfg.out)

    monkeypatch.setattr(trainer, "finetune", fake)
    corpus = tmp_path / "c.txt"
    corpus.write_text("the old house\n")
    r = CliRunner().invoke(app, ["finetune", str(corpus), "--weight-decay", "0.01", "--latent-dim", "16", "--no-calibrate",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.weight_decay, cfg.latent_dim, cfg.calibrate, cfg.train_file) == (0.01, 16, False, str(corpus))
    assert seen["given"] == {"train_file", "weight_decay", "latent_dim", "calibrate", "out"}


# -- errors once ------------------------------------------------------------------------------------


@pytest.mark.parametrize("error, code, line", [
    (errors.InputError("bad file"), 2, "error: bad file"),
    (errors.ConfigError("--lr must be > 0"), 2, "error: --lr must be > 0"),
    (errors.VectorSizeError("vectors have 3 values"), 2, "error: vectors have 3 values"),
    (errors.ModelDirError("no model at x"), 1, "error: no model at x"),
    (errors.RunError("x is in use"), 1, "error: x is in use"),
    (errors.Interrupted("d/checkpoint"), 130, "interrupted; checkpoint saved in d/checkpoint; continue with --resume"),
])
def test_every_error_type_has_one_exit_code_and_one_line(error, code, line):
    probe = typer.Typer()

    @probe.command()
    def fail() -> None:
        with handled():
            raise error

    r = CliRunner().invoke(probe, [])
    assert (r.exit_code, r.stderr) == (code, line + "\n")


def test_error_types_live_in_one_module():
    defined = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith("Error") or node.name == "Interrupted"):
                defined.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    assert set(map(tuple, defined.values())) == {("vaecli/errors.py",)}, defined


def test_the_injection_rule_says_the_same_for_options_and_for_a_saved_config(bert_dir, llama_dir):
    from vaecli.modeling.backbones import build_causal_vae

    with pytest.raises(errors.ConfigError) as option:
        TrainConfig(train_file="x", decoder=str(llama_dir), injection="memory")
    with pytest.raises(errors.ModelDirError) as saved:
        build_causal_vae(str(bert_dir), str(llama_dir), VAEConfig(injection="memory"))
    assert str(option.value) == str(saved.value) == ("--injection memory needs cross-attention, which a decoder-only LM lacks: "
                                                     "use prefix, embedding, both")


# -- imports one way --------------------------------------------------------------------------------

LAYERS = ["errors", "config", "files", "modeling", "inference", "evaluation", "training", "api", "cli"]
"""Lowest first: a module may import its own layer and the ones before it, never one after."""


def module_imports() -> dict[str, set[str]]:
    """vaecli module -> the vaecli modules it imports anywhere (function bodies included)."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaecli"):
                for alias in node.names:  # `from vaecli.inference import latent` imports a module
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("vaecli")}
        graph[name] = found - {name}
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1


def test_imports_point_down_the_layers_and_never_in_a_circle():
    graph = module_imports()
    upward = [(m, i) for m, imported in graph.items() for i in imported if layer(m) >= 0 and layer(i) > layer(m)]
    assert upward == []
    visiting, done = [], set()

    def visit(m: str) -> None:
        if m in visiting:
            raise AssertionError(f"import circle: {' -> '.join(visiting[visiting.index(m):] + [m])}")
        if m in done:
            return
        visiting.append(m)
        for i in sorted(graph.get(m, ())):
            if i != "vaecli":  # the package's own __init__ (version, lazy TextVAE)
                visit(i)
        visiting.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_only_the_cli_knows_typer_and_rich_and_files_need_no_torch():
    for path in PACKAGE.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        where = path.relative_to(PACKAGE).parts[0]
        if where != "cli":
            assert not names & {"typer", "rich", "click"}, path
        if where == "files":
            assert "torch" not in names, path


def test_no_module_is_over_450_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 450} == {}


# -- the family interface ---------------------------------------------------------------------------


def test_both_families_implement_the_written_interface():
    from vaecli.modeling.causal import CausalFamily
    from vaecli.modeling.family import Family
    from vaecli.modeling.seq2seq import Seq2SeqFamily

    methods = {n for n, v in vars(Family).items() if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, staticmethod))}
    assert len(methods) >= 10
    for name in methods:
        assert inspect.getdoc(getattr(Family, name)), f"Family.{name} has no docstring"
        for family in (Seq2SeqFamily, CausalFamily):
            # a method, or a small callable the family sets itself (causal.DecoderTargets)
            assert callable(getattr(family, name, None)) or name in family.__init__.__code__.co_names, f"{family.__name__} lacks {name}"
    for attribute in ("name", "dims", "start_id", "eos_id", "pad_id"):
        assert attribute in Family.__annotations__


# -- decode streams ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(t5_dir, tmp_path_factory) -> Path:
    from vaecli.modeling.backbones import build_vae

    out = tmp_path_factory.mktemp("saved")
    build_vae(str(t5_dir), VAEConfig(latent_dim=8)).save_pretrained(out)
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_decode_writes_before_stdin_is_closed(model_dir, fmt):
    from vaecli.api import TextVAE

    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32) * 3
    rows = [json.dumps({"z": v.tolist()}) if fmt == "jsonl" else "\t".join(map(repr, v.tolist())) for v in z]
    proc = subprocess.Popen([sys.executable, "-m", "vaecli", "decode", "--model", str(model_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        proc.stdin.write((rows[0] + "\n").encode())
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "no output while stdin stayed open"
        first = proc.stdout.readline().decode().rstrip("\n")
        proc.stdin.write(("\n".join(rows[1:]) + "\n").encode())
        proc.stdin.close()
        rest = proc.stdout.read().decode().splitlines()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert [first] + rest == TextVAE.from_pretrained(model_dir).decode(z)


def test_streamed_vectors_keep_the_whole_file_rules():
    from vaecli.errors import InputError
    from vaecli.files.vector_reader import read_vectors, stream_vectors

    rows = [[float(i), 1.0] for i in range(5)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    pieces = list(stream_vectors(iter([data[:7], data[7:30], data[30:]]), "v", max_rows=2))
    assert [len(p) for p in pieces] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(pieces), read_vectors(data, name="v")[0])
    bad = b"[1.0, 2.0]\n[1.0, 2.0]\n[1.0, 2.0, 3.0]\n"
    with pytest.raises(InputError, match="^v line 3: vector has 3 values but line 1 has 2$"):
        list(stream_vectors(iter([bad]), "v", max_rows=2))
    with pytest.raises(InputError, match="^no vectors in v$"):
        list(stream_vectors(iter([b"\n\n"]), "v"))


# -- the wheel --------------------------------------------------------------------------------------


def test_a_built_wheel_holds_every_subpackage(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("vaecli-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")}
    assert expected <= names, sorted(expected - names)
    assert {p.split("/")[1] for p in expected if p.count("/") > 1} == {"cli", "files", "modeling", "inference", "training", "evaluation"}
