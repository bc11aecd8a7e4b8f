"""Test set-up: a private model store for the whole run, so tests never touch the project's models."""

from __future__ import annotations

import os
import tempfile

# Before BentoML is imported anywhere: every test process uses a throw-away store.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="fleet-test-store-")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
