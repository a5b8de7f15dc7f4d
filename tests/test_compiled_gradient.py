"""The compiled gradient of the book's net: the hand rules give XLA no more work than jax.grad.

Issue 11 asked whether the custom_vjp rules leave extra kernels in the optimised HLO (a
first-layer ``dx = g·Wᵀ`` nobody uses, transposes, casts). These tests read the compiled
``jax.jit(jax.grad(model.loss))`` of a two-layer net and hold the answer in place: the
unused ``dx`` is dead code XLA removes, nothing is transposed, and the manual program has
no more kernels than the autodiff one. Structure only, never timings (DESIGN.md).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

import fnnet

N, D, H, C = 100, 784, 50, 10
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%\S+\s*=\s*(\S+)\s+([a-z][\w-]*)\(")
_FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def _entry(grads: str, activation: str) -> list[tuple[str, str]]:
    """``(shape, opcode)`` of each instruction of the compiled gradient's ENTRY computation."""
    model = fnnet.two_layer_net(D, H, C, activation=activation, grads=grads)
    params = model.init(jax.random.key(0))
    hlo = jax.jit(jax.grad(model.loss)).lower(
        params, jnp.zeros((N, D)), jnp.zeros((N,), jnp.int32)).compile().as_text()
    body = hlo[hlo.index("\nENTRY "):].split("\n}")[0].splitlines()[1:]
    return [m.groups() for line in body if (m := _INSTRUCTION.match(line))]


def _kernels(entry: list[tuple[str, str]]) -> int:
    return sum(op not in _FREE for _, op in entry)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_manual_gradient_compiles_to_no_more_kernels_than_autodiff(activation):
    manual, autodiff = _entry("manual", activation), _entry("autodiff", activation)
    assert _kernels(manual) <= _kernels(autodiff), (manual, autodiff)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_first_layer_input_gradient_is_dead_and_nothing_extra_is_transposed(activation):
    manual = _entry("manual", activation)
    # Only the input x itself is (N, D): the bwd's dx = g·W₁ᵀ is computed by nobody.
    assert [op for shape, op in manual if shape.startswith(f"f32[{N},{D}]")] == ["parameter"]

    def moves(entry: list[tuple[str, str]]) -> int:
        return sum(op in ("transpose", "copy", "convert") for _, op in entry)

    # None on the CPU; no more than jax.grad's on any backend's layouts.
    assert moves(manual) <= moves(_entry("autodiff", activation)), manual
