"""The serving benchmark's harness, run for about a second per server on titanic with the tiny test
models: results.json has the agreed shape, every run was answered, the report and plot are written.
Timings are never asserted. The warm-up is a whole second and a point without a single answer is
measured again (up to twice): in CI the session's gateway, measured first right after the harness
booted its own servers, once left a short window unanswered."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.__main__ import main
from benchmarks.servers import DEFAULT_SERVERS

RUN_KEYS = {"server", "mode", "concurrency", "rate", "rps", "p50_ms", "p95_ms", "p99_ms", "errors"}


def test_benchmark_harness_writes_results(fleet_url: str, tmp_path: Path) -> None:
    out = main(["--models", "titanic", "--url", f"batched={fleet_url}", "--concurrency", "1", "4",
                "--rates", "1.0", "--duration", "0.6", "--warmup", "1.0", "--ceiling-s", "0.05",
                "--retries", "2", "--retry-budget", "10", "--out", str(tmp_path)])
    results = json.loads((out / "results.json").read_text())
    assert {"machine", "versions", "models"} <= set(results)
    assert len(results["machine"]["loadavg_start"]) == 3
    assert list(results["models"]) == ["titanic"]
    titanic = results["models"]["titanic"]
    assert isinstance(titanic["ceiling_rps"], float) and titanic["ceiling_rps"] > 0
    runs = titanic["runs"]
    seen = {(r["server"], r["mode"]) for r in runs}
    assert seen == {(s, m) for s in DEFAULT_SERVERS for m in ("closed", "open")}
    assert set(DEFAULT_SERVERS) == {"batched", "unbatched", "fastapi", "fastapi_workers", "floor"}
    assert set(titanic["rss_mb"]) == set(DEFAULT_SERVERS)
    assert all(mb is None or mb > 0 for mb in titanic["rss_mb"].values())
    assert isinstance(titanic["targets"]["c1_over_fastapi_ms"], float)  # the 32-client targets need 32
    for run in runs:
        assert set(run) >= RUN_KEYS, run
        assert run["rps"] > 0, run
        assert isinstance(run["errors"], int)
        latencies = [run["p50_ms"], run["p95_ms"], run["p99_ms"]]
        assert all(isinstance(ms, float) and math.isfinite(ms) for ms in latencies), run
        assert (run["rate"] is None) == (run["mode"] == "closed")
    assert {r["concurrency"] for r in runs if r["mode"] == "closed"} == {1, 4}
    assert titanic["after_burst"]["rps"] > 0
    assert "titanic" in (out / "RESULTS.md").read_text()
    assert (out / "latency_vs_throughput.png").stat().st_size > 0
