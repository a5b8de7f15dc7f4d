"""Loading an attribute (a class, a function) from a user's Python file named as
``FILE.py:NAME``: what ``fnnet check-layer`` and ``fnnet graph`` take."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

__all__ = ["SpecError", "load_attribute"]


class SpecError(ValueError):
    """A ``FILE.py:NAME`` that names nothing usable (a usage error: exit status 2)."""


def _split(spec: str, what: str) -> tuple[Path, str]:
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name:
        example = "layers.py:Affine" if what == "CLASS" else "graphs.py:f"
        raise SpecError(f"expected FILE.py:{what}, e.g. {example}; got {spec!r}")
    file = Path(path)
    if file.suffix != ".py":
        raise SpecError(f"FILE must be a .py file; got {path!r}")
    if not file.is_file():
        raise SpecError(f"no such file: {path!r}")
    return file, name


def load_attribute(spec: str, what: str = "CLASS") -> Any:
    """The attribute ``NAME`` of the Python file in ``FILE.py:NAME`` (imported as its own
    module, its directory first on ``sys.path`` while it imports)."""
    file, name = _split(spec, what)
    module_name = f"_fnnet_user_{file.stem}_{abs(hash(str(file.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(module_name, file)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"cannot import {str(file)!r}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(file.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(module_name, None)
        raise SpecError(f"importing {str(file)!r} raised {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(file.resolve().parent))
    if not hasattr(module, name):
        found = sorted(n for n, v in vars(module).items()
                       if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                       and getattr(v, "__module__", None) == module_name)
        raise SpecError(f"{str(file)!r} has no {name!r}; it defines "
                        f"{', '.join(found) or 'no classes or functions'}")
    return getattr(module, name)
