"""Checkpoints: save and restore a training state, atomically, with corruption detection.

A checkpoint holds the parameter pytree, the optimiser state (any optax state pytree, e.g.
``optax.EmptyState()`` or tuples of named tuples of arrays), the ``jax.random`` key, the
``step`` and ``epoch`` counters, the run's ``settings`` (a JSON-able dict) and, optionally,
its ``history`` so far (the per-epoch curves: an object of JSON lists), so that a resumed run
reports the whole run::

    path = save_checkpoint("ckpt", step=1200, epoch=3, params=params,
                           opt_state=opt_state, key=key, settings={"lr": 0.1})
    state = restore_latest("ckpt", params_like=net.init(jax.random.key(0)),
                           opt_state_like=optimizer.init(params))
    state.params, state.opt_state, state.key, state.step, state.epoch, state.settings

Layout and format
-----------------
``DIR/step_00001200.npz``, one file per checkpoint, named by step (8 digits, more when the
step needs them). The file is an ordinary zip archive that ``numpy.load`` also opens:

* ``manifest.json`` — format name and version, step, epoch, settings, the history (if
  saved; checkpoints written before fnnet kept it have none), the key's PRNG
  implementation, and for each tree (``params``, ``opt_state``, ``key``) its structure as
  text and one record per leaf: its pytree path (``affine1/W``, ``0/trace/affine1/W``), the
  member holding it, shape, dtype, stored dtype and the SHA-256 of its bytes;
* one ``.npy`` member per leaf, named ``<tree>/<path>.npy``, written and read with
  ``allow_pickle=False``.

Why not orbax-checkpoint
------------------------
DESIGN.md names ``orbax-checkpoint`` unless a simpler format does all of this as well. This
one does, for a state that fits in one host's memory (fnnet's models are small), with no
dependency beyond NumPy — orbax pulls in tensorstore and friends and must match the installed
jax, which matters on a GPU box without network. What each requirement rests on:

* **Atomic writes.** The archive is written to a hidden temporary file in the same
  directory (``.tmp-step_…``), flushed and ``fsync``-ed, then renamed onto its final name with
  ``os.replace`` (atomic on POSIX and Windows within one file system) and the directory is
  ``fsync``-ed. A checkpoint is complete exactly when ``step_<N>.npz`` exists; a crash at any
  point leaves either no new file or a whole one, and the previous checkpoints untouched.
  Older checkpoints are pruned (``keep`` newest by step) only after the rename succeeded.
* **Corruption detection.** A truncated file is not a valid zip (its central directory is at
  the end); each member carries a CRC-32 that ``zipfile`` checks on reading; each array's bytes
  are checked against the SHA-256 in the manifest; the ``.npy`` header's shape and dtype are
  checked against the manifest. :func:`restore_latest` warns about a corrupt newest checkpoint
  (naming the file and the fault) and falls back to the one before.
* **Shape and dtype checks.** Restoring takes the *target structure* (``params_like``,
  ``opt_state_like``: freshly initialised pytrees or ``jax.ShapeDtypeStruct`` leaves) and
  matches leaves by path; a different shape or dtype, or a missing or extra leaf, is a
  :class:`CheckpointError` naming the leaf, e.g. ``params/affine1/W: checkpoint has shape
  (784, 50) float32, model expects (784, 100) float32``. The structure string is recorded for
  the reader but not compared: custom-node reprs differ between jax versions.
* **Bit-exact, no pickle.** Arrays are stored as raw bytes. Dtypes NumPy lacks natively
  (``bfloat16``, the float8 types) are stored as an unsigned-integer view of the same width,
  with the real dtype's name in the manifest. The key is stored as ``jax.random.key_data`` and
  restored with ``jax.random.wrap_key_data`` and its implementation's name (raw ``uint32``
  legacy keys are stored as they are). Nothing is ever unpickled.

* **Validated manifests.** The manifest is checked against its schema before anything is
  trusted: ``step`` and ``epoch`` are integers ``>= 0`` with ``epoch <= step`` (an epoch has
  at least one step) and ``step`` equal to the one in the file name; ``settings`` and ``key``
  are objects; the key's PRNG implementation is one jax knows. A manifest that fails is a
  :class:`CorruptCheckpointError`, so :func:`restore_latest` skips it like a damaged file.
* **Pruning spares what it cannot judge.** Only checkpoints with a lower step than the one
  just written are pruned: a file with a higher step (e.g. a damaged newest checkpoint that a
  resume skipped) neither counts towards ``keep`` nor gets a valid older one removed.

One directory has one writer. :func:`lock_directory` holds an advisory lock
(``fcntl.flock``) on ``DIR/.lock`` for the length of a run; a second process is refused with
:class:`CheckpointLockedError` naming the holder's pid, host and start time (recorded in the
lock file). The kernel releases the lock when its holder exits in any way (``kill -9``
included), so a lock file that is present but not locked is stale and simply taken over.
:func:`save_checkpoint` removes stray temporary files left by a crashed earlier save in the
same directory.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import socket
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp
import numpy as np

from fnnet.atomic import atomic_write

try:  # POSIX; elsewhere lock_directory is a no-op
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

FORMAT = "fnnet-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
SUFFIX = ".npz"
_NAME = re.compile(r"^step_(\d{8,})\.npz$")
_TEMP_PREFIX = ".tmp-step_"
_TREES = ("params", "opt_state", "key")
LOCK_FILE = ".lock"

PyTree = Any


class CheckpointError(ValueError):
    """A checkpoint cannot be restored into the given structure, or none could be read."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or damaged (bad zip, checksum, manifest)."""


class CheckpointLockedError(CheckpointError):
    """Another live process holds the checkpoint directory's lock."""


class CorruptCheckpointWarning(UserWarning):
    """A corrupt checkpoint was skipped by :func:`restore_latest` (the message names it)."""


class Checkpoint(NamedTuple):
    """A restored training state; ``path`` is the file it came from."""

    step: int
    epoch: int
    params: PyTree
    opt_state: PyTree
    key: jax.Array
    settings: dict[str, Any]
    path: Path
    model_state: PyTree = None  # batch-norm running statistics; {} for nets without state
    history: dict[str, list] | None = None  # the run's curves up to this checkpoint, if saved


# --- names ---------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    """``step_00001200.npz`` for ``step=1200`` (8 digits at least)."""
    return f"step_{step:08d}{SUFFIX}"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The complete checkpoints in ``directory`` (final names only), oldest step first.

    Temporary files of an unfinished save never match. A missing directory has none.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step in ``directory``, or ``None``.

    Only the name is looked at (cheap); :func:`restore_latest` also checks the contents.
    """
    paths = list_checkpoints(directory)
    return paths[-1] if paths else None


# --- save ----------------------------------------------------------------------------------


def _flatten(tree: PyTree) -> tuple[list[tuple[str, Any]], Any]:
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p, simple=True, separator="/"), leaf)
            for p, leaf in with_paths], treedef


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic)


def _host_array(leaf: Any) -> np.ndarray:
    """A contiguous host copy of ``leaf``; Python scalars take JAX's dtype (``1.0`` → f32)."""
    # (Not np.ascontiguousarray: it turns a 0-d array into shape (1,).)
    return np.asarray(leaf if _is_array(leaf) else jnp.asarray(leaf), order="C")


def _storable(array: np.ndarray) -> np.ndarray:
    """``array`` itself, or an unsigned-integer view where NumPy has no native dtype (bf16)."""
    if array.dtype.kind == "V" or np.dtype(array.dtype.str) != array.dtype:
        if array.dtype.fields is not None or array.dtype.itemsize not in (1, 2, 4, 8):
            raise TypeError(f"save_checkpoint: cannot store dtype {array.dtype} (not a scalar "
                            f"numeric type)")
        return array.view(f"u{array.dtype.itemsize}")
    return array


def _key_record(key: jax.Array) -> tuple[np.ndarray, dict[str, Any]]:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)), {"typed": True,
                                                      "impl": str(jax.random.key_impl(key)),
                                                      "shape": list(key.shape)}
    if key.dtype != jnp.uint32:
        raise TypeError(f"save_checkpoint: key must be a jax.random.key (or a raw uint32 "
                        f"PRNGKey); got dtype {key.dtype}")
    return np.asarray(key), {"typed": False, "impl": None, "shape": list(key.shape)}


def _check_counter(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"save_checkpoint: {name} must be an int >= 0; got {value!r}")
    return int(value)


def _write_archive(file, manifest: dict[str, Any], members: list[tuple[str, np.ndarray]]):
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in members:
            with archive.open(name, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    step: int,
    epoch: int,
    params: PyTree,
    opt_state: PyTree,
    key: jax.Array,
    settings: dict[str, Any],
    keep: int | None = 3,
    model_state: PyTree = None,
    history: dict[str, list] | None = None,
) -> Path:
    """Write ``DIR/step_<step>.npz`` atomically and keep only the newest ``keep`` checkpoints.

    Args:
      directory: the checkpoint directory (created if missing).
      step, epoch: counters ``>= 0``; ``step`` names the file (an existing checkpoint of the
        same step is replaced, atomically).
      params, opt_state: pytrees of arrays (array-likes: Python and NumPy scalars too).
      key: a ``jax.random.key`` (or a legacy raw ``uint32`` key).
      settings: a JSON-able dict (tuples come back as lists).
      keep: how many checkpoints to keep, newest by step (the one just written is always
        kept); ``None`` keeps all.
      model_state: the model's own state (batch-norm running statistics), stored as a
        fourth tree when it has leaves.
      history: the run's records so far, ``{name: [values]}`` (JSON-able, no NaN: use
        None), kept in the manifest and given back as ``Checkpoint.history``.

    Returns:
      The path of the checkpoint written.
    """
    step, epoch = _check_counter("step", step), _check_counter("epoch", epoch)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"save_checkpoint: keep must be an int >= 1 or None; got {keep!r}")
    if not isinstance(settings, dict):
        raise TypeError(f"save_checkpoint: settings must be a dict; got {type(settings).__name__}")
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"save_checkpoint: settings must be JSON-able: {error}") from None
    if history is not None:
        if not _is_history(history):
            raise TypeError("save_checkpoint: history must be a dict of lists")
        try:
            json.dumps(history, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"save_checkpoint: history must be JSON-able: {error}") from None

    key_data, key_info = _key_record(key)
    members: list[tuple[str, np.ndarray]] = []
    trees: dict[str, Any] = {}
    seen: set[str] = set()
    named_trees = [("params", params), ("opt_state", opt_state), ("key", key_data)]
    if jax.tree.leaves(model_state):
        named_trees.append(("model_state", model_state))
    for tree_name, tree in named_trees:
        leaves, treedef = _flatten(tree)
        records = []
        for path, leaf in leaves:
            array = _host_array(leaf)
            if array.dtype.hasobject:
                raise TypeError(f"save_checkpoint: {tree_name}/{path} is not an array of numbers "
                                f"(dtype {array.dtype}); checkpoints store no Python objects")
            stored = _storable(array)
            member = f"{tree_name}/{path}.npy" if path else f"{tree_name}.npy"
            if member in seen:
                raise ValueError(f"save_checkpoint: two leaves of {tree_name} share the path "
                                 f"{path!r} (a dict key containing '/'?)")
            seen.add(member)
            members.append((member, stored))
            records.append({"path": path, "member": member, "shape": list(array.shape),
                            "dtype": array.dtype.name, "stored_dtype": stored.dtype.str,
                            "sha256": hashlib.sha256(stored.tobytes()).hexdigest()})
        trees[tree_name] = {"treedef": str(treedef), "leaves": records}
    manifest = {"format": FORMAT, "version": VERSION, "step": step, "epoch": epoch,
                "settings": settings, "key": key_info, "jax_version": jax.__version__,
                "trees": trees}
    if history is not None:
        manifest["history"] = history

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stray_temporaries(directory)
    final = atomic_write(directory / checkpoint_name(step),
                         lambda file: _write_archive(file, manifest, members),
                         temp_prefix=f"{_TEMP_PREFIX}{step:08d}-", temp_suffix=SUFFIX)
    if keep is not None:
        _prune(directory, keep, final)
    return final


def _is_history(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, list)
                                           for k, v in value.items())


def _remove_stray_temporaries(directory: Path) -> None:
    for entry in directory.glob(f"{_TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            entry.unlink()


def _step_of(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def _prune(directory: Path, keep: int, just_written: Path) -> None:
    """Remove all but the ``keep - 1`` newest checkpoints *older* than ``just_written``."""
    older = [p for p in list_checkpoints(directory) if _step_of(p) < _step_of(just_written)]
    for path in older[: max(0, len(older) - (keep - 1))]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- restore -------------------------------------------------------------------------------


def _describe(shape, dtype) -> str:
    return f"{tuple(shape)} {jnp.dtype(dtype).name}"


def _leaf_spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a target leaf: an array, a ``ShapeDtypeStruct`` or a Python scalar."""
    if not (_is_array(leaf) or isinstance(leaf, jax.ShapeDtypeStruct)):
        leaf = jnp.asarray(leaf)
    return tuple(leaf.shape), jnp.dtype(leaf.dtype)


def _open(path: Path) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    """The open archive and its manifest, or :class:`CorruptCheckpointError`."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CorruptCheckpointError(f"{path}: not a readable zip archive (truncated or "
                                     f"damaged?): {error}") from None
    try:
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except KeyError:
            raise CorruptCheckpointError(f"{path}: no {MANIFEST} in the archive") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
            raise CorruptCheckpointError(f"{path}: {MANIFEST} is unreadable: {error}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CorruptCheckpointError(f"{path}: {MANIFEST} is not an {FORMAT} manifest")
        if manifest.get("version") != VERSION:
            raise CheckpointError(f"{path}: format version {manifest.get('version')!r} is not "
                                  f"supported (this fnnet reads version {VERSION})")
        _validate_manifest(path, manifest)
        return archive, manifest
    except BaseException:
        archive.close()
        raise


def _match(path: Path, tree_name: str, records: list[dict[str, Any]], like: PyTree):
    """Pair each leaf of ``like`` with its record, or :class:`CheckpointError` naming leaves."""
    leaves, treedef = _flatten(like)
    by_path = {r["path"]: r for r in records}
    wanted = [p for p, _ in leaves]
    missing = [p for p in wanted if p not in by_path]
    extra = [p for p in by_path if p not in set(wanted)]
    problems = []
    if missing:
        problems.append(f"leaves the model has but the checkpoint lacks: "
                        f"{', '.join(f'{tree_name}/{p}' for p in missing)}")
    if extra:
        problems.append(f"leaves the checkpoint has but the model lacks: "
                        f"{', '.join(f'{tree_name}/{p}' for p in extra)}")
    for leaf_path, leaf in leaves:
        record = by_path.get(leaf_path)
        if record is None:
            continue
        shape, dtype = _leaf_spec(leaf)
        if tuple(record["shape"]) != shape or jnp.dtype(record["dtype"]) != dtype:
            problems.append(f"{tree_name}/{leaf_path}: checkpoint has shape "
                            f"{_describe(record['shape'], record['dtype'])}, model expects "
                            f"{_describe(shape, dtype)}")
    if problems:
        raise CheckpointError(f"{path}: {tree_name} does not match the target structure:\n  "
                              + "\n  ".join(problems))
    return [(by_path[p], leaf) for p, leaf in leaves], treedef


def _known_impl(name: str) -> bool:
    try:
        jax.random.key(0, impl=name)
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _validate_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """:class:`CorruptCheckpointError` unless the manifest's fields have the schema's types
    and ranges and ``step`` agrees with the file name (see the module docstring)."""

    def bad(message: str) -> NoReturn:
        raise CorruptCheckpointError(f"{path}: {MANIFEST}: {message}")

    for counter in ("step", "epoch"):
        value = manifest.get(counter)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            bad(f"{counter} must be an integer >= 0; got {value!r}")
    step, epoch = manifest["step"], manifest["epoch"]
    match = _NAME.match(path.name)
    if match and int(match.group(1)) != step:
        bad(f"step {step} does not match the file name (step {int(match.group(1))})")
    if epoch > step:
        bad(f"epoch {epoch} exceeds step {step} (every epoch has at least one step)")
    for field in ("settings", "key", "trees"):
        if not isinstance(manifest.get(field), dict):
            bad(f"{field} must be an object; got {manifest.get(field)!r}")
    key = manifest["key"]
    if not isinstance(key.get("typed"), bool):
        bad(f"key typed must be true or false; got {key.get('typed')!r}")
    if key["typed"] and not (isinstance(key.get("impl"), str) and _known_impl(key["impl"])):
        bad(f"key impl {key.get('impl')!r} is not a PRNG implementation jax knows")
    if "history" in manifest and not _is_history(manifest["history"]):
        bad(f"history must be an object of lists; got {manifest['history']!r}")
    for tree in _TREES:
        entry = manifest["trees"].get(tree)
        if not isinstance(entry, dict) or not isinstance(entry.get("leaves"), list) or not all(
                isinstance(record, dict) for record in entry["leaves"]):
            bad(f"trees.{tree}.leaves must be a list of objects")


def _check_record(record: dict[str, Any]) -> None:
    """``KeyError``/``TypeError``/``ValueError`` unless ``record`` is a well-formed leaf record."""
    for field in ("path", "member", "dtype", "stored_dtype", "sha256"):
        if not isinstance(record[field], str):
            raise TypeError(f"leaf field {field!r} is not a string: {record[field]!r}")
    if not all(isinstance(n, int) and n >= 0 for n in record["shape"]):
        raise ValueError(f"leaf shape is not a list of sizes: {record['shape']!r}")
    jnp.dtype(record["dtype"])  # raises TypeError for an unknown dtype name
    np.dtype(record["stored_dtype"])


def _read_leaf(path: Path, archive: zipfile.ZipFile, tree_name: str,
               record: dict[str, Any]) -> np.ndarray:
    name = f"{tree_name}/{record['path']}"
    try:
        raw = archive.read(record["member"])
    except KeyError:
        raise CorruptCheckpointError(f"{path}: member {record['member']!r} ({name}) is "
                                     f"missing") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise CorruptCheckpointError(f"{path}: member {record['member']!r} ({name}) is "
                                     f"unreadable: {error}") from None
    try:
        stored = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise CorruptCheckpointError(f"{path}: {name} is not a valid .npy array: "
                                     f"{error}") from None
    if (list(stored.shape) != list(record["shape"])
            or stored.dtype != np.dtype(record["stored_dtype"])):
        raise CorruptCheckpointError(f"{path}: {name} holds {_describe(stored.shape, stored.dtype)}"
                                     f" but the manifest says "
                                     f"{tuple(record['shape'])} {record['stored_dtype']}")
    if hashlib.sha256(stored.tobytes()).hexdigest() != record["sha256"]:
        raise CorruptCheckpointError(f"{path}: {name} fails its SHA-256 check (the data is "
                                     f"damaged)")
    dtype = jnp.dtype(record["dtype"])
    return stored.view(dtype) if stored.dtype != dtype else stored


def _to_device(path: Path, name: str, array: np.ndarray, like: Any) -> jax.Array | np.ndarray:
    """``array`` as ``like`` holds it: NumPy for a NumPy leaf, else a jax array on ``like``'s
    sharding (a jax array's, or a ``ShapeDtypeStruct``'s if set), else the default device."""
    if isinstance(like, np.ndarray | np.generic):
        return array
    sharding = None
    if isinstance(like, jax.Array | jax.ShapeDtypeStruct):
        with contextlib.suppress(Exception):  # e.g. a tracer: no concrete placement
            sharding = like.sharding
    restored = jnp.asarray(array) if sharding is None else jax.device_put(array, sharding)
    if restored.dtype != array.dtype:
        raise CheckpointError(f"{path}: {name} is {array.dtype.name} but jax made it "
                              f"{restored.dtype.name} (enable jax_enable_x64 for 64-bit types)")
    return restored


def _restore_tree(path: Path, archive: zipfile.ZipFile, tree_name: str,
                  pairs: list[tuple[dict[str, Any], Any]], treedef) -> PyTree:
    leaves = []
    for record, like in pairs:
        array = _read_leaf(path, archive, tree_name, record)
        leaves.append(_to_device(path, f"{tree_name}/{record['path']}", array, like))
    return jax.tree.unflatten(treedef, leaves)


def _check_plan(path: Path, manifest: dict[str, Any], steps_per_epoch: int | None) -> None:
    if steps_per_epoch is None:
        return
    step, epoch = manifest["step"], manifest["epoch"]
    if step > epoch * steps_per_epoch:
        raise CorruptCheckpointError(f"{path}: {MANIFEST}: step {step} is more than epoch "
                                     f"{epoch} x {steps_per_epoch} steps per epoch allow")


def _restore_file(path: Path, params_like: PyTree, opt_state_like: PyTree,
                  steps_per_epoch: int | None = None,
                  model_state_like: PyTree = None) -> Checkpoint:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    archive, manifest = _open(path)
    with archive:
        _check_plan(path, manifest, steps_per_epoch)
        try:
            trees = manifest["trees"]
            step, epoch = manifest["step"], manifest["epoch"]
            settings, key_info = manifest["settings"], manifest["key"]
            key_records = trees["key"]["leaves"]
            params_records, opt_records = trees["params"]["leaves"], trees["opt_state"]["leaves"]
            state_records = trees["model_state"]["leaves"] if "model_state" in trees else []
            for record in (*key_records, *params_records, *opt_records, *state_records):
                _check_record(record)
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptCheckpointError(f"{path}: {MANIFEST} lacks or garbles a field: "
                                         f"{error!r}") from None
        params_pairs, params_def = _match(path, "params", params_records, params_like)
        opt_pairs, opt_def = _match(path, "opt_state", opt_records, opt_state_like)
        params = _restore_tree(path, archive, "params", params_pairs, params_def)
        opt_state = _restore_tree(path, archive, "opt_state", opt_pairs, opt_def)
        model_state = model_state_like if model_state_like is not None else {}
        if state_records or jax.tree.leaves(model_state_like):
            state_pairs, state_def = _match(path, "model_state", state_records,
                                            model_state_like or {})
            model_state = _restore_tree(path, archive, "model_state", state_pairs, state_def)
        if len(key_records) != 1:
            raise CorruptCheckpointError(f"{path}: the key should be one array; the manifest "
                                         f"lists {len(key_records)}")
        key_data = _read_leaf(path, archive, "key", key_records[0])
        if key_info["typed"]:
            try:
                key = jax.random.wrap_key_data(jnp.asarray(key_data), impl=key_info["impl"])
            except (ValueError, TypeError) as error:
                raise CorruptCheckpointError(f"{path}: the key's data does not fit its PRNG "
                                             f"implementation {key_info['impl']!r}: "
                                             f"{error}") from None
        else:
            key = jnp.asarray(key_data)
    return Checkpoint(step, epoch, params, opt_state, key, settings, path, model_state,
                      manifest.get("history"))


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The ``settings`` stored in one checkpoint file (its manifest only; arrays unread)."""
    archive, manifest = _open(Path(path))
    archive.close()
    return manifest["settings"]


def restore_checkpoint(
    directory_or_path: str | os.PathLike,
    *,
    params_like: PyTree,
    opt_state_like: PyTree,
    steps_per_epoch: int | None = None,
) -> Checkpoint:
    """Restore one checkpoint into the structure of ``params_like`` and ``opt_state_like``.

    Args:
      directory_or_path: a checkpoint file, or a directory (its newest checkpoint, with no
        fallback: see :func:`restore_latest`).
      params_like, opt_state_like: pytrees of the target structure, e.g. freshly initialised
        params and ``optimizer.init(params)``; leaves may be arrays or
        ``jax.ShapeDtypeStruct``. Restored arrays go on a like leaf's sharding (a jax array's,
        or a ``ShapeDtypeStruct``'s when it has one), else on the default device; NumPy like
        leaves get NumPy arrays.
      steps_per_epoch: the run's plan, when known: a checkpoint whose ``step`` exceeds
        ``epoch * steps_per_epoch`` is corrupt (an epoch has at most that many steps).

    Returns:
      A :class:`Checkpoint`.

    Raises:
      CheckpointError: a leaf's shape or dtype differs, or a leaf is missing or extra (each
        named by its path); :class:`CorruptCheckpointError` for a damaged file.
      FileNotFoundError: no such file, or no checkpoint in the directory.
    """
    path = Path(directory_or_path)
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise FileNotFoundError(f"no checkpoint (step_*.npz) in {path}")
        path = newest
    return _restore_file(path, params_like, opt_state_like, steps_per_epoch)


def restore_latest(
    directory: str | os.PathLike,
    *,
    params_like: PyTree,
    opt_state_like: PyTree,
    steps_per_epoch: int | None = None,
    model_state_like: PyTree = None,
) -> Checkpoint:
    """Restore the newest *valid* checkpoint in ``directory``, newest step first.

    A corrupt checkpoint (truncated, bad checksum, missing or invalid manifest) gives a
    :class:`CorruptCheckpointWarning` (a ``UserWarning``) naming the file and the fault, and
    the one before is tried. A structure mismatch is not
    corruption and is raised at once (older checkpoints of the same run would not fit either).
    ``steps_per_epoch`` as for :func:`restore_checkpoint` (a checkpoint beyond the plan is
    corrupt, so it is skipped too).

    Raises:
      FileNotFoundError: no checkpoint in ``directory``.
      CheckpointError: none is valid (the message lists each file tried and why), or a
        structure mismatch (see :func:`restore_checkpoint`).
    """
    paths = list_checkpoints(directory)
    if not paths:
        raise FileNotFoundError(f"no checkpoint (step_*.npz) in {directory}")
    tried = []
    for path in reversed(paths):
        try:
            return _restore_file(path, params_like, opt_state_like, steps_per_epoch,
                                 model_state_like)
        except (CorruptCheckpointError, FileNotFoundError) as error:
            warnings.warn(f"skipping corrupt checkpoint {error}", CorruptCheckpointWarning,
                          stacklevel=2)
            tried.append(str(error))
    raise CheckpointError(f"no valid checkpoint in {directory}; tried, newest first:\n  "
                          + "\n  ".join(tried))


# --- the directory lock ----------------------------------------------------------------------

_HELD: set[str] = set()
"""Directories whose lock this process holds (resolved paths). Process state by nature
(``flock`` belongs to an open file), so that a nested :func:`lock_directory` does not refuse
its own process."""


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text())
        return (f"pid {info['pid']} on {info['host']}, started {info['started']}")
    except (OSError, ValueError, TypeError, KeyError):
        return "an unknown process"


@contextlib.contextmanager
def lock_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold the advisory lock of checkpoint ``directory`` (created if missing) while inside.

    The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``DIR/.lock``, which records the
    holder's pid, host and start time. Re-entrant within one process; released on leaving,
    and by the kernel when the process exits in any way. A lock file left by a dead process is
    not locked, so it is taken over (stale). No-op where ``fcntl`` is missing (Windows).

    Yields:
      The lock file's path.

    Raises:
      CheckpointLockedError: another process holds it (the message names pid, host, start).
      OSError: the directory or the lock file cannot be created (naming the path).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_FILE
    name = str(directory.resolve())
    if fcntl is None or name in _HELD:
        yield lock_path
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CheckpointLockedError(
            f"checkpoint dir {directory} is in use by {_holder(lock_path)} (lock file "
            f"{lock_path}); wait for that run to end or use another directory") from None
    try:
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": started}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
        _HELD.add(name)
        yield lock_path
    finally:
        _HELD.discard(name)
        os.close(fd)  # releases the flock
