"""Shared machinery of Bento Fleet: the model store with exact tags, HTTP edges, training helpers.

Everything here sits below the models (``bentos/``) and the entry points (``service.py``,
``training/``); it imports neither.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# In a source checkout the model store lives in the project, unless BENTOML_HOME says otherwise.
# Inside a built bento (no training/ folder) BentoML's own default or the image's setting applies.
if (PROJECT_ROOT / "training").is_dir():
    os.environ.setdefault("BENTOML_HOME", str(PROJECT_ROOT / ".bentoml"))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
