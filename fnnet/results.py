"""Writing a run's results: the machine it ran on, and JSON written atomically.

Shared by the ``fnnet`` commands and the scripts in ``experiments/``, so every result file
records its environment the same way.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

from fnnet.atomic import atomic_write_text


def environment() -> dict[str, Any]:
    """Versions, the device, the cores and the 1/5/15-minute load average (others may share
    the CPU: timings are only comparable within one run), and the date (UTC)."""
    import jax

    device = jax.devices()[0]
    return {"jax": jax.__version__, "python": platform.python_version(),
            "platform": device.platform, "device": device.device_kind,
            "cores": os.cpu_count(), "loadavg": list(os.getloadavg()),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically (a reader sees the old file or the new
    one, never a part; an error names ``path``); creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
