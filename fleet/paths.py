"""Where the server writes: one state folder, so a read-only root filesystem (the chart's) still serves.

In a source checkout that is ``var/`` in the project (the prediction log, its spool, the plan after a
change when ``deploy/routing.yaml`` is not the plan file). Inside a built bento the source folder is
read-only in the image (``/home/bentoml/bento/src``), so the state goes under ``$BENTOML_HOME``, the
writable folder the chart mounts. ``FLEET_STATE_DIR`` overrides both.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fleet import PROJECT_ROOT, SOURCE_CHECKOUT


def state_dir() -> Path:
    """The folder for the server's own files (created by whoever writes there first)."""
    explicit = os.environ.get("FLEET_STATE_DIR")
    if explicit:
        return Path(explicit)
    if SOURCE_CHECKOUT:
        return PROJECT_ROOT / "var"
    return bentoml_home() / "fleet"


def bentoml_home() -> Path:
    """BentoML's home folder: ``BENTOML_HOME``, else BentoML's own default."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def write_atomically(path: Path, text: str, *, durable: bool = False, mtime_ns: int | None = None) -> None:
    """Replace ``path`` with ``text`` so a reader never sees half a file (its folder is created).

    ``durable``: the data and the folder entry are fsync'd before this returns, so the new file
    survives a crash of the machine, not only of the process. ``mtime_ns``: the new file appears
    with this modification time already set (a reader never sees the time of the write instead).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    if mtime_ns is not None:
        os.utime(handle.name, ns=(mtime_ns, mtime_ns))
    os.replace(handle.name, path)
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
