"""The BentoML model store, with exact tags and increasing versions.

BentoML resolves ``name:v2`` by prefix when ``v2`` is missing (it silently became ``v20``), so every
lookup here compares versions exactly. Versions are ``v1``, ``v2``, … and a new one is taken under a
file lock, so two training runs that race get different versions and never overwrite each other.

A served bento's store is read-only in the image (and the chart mounts nothing over it), so a model
retrained there is saved beside it, in ``<state folder>/models``, and every lookup reads both: the
store served from first, then the models trained here. Version numbers count both.

``FLEET_TRAINED_MODELS`` names that second folder instead, and then every model trained by the server
goes there, writable store or not: on several replicas it is a volume they all mount
(ReadWriteMany; the chart's ``trainedModels.existingClaim``), so a version retrained through one
replica is in every replica's store before the plan that names it is written.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import bentoml

from fleet import PROJECT_ROOT
from fleet.paths import state_dir

_VERSION = re.compile(r"^v(\d+)$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class ModelNotFound(LookupError):
    """A tag that is not in the store, exactly as written."""


def parse_tag(tag: str) -> tuple[str, str]:
    """Split ``name:version``; both parts are required and must be well formed."""
    name, sep, version = tag.partition(":")
    if not sep or not _NAME.match(name) or not _VERSION.match(version):
        raise ModelNotFound(f"{tag!r} is not a tag of the form name:vN")
    return name, version


def versions(name: str) -> list[str]:
    """Every ``vN`` version of a model in the stores, oldest number first."""
    return sorted({v for held in _stores() for v in _versions_in(held, name)}, key=lambda v: int(v[1:]))


def _versions_in(held: Any, name: str) -> list[str]:
    try:
        found = [str(m.tag.version) for m in bentoml.models.list(name, _model_store=held)]
    except bentoml.exceptions.NotFound:
        return []
    return [v for v in found if _VERSION.match(v)]


def get(tag: str) -> bentoml.Model:
    """The model with exactly this tag, never one whose version merely starts with it."""
    name, version = parse_tag(tag)
    for held in _stores():
        if version in _versions_in(held, name):
            return bentoml.models.get(f"{name}:{version}", _model_store=held)
    raise ModelNotFound(f"model {tag} is not in the store")


def latest(name: str) -> str | None:
    """The tag of the highest version of a model, or None when it has none."""
    found = versions(name)
    return f"{name}:{found[-1]}" if found else None


@contextmanager
def _store_lock(store: Any, name: str) -> Iterator[None]:
    """The right to number ``name``'s next version in ``store``: a file in the store's own folder
    (BentoML lists only folders there), so every process saving into it, on any replica sharing the
    folder, takes the same lock."""
    folder = Path(store._path)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.version-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save(
    name: str,
    write: Callable[[Path], None],
    *,
    metadata: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> str:
    """Save a new version of ``name``: ``write(folder)`` puts the files, the store gets ``vN+1``.

    The metadata is completed with library versions, git commit and training time.
    """
    target = _writable_store()
    with _store_lock(target, name):
        found = versions(name)
        version = f"v{int(found[-1][1:]) + 1}" if found else "v1"
        with bentoml.models.create(
            f"{name}:{version}", labels=labels or {}, metadata=_without_none({**metadata, **provenance()}),
            _model_store=target,
        ) as ref:
            write(Path(ref.path))
    return f"{name}:{version}"


def _without_none(value: Any) -> Any:
    """BentoML metadata refuses None anywhere; absent is the honest equivalent."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value if v is not None]
    return value


def fingerprint(rows: list[Any] | Any) -> dict[str, Any]:
    """A stable hash and row count of a dataset, so a model says exactly what it learnt from."""
    if hasattr(rows, "to_csv"):
        text = rows.to_csv(index=False)
        count = len(rows)
    else:
        text = "\n".join(repr(r) for r in rows)
        count = len(rows)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "rows": count}


def library_versions() -> dict[str, str]:
    """Versions of the libraries a saved model depends on."""
    result = {}
    for dist in ("bentoml", "torch", "scikit-learn", "numpy", "pandas", "transformers", "pillow"):
        try:
            result[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return result


def git_commit() -> str | None:
    """The project's commit when it is a git checkout, else None."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance() -> dict[str, Any]:
    """What every saved model records besides its own metrics and parameters."""
    return {
        "library_versions": library_versions(),
        "git_commit": git_commit(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def load(tag: str, loader: Callable[[Path], Any]) -> tuple[str, Any]:
    """``(version, loader(folder))`` for exactly ``tag``; what every service does at start."""
    ref = get(tag)
    return str(ref.tag.version), loader(Path(ref.path))


def catalogue(name: str) -> list[dict[str, Any]]:
    """Every version of ``name`` with its metrics and lineage, oldest first (CLI and admin API)."""
    rows = []
    for version in versions(name):
        info = get(f"{name}:{version}").info
        meta = info.metadata
        rows.append({
            "tag": f"{name}:{version}", "version": version, "metrics": meta.get("metrics", {}),
            "trained_at": meta.get("trained_at"), "git_commit": meta.get("git_commit"),
            "dataset_sha256": meta.get("dataset", {}).get("sha256"), "params": meta.get("params", {}),
            "labels": dict(info.labels),
        })
    return rows


def store_path() -> Path:
    """The folder of the model store in use (a served bento's own ``models/``, else BENTOML_HOME's)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.model_store.get()._path)


def trained_here() -> Path:
    """Where models trained beside a read-only store go, or every model trained when
    ``FLEET_TRAINED_MODELS`` names the folder (see the module's docstring)."""
    return Path(os.environ.get("FLEET_TRAINED_MODELS") or state_dir() / "models")


def _stores() -> list[Any]:
    """The store served from, then the models trained beside it when that folder exists."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    served = BentoMLContainer.model_store.get()
    extra = trained_here()
    if extra.is_dir() and extra.resolve() != Path(served._path).resolve():
        return [served, ModelStore(str(extra))]
    return [served]


def _writable_store() -> Any:
    """The store served from when it can be written (and no shared folder is named), else the folder
    for models trained here."""
    from bentoml._internal.models.model import ModelStore

    served = _stores()[0]
    if not os.environ.get("FLEET_TRAINED_MODELS") and os.access(served._path, os.W_OK):
        return served
    trained_here().mkdir(parents=True, exist_ok=True)
    return ModelStore(str(trained_here()))


def use_store(path: Path) -> None:
    """Use the model store in ``path`` (a retraining subprocess uses the one its server serves from)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    BentoMLContainer.model_store.set(ModelStore(path))
