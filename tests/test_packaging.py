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
    assert marker == "slow: tests too long for the default suite (deselected by default; run with -m slow); none yet"
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "Tests too long for the default suite belong under the `slow` marker (`pytest -m slow`); none needs it yet." in readme
