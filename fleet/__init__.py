"""Shared machinery of Bento Fleet: the model store with exact tags, HTTP edges, training helpers.

Everything here sits below the models (``bentos/``) and the entry points (``service.py``,
``training/``); it imports neither.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A built bento carries no training/ folder; its source folder is read-only in the image.
SOURCE_CHECKOUT = (PROJECT_ROOT / "training").is_dir()

# In a source checkout the model store lives in the project, unless BENTOML_HOME says otherwise.
# Inside a built bento BentoML's own default or the image's setting applies, and the caches of
# matplotlib (the report) and Hugging Face go under BENTOML_HOME, as $HOME may be read-only there.
if SOURCE_CHECKOUT:
    os.environ.setdefault("BENTOML_HOME", str(PROJECT_ROOT / ".bentoml"))
else:
    _home = os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(_home, "cache", "matplotlib"))
    os.environ.setdefault("HF_HOME", os.path.join(_home, "cache", "huggingface"))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
