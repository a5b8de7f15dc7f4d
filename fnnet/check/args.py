"""The arguments of a checked rule: which are differentiated, traced or static; fresh random
arguments shaped like the examples; casting and stacking them.

An example argument is

* **differentiated** when it is a floating array (JAX or NumPy) outside the custom_vjp's
  ``nondiff_argnums`` (or listed in ``argnums``);
* **traced but not differentiated** when it is another array (integer labels or indices, a
  PRNG key): passed through ``jit``/``vmap`` as an argument, cotangent ``None``;
* **static** otherwise (Python numbers, strings, tuples, ``None``; ``nondiff_argnums``
  entries): closed over, never traced, so shape-fixing integers stay Python ints.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Signature", "cast_args", "draw_like", "split_args", "stack_args"]


def _is_array(value: Any) -> bool:
    return isinstance(value, jax.Array | np.ndarray)


def _is_key(value: Any) -> bool:
    return _is_array(value) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)


def _is_floating(value: Any) -> bool:
    return _is_array(value) and not _is_key(value) and jnp.issubdtype(value.dtype, jnp.floating)


@dataclass(frozen=True, eq=False)
class Signature:
    """How the positional arguments of a checked function split (see the module docstring).

    ``names[i]`` names argument ``i`` (from the function's signature, else ``arg{i}``);
    ``diff``, ``traced`` are positions; ``static`` maps the other positions to their values.
    """

    names: tuple[str, ...]
    diff: tuple[int, ...]
    traced: tuple[int, ...]
    static: dict[int, Any]

    @property
    def diff_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.diff)

    def full(self, diff_values: Sequence[Any], traced_values: Sequence[Any]) -> list[Any]:
        """The full positional argument list rebuilt from the three kinds."""
        full: list[Any] = [None] * len(self.names)
        for i, value in self.static.items():
            full[i] = value
        for i, value in zip(self.diff, diff_values, strict=True):
            full[i] = value
        for i, value in zip(self.traced, traced_values, strict=True):
            full[i] = value
        return full

    def call(self, f: Callable, diff_values: Sequence[Any], traced_values: Sequence[Any]):
        """``f`` of the full argument list."""
        return f(*self.full(diff_values, traced_values))

    def diff_values(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(args[i] for i in self.diff)

    def traced_values(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(args[i] for i in self.traced)


def _names(functions: Sequence[Callable | None], count: int) -> tuple[str, ...]:
    for fn in functions:
        if fn is None:
            continue
        try:
            params = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            continue
        if len(params) >= count:
            return tuple(p.name for p in params[:count])
    return tuple(f"arg{i}" for i in range(count))


def split_args(args: Sequence[Any], *, argnums: Sequence[int] | None,
               nondiff_argnums: Sequence[int], name_sources: Sequence[Callable | None],
               caller: str) -> Signature:
    """The :class:`Signature` of ``args``; ``TypeError`` when ``argnums`` names a
    non-floating argument or nothing is left to differentiate."""
    count = len(args)
    names = _names(name_sources, count)
    if argnums is None:
        diff = tuple(i for i, a in enumerate(args) if _is_floating(a) and i not in nondiff_argnums)
    else:
        diff = tuple(sorted({int(i) + count if int(i) < 0 else int(i) for i in argnums}))
        for i in diff:
            if not 0 <= i < count or not _is_floating(args[i]):
                got = type(args[i]).__name__ if 0 <= i < count else "no such argument"
                dtype = getattr(args[i], "dtype", None) if 0 <= i < count else None
                raise TypeError(f"{caller}: argnums entry {i} must be a floating array "
                                f"argument; got {got}{f' of dtype {dtype}' if dtype else ''}")
    if not diff:
        kinds = ", ".join(f"{n}: {type(a).__name__}" for n, a in zip(names, args, strict=True))
        raise TypeError(f"{caller}: no argument to differentiate: pass floating JAX or NumPy "
                        f"arrays (Python floats are static); got ({kinds})")
    traced = tuple(i for i, a in enumerate(args)
                   if i not in diff and _is_array(a) and i not in nondiff_argnums)
    static = {i: a for i, a in enumerate(args) if i not in diff and i not in traced}
    return Signature(names, diff, traced, static)


def cast_args(values: Sequence[Any], dtype: Any) -> tuple[Any, ...]:
    """Floating arrays cast to ``dtype``; everything else as it is."""
    return tuple(jnp.asarray(v, dtype) if _is_floating(v) else v for v in values)


def _is_simplex(a: np.ndarray) -> bool:
    """Rows (last axis) of non-negative entries summing to 1: probabilities, one-hot labels."""
    return (a.ndim >= 1 and a.shape[-1] > 1 and bool(np.all(a >= 0))
            and bool(np.allclose(a.sum(axis=-1), 1.0, atol=1e-5)))


def draw_like(rng: np.random.Generator, value: Any) -> Any:
    """A fresh random array shaped and typed like ``value``, from the same kind of values.

    * rows of probabilities (non-negative, summing to 1 along the last axis; one-hot labels):
      each row's entries permuted, the rows shuffled (still rows of probabilities, the same
      smallest entry, one-hot stays one-hot);
    * other non-negative floats: uniform over ``[min, max]`` of the example (a variance
      stays positive, a probability stays in range);
    * other floats: normal with the example's mean and standard deviation (1 if constant);
    * integers: uniform over ``[min, max]`` of the example (labels stay valid classes,
      indices stay inside their table, repeats occur);
    * anything else (PRNG keys, static values): ``value`` itself.
    """
    if not _is_array(value) or _is_key(value) or value.size == 0:
        return value
    a = np.asarray(value)
    if np.issubdtype(a.dtype, np.floating):
        a64 = a.astype(np.float64)
        if _is_simplex(a64):
            rows = a64.reshape(-1, a64.shape[-1])
            rows = rows[rng.permutation(len(rows))]
            new = np.stack([row[rng.permutation(row.size)] for row in rows]).reshape(a.shape)
        elif np.all(a64 >= 0):
            new = rng.uniform(a64.min(), a64.max(), size=a.shape)
        else:
            std = float(a64.std()) or 1.0
            new = float(a64.mean()) + std * rng.standard_normal(a.shape)
    elif np.issubdtype(a.dtype, np.integer):
        new = rng.integers(int(a.min()), int(a.max()) + 1, size=a.shape)
    else:
        return value
    return jnp.asarray(new, dtype=value.dtype) if isinstance(value, jax.Array) \
        else new.astype(a.dtype)


def stack_args(sets: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """Argument sets (each a sequence of arrays of the same shapes) stacked on a new leading
    axis, argument by argument: what ``vmap`` maps over."""
    return tuple(jnp.stack([jnp.asarray(s[i]) for s in sets]) for i in range(len(sets[0])))
