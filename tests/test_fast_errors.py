"""Usage errors answer at once: bad options, files, formats and model names are refused before torch
and transformers are imported (which takes 4-38 s on a loaded machine).

Each case runs the real CLI in-process (CliRunner) inside one fresh interpreter, which then reports
whether torch or transformers got imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "examples" / "wordnet" / "train.txt"

SCRIPT = """
import json, sys
from typer.testing import CliRunner
from vaecli.cli import app
results = []
for argv in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, argv)
    results.append([r.exit_code, r.stdout, r.stderr, sorted(m for m in ("torch", "transformers") if m in sys.modules)])
print(json.dumps(results))
"""


def run_cases(cases: list[list[str]], cwd: Path) -> list[tuple[int, str, str, list[str]]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("VAE_MODEL", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [tuple(r) for r in json.loads(proc.stdout)]


def test_usage_errors_come_before_heavy_imports(tmp_path):
    empty, blank = tmp_path / "empty.txt", tmp_path / "blank.txt"
    empty.write_text("")
    blank.write_text("\n\n")
    model = tmp_path / "no-model"
    cases = {
        ("encode", "-f", "nope", "x"): (2, "error: --format must be one of jsonl, tsv, npy, safetensors, not 'nope'"),
        ("encode", "-i", "missing.txt"): (2, "error: missing.txt: no such file"),
        ("encode", "-i", str(empty)): (2, f"error: {empty} has no sentences"),
        ("encode", "x", "--model", str(model)): (1, f"error: no model at {model}; train one with `vae finetune corpus.txt` or pass --model DIR"),
        ("decode", "-i", "missing.jsonl"): (2, "error: missing.jsonl: no such file"),
        ("sample", "-n", "2"): (1, "error: no model at vae-model; train one with `vae finetune corpus.txt` or pass --model DIR"),
        ("finetune", "missing.txt"): (2, "error: missing.txt: no such file"),
        ("finetune", str(CORPUS), "--valid", "missing.txt"): (2, "error: missing.txt: no such file"),
        ("finetune", str(CORPUS), "--beta-max", "-1", "--lr", "0"): (2, "error: --beta-max must be >= 0; --lr must be > 0"),
        ("finetune", str(CORPUS), "--phase", "3"): (2, "error: --phase must be both, 1 or 2, got '3'"),
        ("finetune", str(CORPUS), "--model", "nosuch-model"): (
            2, "error: --model nosuch-model: no local directory or cached hub model named 'nosuch-model'; is it a typo?"),
        ("finetune", str(CORPUS), "--model", "./nosuch-dir"): (2, "error: --model ./nosuch-dir: no such directory"),
        ("evaluate", "missing.txt"): (2, "error: missing.txt: no such file"),
        ("steer", "a", "--from", str(blank), "--to", str(empty)): (2, f"error: {blank} has no sentences"),
        ("plot", str(tmp_path)): (2, f"error: {tmp_path / 'metrics.jsonl'} not found: plot a `vae finetune` output directory"),
    }
    results = run_cases([list(c) for c in cases], tmp_path)
    for (argv, (code, line)), (exit_code, stdout, stderr, heavy) in zip(cases.items(), results):
        assert (exit_code, stdout, stderr) == (code, "", line + "\n"), argv
        assert heavy == [], argv
