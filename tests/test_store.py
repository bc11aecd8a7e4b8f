"""The model store: exact tags, increasing versions, no overwrite when training runs race."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import bentoml
import pytest

from fleet import store


def _write(folder: Path) -> None:
    (folder / "weights.txt").write_text("w")


def _save_three(name: str) -> list[str]:
    return [store.save(name, _write, metadata={"metrics": {"acc": 0.5}}) for _ in range(3)]


def test_versions_increase_and_carry_provenance() -> None:
    first = store.save("store-a", _write, metadata={"metrics": {"acc": 0.5}})
    second = store.save("store-a", _write, metadata={"metrics": {"acc": 0.6}})
    assert (first, second) == ("store-a:v1", "store-a:v2")
    info = store.get(second).info.metadata
    assert info["metrics"] == {"acc": 0.6}
    assert {"library_versions", "trained_at"} <= set(info)
    assert store.latest("store-a") == "store-a:v2"


def test_a_missing_version_is_never_resolved_by_prefix() -> None:
    with bentoml.models.create("store-b:v20") as ref:
        _write(Path(ref.path))
    # BentoML's own lookup falls back to prefix matching: v2 silently becomes v20.
    assert str(bentoml.models.get("store-b:v2").tag) == "store-b:v20"
    with pytest.raises(store.ModelNotFound):
        store.get("store-b:v2")
    assert str(store.get("store-b:v20").tag) == "store-b:v20"


@pytest.mark.parametrize("tag", ["store-b", "store-b:latest", "store-b:v", "../x:v1", "Store:v1"])
def test_malformed_tags_are_refused(tag: str) -> None:
    with pytest.raises(store.ModelNotFound):
        store.get(tag)


def test_racing_training_runs_never_share_a_version() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_save_three, ["store-race", "store-race"])
    tags = [tag for run in results for tag in run]
    assert sorted(tags, key=lambda t: int(t.split(":v")[1])) == [f"store-race:v{i}" for i in range(1, 7)]


def _replica_saves(served: str, shared: str) -> list[str]:
    """Three saves by a "replica" with its own store, sharing the trained-models folder."""
    import os

    os.environ["FLEET_TRAINED_MODELS"] = shared
    store.use_store(Path(served))
    return _save_three("store-shared")


def test_replicas_sharing_a_trained_models_folder_number_and_see_each_others_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two replicas' own (writable) stores, one shared folder: every save lands in the shared folder,
    # numbered under its lock, and both replicas' lookups find all of them.
    shared = tmp_path / "shared"
    served = [tmp_path / "replica-a", tmp_path / "replica-b"]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_replica_saves, [(str(s), str(shared)) for s in served])
    assert sorted(tag for run in results for tag in run) == sorted(f"store-shared:v{i}" for i in range(1, 7))
    assert sorted(p.name for p in (shared / "store-shared").iterdir() if p.is_dir()) == [
        f"v{i}" for i in range(1, 7)]
    assert not any((s / "store-shared").exists() for s in served)
    monkeypatch.setenv("FLEET_TRAINED_MODELS", str(shared))
    session_store = store.store_path()
    try:
        for own in served:
            store.use_store(own)
            assert store.versions("store-shared") == [f"v{i}" for i in range(1, 7)]
            assert store.get("store-shared:v6").info.metadata["metrics"] == {"acc": 0.5}
    finally:
        store.use_store(session_store)
