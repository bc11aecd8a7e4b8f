"""Where the server writes: one state folder, so a read-only root filesystem (the chart's) still serves.

In a source checkout that is ``var/`` in the project (the prediction log, its spool, the plan after a
change when ``deploy/routing.yaml`` is not the plan file). Inside a built bento the source folder is
read-only in the image (``/home/bentoml/bento/src``), so the state goes under ``$BENTOML_HOME``, the
writable folder the chart mounts. ``FLEET_STATE_DIR`` overrides both.
"""

from __future__ import annotations

import os
from pathlib import Path

from fleet import PROJECT_ROOT, SOURCE_CHECKOUT


def state_dir() -> Path:
    """The folder for the server's own files (created by whoever writes there first)."""
    explicit = os.environ.get("FLEET_STATE_DIR")
    if explicit:
        return Path(explicit)
    if SOURCE_CHECKOUT:
        return PROJECT_ROOT / "var"
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "fleet"
