"""pyproject.toml: metadata that builds without deprecation warnings, and agrees with the README."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info < (3, 11):
    pytest.skip("tomllib needs Python 3.11", allow_module_level=True)

import tomllib  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    """`license = { text = ... }` is deprecated (a warning at every build); the SPDX string needs setuptools >= 77."""
    assert PYPROJECT["project"]["license"] == "MIT"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools).group(1)) >= 77


def test_slow_marker_matches_the_readme():
    (marker,) = PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]
    assert marker == ("slow: tests too long for the default suite (deselected by default; run with -m slow): long fuzzing, "
                      "the real SmolLM2 conversion, long subprocess runs")
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert ("Tests too long for the default suite belong under the `slow` marker (`pytest -m slow`): the fuzz test of model loading "
            "with 2,000 random configs, the real conversion of the embedded SmolLM2, and a few long subprocess runs.") in readme


def test_quick_start_by_hand_is_the_makefile_command():
    """The README's by-hand quick start runs the same `vae finetune` as `make quickstart` (so the quoted lines appear)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    (make_line,) = [line for line in makefile.splitlines() if "$(VAE) finetune" in line]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (readme_line,) = [line for line in readme.splitlines() if line.startswith("vae finetune examples/wordnet/train-10k.txt")]
    # make computes the minutes from what the install left of the budget; the README quotes what they came to
    assert readme_line.split() == make_line.replace("$(VAE)", "vae").replace("$(QUICKSTART_MINUTES)", "4").split()
    assert "QUICKSTART_BUDGET ?= 540" in makefile and "QUICKSTART_REST ?= 200" in makefile


def test_readme_timings_say_which_machine():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert ("Measured in fresh clones on an **idle machine** (2 CPU cores, install and the one-time SmolLM2 conversion included; "
            "`/usr/bin/time -v make quickstart` with `~/.cache/vaecli` emptied first), each on that round's draw of this project's "
            "machine") in readme
    assert "Round nineteen's machine, with the frozen weights cast once a phase: **7 min 46 s**" in readme
    assert "about 590 tests in 4 min 56 s on 2 idle cores (measured on round nineteen's idle machine" in readme
    assert readme.count("On this project's machine (2 CPU cores") == 1  # "Measured" opened with it twice
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme
