"""Checkpoints: bit-exact round trips, keep-K pruning, atomic writes, corruption fallback,
structure errors that name the leaf, and a resumed run that matches an uninterrupted one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnnet
from fnnet.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointLockedError,
    CorruptCheckpointError,
    CorruptCheckpointWarning,
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    lock_directory,
    read_settings,
    restore_checkpoint,
    restore_latest,
    save_checkpoint,
)
from fnnet.data import load_digits
from fnnet.train import TrainState, batch_indices, make_epoch

SETTINGS = {"lr": 0.1, "momentum": 0.9, "hidden": [50], "activation": "relu", "seed": 0}


def _net(hidden: int = 5, dtype=jnp.float32):
    return fnnet.two_layer_net(7, hidden, 3, dtype=dtype)


def _state(hidden: int = 5, dtype=jnp.float32, seed: int = 0):
    """params, a non-trivial momentum state (and an EmptyState), the optimizer."""
    net = _net(hidden, dtype)
    params = net.init(jax.random.key(seed))
    optimizer = optax.sgd(0.1, momentum=0.9)
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * (seed + 0.37), params)
    _, opt_state = optimizer.update(grads, optimizer.init(params), params)
    return params, opt_state, optimizer


def _save(directory, step, *, params=None, opt_state=None, key=None, keep=3, **kw):
    if params is None:
        params, opt_state, _ = _state(seed=step)
    return save_checkpoint(directory, step=step, epoch=kw.pop("epoch", step // 100),
                           params=params, opt_state=opt_state,
                           key=jax.random.key(step) if key is None else key,
                           settings=kw.pop("settings", SETTINGS), keep=keep)


def test_the_run_history_round_trips_and_older_checkpoints_have_none(tmp_path):
    params, opt_state, _ = _state(seed=1)
    history = {"epoch": [1, 2], "loss": [2.3, None], "step_loss": [2.4, 2.2, 2.1, 2.0]}
    save_checkpoint(tmp_path, step=4, epoch=2, params=params, opt_state=opt_state,
                    key=jax.random.key(0), settings=SETTINGS, history=history)
    assert restore_latest(tmp_path, **_likes()).history == history
    _save(tmp_path / "old", 100)
    assert restore_latest(tmp_path / "old", **_likes()).history is None
    with pytest.raises(TypeError, match="history must be JSON-able"):
        save_checkpoint(tmp_path, step=5, epoch=2, params=params, opt_state=opt_state,
                        key=jax.random.key(0), settings=SETTINGS, history={"loss": [object()]})


def _likes(hidden: int = 5, dtype=jnp.float32):
    """Fresh target structures (different values from anything saved)."""
    params, _, optimizer = _state(hidden, dtype, seed=99)
    return dict(params_like=params, opt_state_like=optimizer.init(params))


def _assert_bits_equal(a, b) -> None:
    """Same structure, and every leaf has the same shape, dtype and bytes (NaN payloads too)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert (x.shape, x.dtype) == (y.shape, y.dtype)
        assert x.tobytes() == y.tobytes()


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_params_momentum_state_empty_state_key_and_settings(tmp_path):
    params, opt_state, optimizer = _state()
    opt_state = (opt_state, optax.EmptyState())
    key = jax.random.fold_in(jax.random.key(42), 3)
    path = save_checkpoint(tmp_path, step=1200, epoch=3, params=params, opt_state=opt_state,
                           key=key, settings=SETTINGS)
    assert path == tmp_path / "step_00001200.npz" and path.is_file()

    fresh = optimizer.init(params)
    restored = restore_checkpoint(tmp_path, params_like=_likes()["params_like"],
                                  opt_state_like=(fresh, optax.EmptyState()))
    assert isinstance(restored, Checkpoint)
    assert (restored.step, restored.epoch, restored.path) == (1200, 3, path)
    assert restored.settings == SETTINGS
    _assert_bits_equal(restored.params, params)
    _assert_bits_equal(restored.opt_state, opt_state)
    assert isinstance(restored.opt_state[1], optax.EmptyState)
    assert isinstance(restored.opt_state[0][0], optax.TraceState)
    assert jax.random.key_impl(restored.key) == jax.random.key_impl(key)
    _assert_bits_equal(jax.random.key_data(restored.key), jax.random.key_data(key))
    # The same key draws the same numbers.
    np.testing.assert_array_equal(jax.random.normal(restored.key, (4,)),
                                  jax.random.normal(key, (4,)))


def test_special_values_and_an_int_counter_round_trip_bit_for_bit(tmp_path):
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 3.4e38],
                       np.float32)
    params = {"w": jnp.asarray(special), "count": jnp.asarray(7, jnp.int32),
              "mask": jnp.asarray([True, False])}
    opt = optax.adam(1e-3)
    opt_state = opt.init(params["w"])
    save_checkpoint(tmp_path, step=0, epoch=0, params=params, opt_state=opt_state,
                    key=jax.random.key(0), settings={})
    restored = restore_checkpoint(tmp_path, params_like=params,
                                  opt_state_like=opt.init(jnp.zeros(8)))
    _assert_bits_equal(restored.params, params)
    _assert_bits_equal(restored.opt_state, opt_state)


def test_bfloat16_round_trip_is_bit_exact(tmp_path):
    params, opt_state, _ = _state(dtype=jnp.bfloat16)
    assert jax.tree.leaves(params)[0].dtype == jnp.bfloat16
    path = _save(tmp_path, 10, params=params, opt_state=opt_state)
    manifest = json.loads(np.load(path)["manifest.json"])
    w = next(r for r in manifest["trees"]["params"]["leaves"] if r["path"] == "affine1/W")
    assert (w["dtype"], w["stored_dtype"]) == ("bfloat16", "<u2")
    restored = restore_checkpoint(path, **_likes(dtype=jnp.bfloat16))
    _assert_bits_equal(restored.params, params)
    _assert_bits_equal(restored.opt_state, opt_state)


def test_float64_round_trip(tmp_path, x64):
    params, opt_state, _ = _state(dtype=jnp.float64)
    _save(tmp_path, 1, params=params, opt_state=opt_state)
    restored = restore_checkpoint(tmp_path, **_likes(dtype=jnp.float64))
    assert restored.params["affine1"]["W"].dtype == jnp.float64
    _assert_bits_equal(restored.params, params)
    _assert_bits_equal(restored.opt_state, opt_state)


def test_shape_dtype_structs_numpy_leaves_and_a_legacy_raw_key(tmp_path):
    params, opt_state, optimizer = _state()
    numpy_params = jax.tree.map(np.asarray, params)
    raw_key = jax.random.PRNGKey(5)
    save_checkpoint(tmp_path, step=3, epoch=0, params=numpy_params, opt_state=opt_state,
                    key=raw_key, settings={})
    restored = restore_checkpoint(
        tmp_path, params_like=jax.eval_shape(_net().init, jax.random.key(0)),
        opt_state_like=jax.eval_shape(optimizer.init, params))
    _assert_bits_equal(restored.params, params)
    assert isinstance(restored.params["affine1"]["W"], jax.Array)
    _assert_bits_equal(restored.key, raw_key)
    # NumPy target leaves come back as NumPy.
    as_numpy = restore_checkpoint(tmp_path, params_like=numpy_params, opt_state_like=opt_state)
    assert isinstance(as_numpy.params["affine1"]["W"], np.ndarray)


def test_the_file_is_a_plain_npz_readable_without_pickle(tmp_path):
    path = _save(tmp_path, 5)
    with np.load(path, allow_pickle=False) as npz:
        assert "params/affine1/W.npy" in npz.zip.namelist()
        assert npz["params/affine1/W"].shape == (7, 5)
        manifest = json.loads(npz["manifest.json"])
    assert manifest["format"] == "fnnet-checkpoint" and manifest["step"] == 5
    assert manifest["key"]["impl"] == "threefry2x32"


# --- names, latest, pruning ----------------------------------------------------------------


def test_latest_checkpoint_ignores_temporaries_and_other_files_and_sorts_numerically(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    _save(tmp_path, 99_999_999, keep=None)
    _save(tmp_path, 123_456_789, keep=None)
    (tmp_path / ".tmp-step_999999999-abc.npz").write_bytes(b"partial")
    (tmp_path / "step_5.npz").write_bytes(b"not ours")
    (tmp_path / "notes.txt").write_text("hi")
    assert checkpoint_name(123_456_789) == "step_123456789.npz"
    assert latest_checkpoint(tmp_path) == tmp_path / "step_123456789.npz"


def test_keep_prunes_all_but_the_newest_k(tmp_path):
    for step in range(100, 700, 100):
        _save(tmp_path, step, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000400.npz", "step_00000500.npz", "step_00000600.npz"]
    _save(tmp_path, 700, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000700.npz"]


def test_keep_none_keeps_all_and_the_checkpoint_just_written_is_never_pruned(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=None)
    assert len(list_checkpoints(tmp_path)) == 4
    _save(tmp_path, 2, keep=2)  # the same step again (a resume that fell back to step 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000001.npz", "step_00000002.npz", "step_00000003.npz", "step_00000004.npz"]
    _save(tmp_path, 5, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000004.npz", "step_00000005.npz"]


def test_an_invalid_newer_file_never_gets_valid_checkpoints_pruned(tmp_path):
    """Pruning removes only checkpoints older than the one just written: a damaged file with
    a higher step (skipped on resume) neither counts towards ``keep`` nor displaces one."""
    for step in (10, 20, 30):
        _save(tmp_path, step)
    (tmp_path / "step_00000099.npz").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="step_00000099"):
        assert restore_latest(tmp_path, **_likes()).step == 30
    _save(tmp_path, 40, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000020.npz", "step_00000030.npz", "step_00000040.npz", "step_00000099.npz"]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    _save(tmp_path, 8, epoch=1)
    _save(tmp_path, 8, epoch=2)
    assert len(list_checkpoints(tmp_path)) == 1
    assert restore_checkpoint(tmp_path, **_likes()).epoch == 2


@pytest.mark.parametrize("bad, error, match", [
    (dict(step=-1), ValueError, "step must be an int >= 0"),
    (dict(epoch=1.5), ValueError, "epoch must be an int >= 0"),
    (dict(keep=0), ValueError, "keep must be an int >= 1 or None"),
    (dict(settings={"f": object()}), TypeError, "settings must be JSON-able"),
    (dict(settings={"x": float("nan")}), TypeError, "settings must be JSON-able"),
    (dict(settings=[1]), TypeError, "settings must be a dict"),
    (dict(key=jnp.zeros(2, jnp.float32)), TypeError, "key must be a jax.random.key"),
])
def test_bad_arguments_are_rejected_before_anything_is_written(tmp_path, bad, error, match):
    params, opt_state, _ = _state()
    kwargs = dict(step=1, epoch=0, params=params, opt_state=opt_state, key=jax.random.key(0),
                  settings={}, keep=3) | bad
    with pytest.raises(error, match=match):
        save_checkpoint(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- atomicity -----------------------------------------------------------------------------


def test_a_full_disk_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    first = _save(tmp_path, 100)
    real_write = np.lib.format.write_array

    def no_space(file, array, **kwargs):
        real_write(file, array, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", no_space)
    with pytest.raises(OSError, match=re.escape(str(tmp_path / "step_00000200.npz"))):
        _save(tmp_path, 200)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_a_crash_before_the_rename_leaves_the_previous_checkpoint_latest(tmp_path, monkeypatch):
    first = _save(tmp_path, 100)

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _save(tmp_path, 200)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temporary left
    assert restore_latest(tmp_path, **_likes()).step == 100


def test_a_crash_while_writing_the_archive_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    first = _save(tmp_path, 100)
    real_write, calls = np.lib.format.write_array, []

    def interrupted_write(file, array, **kwargs):
        calls.append(array.shape)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is interrupted mid-write
        return real_write(file, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 200)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    assert restore_latest(tmp_path, **_likes()).step == 100


def test_a_stray_temporary_from_a_hard_crash_is_ignored_then_cleaned_up(tmp_path):
    first = _save(tmp_path, 100)
    # What a killed process leaves: half an archive under a temporary name, a higher step.
    stray = tmp_path / ".tmp-step_00000200-deadbeef.npz"
    stray.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    assert latest_checkpoint(tmp_path) == first
    assert restore_latest(tmp_path, **_likes()).step == 100
    _save(tmp_path, 300)
    assert not stray.exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == [first.name, "step_00000300.npz"]


# --- corruption ----------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])


def _flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("params/affine1/W.npy")
    # Local header (30 bytes + name + extra) precedes the member's data; flip its last byte.
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[offset + info.compress_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite(path: Path, change) -> None:
    """Rewrite the archive member by member (fresh, valid CRCs) through ``change``."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members = change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _tamper_array(members):
    data = bytearray(members["params/affine2/b.npy"])
    data[-1] ^= 0x01  # same header, one bit of the payload: only the SHA-256 can tell
    return members | {"params/affine2/b.npy": bytes(data)}


CORRUPTIONS = {
    "truncated": (_truncate, "not a readable zip archive"),
    "flipped-byte": (_flip_a_data_byte, "params/affine1/W"),
    "empty-file": (lambda p: p.write_bytes(b""), "not a readable zip archive"),
    "no-manifest": (lambda p: _rewrite(p, lambda m: {k: v for k, v in m.items()
                                                     if k != "manifest.json"}),
                    "no manifest.json"),
    "bad-manifest": (lambda p: _rewrite(p, lambda m: m | {"manifest.json": b"{not json"}),
                     "manifest.json is unreadable"),
    "sha256": (lambda p: _rewrite(p, _tamper_array), "params/affine2/b fails its SHA-256"),
    "missing-member": (lambda p: _rewrite(p, lambda m: {k: v for k, v in m.items()
                                                        if k != "opt_state/0/trace/affine1/b.npy"}),
                       "opt_state/0/trace/affine1/b.npy"),
}  # fmt: skip


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_corrupt_newest_checkpoint_warns_and_falls_back_to_the_previous(tmp_path, kind):
    corrupt, what = CORRUPTIONS[kind]
    _save(tmp_path, 100)
    newest = _save(tmp_path, 200)
    corrupt(newest)
    with pytest.raises(CorruptCheckpointError, match=re.escape(what)):
        restore_checkpoint(newest, **_likes())
    with pytest.warns(UserWarning, match=r"step_00000200\.npz") as record:
        restored = restore_latest(tmp_path, **_likes())
    assert any(what in str(w.message) for w in record)
    assert restored.step == 100
    _assert_bits_equal(restored.params, _state(seed=100)[0])


def test_no_valid_checkpoint_is_an_error_listing_every_file_tried(tmp_path):
    for step in (1, 2):
        _truncate(_save(tmp_path, step))
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as info:
        restore_latest(tmp_path, **_likes())
    message = str(info.value)
    assert "no valid checkpoint" in message
    assert "step_00000001.npz" in message and "step_00000002.npz" in message
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_latest(tmp_path / "empty", **_likes())
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        restore_checkpoint(tmp_path / "nothing.npz", **_likes())


def _edit_manifest(path: Path, **fields) -> None:
    def change(members):
        manifest = json.loads(members["manifest.json"])
        for name, value in fields.items():
            if name == "key_impl":
                manifest["key"]["impl"] = value
            else:
                manifest[name] = value
        return members | {"manifest.json": json.dumps(manifest).encode()}

    _rewrite(path, change)


MANIFEST_EDITS = {
    "step-beyond-name": (dict(step=1000), "step 1000 does not match the file name"),
    "negative-step": (dict(step=-5), "step must be an integer >= 0; got -5"),
    "fractional-step": (dict(step=41.7), "step must be an integer >= 0; got 41.7"),
    "boolean-step": (dict(step=True), "step must be an integer >= 0; got True"),
    "huge-epoch": (dict(epoch=10**6), "epoch 1000000 exceeds step 200"),
    "string-epoch": (dict(epoch="3"), "epoch must be an integer >= 0; got '3'"),
    "null-settings": (dict(settings=None), "settings must be an object; got None"),
    "list-settings": (dict(settings=[1]), "settings must be an object; got [1]"),
    "list-key": (dict(key=[]), "key must be an object; got []"),
    "bogus-impl": (dict(key_impl="bogus"), "key impl 'bogus'"),
    "null-trees": (dict(trees=None), "trees must be an object"),
    "list-history": (dict(history=[1]), "history must be an object of lists; got [1]"),
    "scalar-curve": (dict(history={"loss": 1.0}), "history must be an object of lists"),
}  # fmt: skip


@pytest.mark.parametrize("kind", MANIFEST_EDITS)
def test_an_edited_manifest_is_treated_as_corrupt_and_skipped(tmp_path, kind):
    fields, what = MANIFEST_EDITS[kind]
    _save(tmp_path, 100, epoch=1)
    newest = _save(tmp_path, 200, epoch=2)
    _edit_manifest(newest, **fields)
    with pytest.raises(CorruptCheckpointError, match=re.escape(what)):
        restore_checkpoint(newest, **_likes())
    with pytest.warns(CorruptCheckpointWarning, match=re.escape(what)):
        assert restore_latest(tmp_path, **_likes()).step == 100
    with pytest.raises(CorruptCheckpointError, match=re.escape(what)):
        read_settings(newest)


def test_a_step_beyond_the_plan_is_corrupt_when_steps_per_epoch_is_given(tmp_path):
    """A renamed file with an edited step passes the name check; the plan still catches it:
    ``epoch`` epochs of ``steps_per_epoch`` hold at most ``epoch * steps_per_epoch`` steps."""
    _save(tmp_path, 28, epoch=2)
    _save(tmp_path, 1000, epoch=4)
    assert restore_latest(tmp_path, **_likes()).step == 1000  # consistent in itself
    with pytest.warns(CorruptCheckpointWarning,
                      match=r"step 1000 is more than epoch 4 x 14 steps per epoch"):
        assert restore_latest(tmp_path, steps_per_epoch=14, **_likes()).step == 28
    with pytest.raises(CorruptCheckpointError, match="steps per epoch"):
        restore_checkpoint(tmp_path / "step_00001000.npz", steps_per_epoch=14, **_likes())


# --- the directory lock --------------------------------------------------------------------


def test_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    with lock_directory(tmp_path):
        with lock_directory(tmp_path):  # re-entrant within one process
            pass
        holder = subprocess.run(
            [sys.executable, "-c", "import sys; from fnnet.checkpoint import lock_directory\n"
             "with lock_directory(sys.argv[1]): pass", str(tmp_path)],
            capture_output=True, text=True, timeout=60)
        assert holder.returncode != 0
        assert f"pid {os.getpid()}" in holder.stderr and "in use" in holder.stderr
    with lock_directory(tmp_path):  # released: free again
        pass


def test_a_lock_held_by_another_process_names_it_and_a_dead_holder_is_stale(tmp_path):
    script = ("import sys; from fnnet.checkpoint import lock_directory\n"
              "with lock_directory(sys.argv[1]):\n"
              "    print('locked', flush=True); sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointLockedError) as info, lock_directory(tmp_path):
            pass
        message = str(info.value)
        assert f"pid {child.pid}" in message and str(tmp_path) in message
        assert len(message.splitlines()) == 1
    finally:
        child.kill()  # dies holding the lock: the kernel releases it
        child.wait(timeout=60)
    assert (tmp_path / ".lock").exists()  # a stale lock file: present but not locked
    with lock_directory(tmp_path):
        info = json.loads((tmp_path / ".lock").read_text())
        assert info["pid"] == os.getpid()


# --- structure mismatches ------------------------------------------------------------------


def test_a_different_layer_size_is_an_error_naming_the_leaf_and_both_shapes(tmp_path):
    net = fnnet.two_layer_net(784, 50, 10)
    params = net.init(jax.random.key(0))
    save_checkpoint(tmp_path, step=1, epoch=0, params=params, opt_state=optax.EmptyState(),
                    key=jax.random.key(0), settings={})
    bigger = fnnet.two_layer_net(784, 100, 10).init(jax.random.key(0))
    with pytest.raises(CheckpointError) as info:
        restore_latest(tmp_path, params_like=bigger, opt_state_like=optax.EmptyState())
    message = str(info.value)
    assert ("params/affine1/W: checkpoint has shape (784, 50) float32, "
            "model expects (784, 100) float32") in message
    assert "params/affine2/W: checkpoint has shape (50, 10) float32" in message
    assert not isinstance(info.value, CorruptCheckpointError)


def test_a_different_dtype_is_an_error_naming_the_leaf(tmp_path):
    _save(tmp_path, 1)
    with pytest.raises(CheckpointError, match=r"params/affine2/b: checkpoint has shape \(3,\) "
                                              r"float32, model expects \(3,\) bfloat16"):
        restore_checkpoint(tmp_path, **_likes(dtype=jnp.bfloat16))


def test_missing_and_extra_leaves_are_named(tmp_path):
    _save(tmp_path, 1)
    deeper = fnnet.multi_layer_net(7, [5, 4], 3).init(jax.random.key(0))
    with pytest.raises(CheckpointError, match="lacks: params/affine3/W, params/affine3/b"):
        restore_checkpoint(tmp_path, params_like=deeper, opt_state_like=_likes()["opt_state_like"])
    with pytest.raises(CheckpointError, match=r"model lacks: opt_state/0/trace/affine1/W"):
        restore_checkpoint(tmp_path, params_like=_likes()["params_like"],
                           opt_state_like=optax.EmptyState())


def test_a_structure_mismatch_does_not_fall_back_to_older_checkpoints(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    with pytest.raises(CheckpointError, match=r"step_00000002\.npz"):
        restore_latest(tmp_path, **_likes(hidden=6))


# --- resume --------------------------------------------------------------------------------


def test_three_chunks_save_restore_three_more_equals_six_straight(tmp_path):
    """The training loop by hand: restored params, optimiser state, key and epoch reproduce
    the uninterrupted run bit for bit (batch order from ``fold_in(key, epoch)``)."""
    digits = load_digits()
    x, t = jnp.asarray(digits.x_train), jnp.asarray(digits.t_train)
    net = fnnet.two_layer_net(64, 20, 10, activation="relu", weight_init="he")
    optimizer = optax.sgd(0.05, momentum=0.9)
    run_epoch = make_epoch(net, optimizer)
    batch, steps = 64, 8

    def chunks(params, opt_state, key, epochs):
        for epoch in epochs:
            indices = batch_indices(jax.random.fold_in(key, epoch), num_examples=len(x),
                                    batch_size=batch, num_steps=steps)
            (params, opt_state, _), _ = run_epoch(TrainState(params, opt_state, {}), x, t,
                                                  indices)
        return params, opt_state

    key = jax.random.key(2024)
    params = net.init(jax.random.key(0))
    straight, straight_state = chunks(params, optimizer.init(params), key, range(1, 7))

    params = net.init(jax.random.key(0))
    params, opt_state = chunks(params, optimizer.init(params), key, range(1, 4))
    save_checkpoint(tmp_path, step=3 * steps, epoch=3, params=params, opt_state=opt_state,
                    key=key, settings={"batch_size": batch, "lr": 0.05})
    del params, opt_state  # resume from the file alone, into fresh structures
    fresh = net.init(jax.random.key(7))
    state = restore_latest(tmp_path, params_like=fresh, opt_state_like=optimizer.init(fresh))
    assert (state.step, state.epoch) == (24, 3)
    resumed, resumed_state = chunks(state.params, state.opt_state, state.key,
                                    range(state.epoch + 1, 7))
    _assert_bits_equal(resumed, straight)
    _assert_bits_equal(resumed_state, straight_state)
