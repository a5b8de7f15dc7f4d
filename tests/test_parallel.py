"""Data parallel on 4 and 8 CPU devices and across 2 processes equals the 1-device run.

The runs are fresh Python processes (tests/parallel_worker.py): the number of CPU devices and
the distributed runtime are fixed when JAX starts. One process with 8 CPU devices trains the
1-device reference and the 4- and 8-device runs; the 2-process run is two more.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ["['affine1']['W']", "['affine1']['b']", "['affine2']['W']", "['affine2']['b']"]


def _env(cpu_devices: int) -> dict[str, str]:
    """This process's environment (its other XLA flags kept) with ``cpu_devices`` devices."""
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if "xla_force_host_platform_device_count" not in flag]
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
            "XLA_FLAGS": " ".join([*flags,
                                   f"--xla_force_host_platform_device_count={cpu_devices}"])}


def _worker(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.parallel_worker", str(out), *args]


def _load(out: Path, devices: str) -> dict[str, np.ndarray]:
    return dict(np.load(f"{out}-{devices}.npz"))


def _assert_same_params(a: dict, b: dict) -> None:
    # The gradient's batch sum is split into per-device partial sums plus an all-reduce: a
    # different summation order, so equal to float32 rounding (a few ulps), not bit for bit.
    for name in PARAMS:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, np.ndarray] | str]:
    """One fresh process with 8 CPU devices trains on one device (no mesh), on 4 and on 8,
    and tries batch 100 on 8 devices (refused: its message)."""
    out = tmp_path_factory.mktemp("runs") / "p"
    done = subprocess.run(_worker(out, "none,4,8,8:100"), env=_env(8), cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**{devices: _load(out, devices) for devices in ("none", "4", "8")},
            "8:100": Path(f"{out}-8:100.txt").read_text()}


@pytest.fixture(scope="module")
def single_device(runs) -> dict[str, np.ndarray]:
    assert int(runs["none"]["replicas"]) == 1  # the reference really lives on one device
    return runs["none"]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [4, 8])
def test_data_parallel_matches_one_device(devices, single_device, runs):
    sharded = runs[str(devices)]
    assert int(sharded["devices"]) == 8
    assert int(sharded["replicas"]) == devices  # params really live on every device
    _assert_same_params(single_device, sharded)
    np.testing.assert_allclose(single_device["loss"], sharded["loss"], rtol=1e-6)


def test_batch_must_divide_by_the_device_count(runs):
    assert "batch_size 100 must be divisible by the number of devices 8" in runs["8:100"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(single_device, tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"
    out = tmp_path / "p"
    workers = [subprocess.Popen(_worker(out, "all", coordinator, "2", str(rank)),
                                env=_env(2), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    try:
        results = [w.communicate(timeout=180) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (_, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, err[-3000:]
    both = _load(out, "all")
    assert int(both["devices"]) == 4 and int(both["replicas"]) == 4  # 2 processes × 2 devices
    _assert_same_params(single_device, both)
