"""pyproject.toml: metadata modern setuptools reads without warnings (``make train`` used to
print ~40 lines of them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_license_is_an_spdx_string_for_a_setuptools_that_reads_it():
    config = tomllib.loads(PYPROJECT.read_text())
    assert config["project"]["license"] == "MIT"  # PEP 639; a {text = …} table is deprecated
    [setuptools] = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) >= 77  # the first to read SPDX strings
    assert not any(c.startswith("License ::") for c in config["project"].get("classifiers", []))
