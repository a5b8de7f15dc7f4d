"""Fixtures: float64 switched on for one test at a time, and the dtypes to sweep."""

from __future__ import annotations

import os

# The suite runs thousands of tiny programs: XLA's compile time, not their run time, is its
# cost. Backend optimisation level 0 (LLVM's least) compiles in ~60% of the CPU time; the
# values are IEEE arithmetic either way. Set before JAX starts its backend (subprocesses
# inherit it); a level the caller set is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_backend_optimization_level=0").strip()

import jax
import jax.numpy as jnp
import pytest


@pytest.fixture
def x64():
    """Enable float64 for the duration of one test (JAX defaults to float32)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """float32 and float64 (the latter with x64 enabled for the test)."""
    if request.param == "float64":
        request.getfixturevalue("x64")
    return jnp.dtype(request.param)


@pytest.fixture
def highest_precision():
    """float32 matmuls and convolutions at full precision for one test: modules that compare
    manual with autodiff or numerical gradients use it (``pytestmark``), because NVIDIA GPUs
    run float32 products in TF32 by default and the comparison is about the rules."""
    with jax.default_matmul_precision("highest"):
        yield
