"""results.json, RESULTS.md (tables, ratios, targets) and the latency-vs-throughput plot.

RESULTS.md keeps whatever is written outside its generated block, so the analysis written by hand
survives a re-run; the block between the markers is replaced.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

PLOT = "latency_vs_throughput.png"
START, END = "<!-- results:start -->", "<!-- results:end -->"
HEAVY = ("loans", "topics", "titanic")  # ≥ 4× the one-worker FastAPI app expected; the others ≥ 2×
SERVERS32 = ("batched", "unbatched", "fastapi", "fastapi_workers", "floor")
COLOURS = {"batched": "tab:blue", "unbatched": "tab:orange", "fastapi": "tab:green",
           "fastapi_workers": "tab:olive", "floor": "tab:gray", "unlogged": "tab:purple"}


def write(results: dict[str, Any], out: Path) -> None:
    for model, entry in results["models"].items():
        entry["targets"] = targets(model, entry, results["versions"].get("batching", {}))
        entry["cpu_per_request"] = cpu_per_request(entry)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, out / "RESULTS.md")
    plot(results, out / PLOT)


def run_at(entry: dict[str, Any], server: str, concurrency: int) -> dict[str, Any] | None:
    return next((r for r in entry["runs"] if r["server"] == server and r["mode"] == "closed"
                 and r["concurrency"] == concurrency), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def targets(model: str, entry: dict[str, Any], batching: dict[str, Any]) -> dict[str, Any]:
    """Serving core v2's targets, each with its figures: throughput at 32 clients against the peers,
    the share of what the stack and the model allow, c=1 latency, tails at 8 clients, after a burst."""
    ours, plain, seed, seeds, floor = (run_at(entry, s, 32) for s in SERVERS32)
    alone, alone_seed = run_at(entry, "batched", 1), run_at(entry, "fastapi", 1)
    at8 = run_at(entry, "batched", 8)
    found: dict[str, Any] = {}
    if ours:
        found["ceiling_share"] = ratio(ours["rps"], entry["ceiling_rps"])
        found["floor_share"] = ratio(ours["rps"], floor and floor["rps"])
        limits = [x for x in (entry["ceiling_rps"], floor and floor["rps"]) if x]
        allowed = min(limits) if limits else None
        found["allowed_share"] = ratio(ours["rps"], allowed)
        found["allowed_met"] = found["allowed_share"] is not None and found["allowed_share"] >= 0.7
        found["batched_over_unbatched"] = ratio(ours["rps"], plain and plain["rps"])
        found["over_fastapi"] = ratio(ours["rps"], seed and seed["rps"])
        found["over_fastapi_workers"] = ratio(ours["rps"], seeds and seeds["rps"])
        wanted = 4 if model in HEAVY else 2
        if found["over_fastapi"] is not None:
            found["fastapi_wanted"], found["fastapi_met"] = wanted, found["over_fastapi"] >= wanted
        if found["over_fastapi_workers"] is not None:
            found["fastapi_workers_met"] = found["over_fastapi_workers"] >= 1.2
        found["tail_32"] = ratio(ours["p99_ms"], ours["p50_ms"])
    if at8 and at8["p50_ms"]:
        found["tail_8"] = ratio(at8["p99_ms"], at8["p50_ms"])
        found["tail_met"] = found["tail_8"] is not None and found["tail_8"] <= 3
    if alone and alone_seed and alone["p50_ms"] is not None and alone_seed["p50_ms"] is not None:
        found["c1_over_fastapi_ms"] = round(alone["p50_ms"] - alone_seed["p50_ms"], 2)
        found["c1_met"] = found["c1_over_fastapi_ms"] <= 1.0
    burst = entry.get("after_burst")
    if burst and burst.get("before_p50_ms") and burst.get("p50_ms"):
        found["burst_ratio"] = ratio(burst["p50_ms"], burst["before_p50_ms"])
        found["burst_met"] = found["burst_ratio"] <= 1.1
    rss = entry.get("rss_mb", {}).get("batched")
    if rss:
        found["rss_mb"], found["rss_met"] = rss, rss < 3000
    return found


def cpu_per_request(entry: dict[str, Any], clients: int = 32) -> dict[str, Any]:
    """CPU milliseconds per request at ``clients``: the whole server (batched; every worker), the model's
    own compute per item at the batch size the server formed, and the FastAPI process; the busiest part."""
    ours, seed = run_at(entry, "batched", clients), run_at(entry, "fastapi", clients)
    found: dict[str, Any] = {}
    if ours and ours["rps"] > 0 and ours.get("cpu"):
        cpu = ours["cpu"]
        found |= {"gateway_ms": per_request(cpu.get("server"), ours["rps"]),
                  "client_ms": per_request(cpu.get("client"), ours["rps"]),
                  "mean_batch": ours.get("mean_batch"), "busiest": busiest(cpu)}
        by_batch = {int(k): v for k, v in entry.get("ceiling_by_batch", {}).items()}
        if by_batch:
            found["compute_ms"] = round(compute_ms(by_batch, ours.get("mean_batch") or 1.0), 3)
    if seed and seed["rps"] > 0 and seed.get("cpu"):
        found["fastapi_ms"] = per_request(seed["cpu"].get("server"), seed["rps"])
    return found


def compute_ms(by_batch: dict[int, float], batch: float) -> float:
    """Model milliseconds per item at ``batch`` items per call: the call time measured in process
    (size / items per second), interpolated linearly between the measured sizes."""
    calls = sorted((size, size / rate) for size, rate in by_batch.items())
    low = max((c for c in calls if c[0] <= batch), default=calls[0])
    high = min((c for c in calls if c[0] >= batch), default=calls[-1])
    if high[0] == low[0]:
        return 1000 * low[1] / low[0]
    seconds = low[1] + (high[1] - low[1]) * (batch - low[0]) / (high[0] - low[0])
    return 1000 * seconds / batch


def per_request(cores: float | None, rps: float) -> float | None:
    return None if cores is None else round(1000 * cores / rps, 2)


def busiest(cpu: dict[str, float]) -> str:
    """Which part held the CPU: a process near one core (one worker, one event loop) or the machine."""
    parts = {"server": cpu.get("server", 0.0), "load generator": cpu.get("client", 0.0),
             "other work": max(cpu.get("other", 0.0), 0.0)}
    name, cores = max(parts.items(), key=lambda kv: kv[1])
    if cores >= 0.85 * (2 if name == "server" else 1):
        return f"{name} ({cores:.2f} cores)"
    if cpu.get("machine", 0.0) >= 1.8:
        return f"machine ({cpu['machine']:.2f} of 2 cores; most: {name})"
    return f"neither ({cpu.get('machine', 0.0):.2f} of 2 cores busy): waiting"


def cpu_table(results: dict[str, Any]) -> list[str]:
    lines = ["| model | server ms | of which JSON → pydantic (+ image decode) | "
             "model compute ms/item (at its batch) | mean batch | FastAPI ms | busiest at 32 clients "
             "(batched) |", "|---|" + "---:|" * 5 + "---|"]
    for model, entry in results["models"].items():
        c = entry.get("cpu_per_request", {})
        cells = [fmt(c.get("gateway_ms"), 2), fmt(entry.get("edge_ms"), 3), fmt(c.get("compute_ms"), 3),
                 fmt(c.get("mean_batch")), fmt(c.get("fastapi_ms"), 2), c.get("busiest", "—")]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.0f} %"


def mark(met: bool | None, text: str) -> str:
    return text if met is None else f"{'✅' if met else '❌'} {text}"


def summary_table(results: dict[str, Any]) -> list[str]:
    lines = ["| model | ceiling items/s (batch) | floor | batched | unbatched | FastAPI | "
             "FastAPI, same workers | ours/FastAPI | ours/FastAPI same workers | ours/floor | ours/ceiling | "
             "p99/p50 @8 | p99/p50 @32 | RSS MB |", "|---|" + "---:|" * 13]
    for model, entry in results["models"].items():
        rps = [fmt(r and r["rps"]) for r in (run_at(entry, s, 32) for s in SERVERS32)]
        t = entry.get("targets", {})
        lines.append(
            f"| {model} | {fmt(entry['ceiling_rps'], 0)} ({entry.get('ceiling_batch', '—')}) | {rps[4]} | "
            f"{rps[0]} | {rps[1]} | {rps[2]} | {rps[3]} | {fmt(t.get('over_fastapi'), 2)}× | "
            f"{fmt(t.get('over_fastapi_workers'), 2)}× | {percent(t.get('floor_share'))} | "
            f"{percent(t.get('ceiling_share'))} | {fmt(t.get('tail_8'), 1)} | {fmt(t.get('tail_32'), 1)} | "
            f"{fmt(t.get('rss_mb'), 0)} |")
    return lines


def targets_table(results: dict[str, Any]) -> list[str]:
    lines = ["| model | ≥ 2× FastAPI @32 (4× loans, topics, titanic) | ≥ 1.2× FastAPI same workers | "
             "≥ 70 % of min(ceiling, floor) | c=1 p50 ≤ FastAPI + 1 ms | p99 ≤ 3× p50 @8 | "
             "after burst ≤ 1.1× | RSS < 3 GB |", "|---|---|---|---|---|---|---|---|"]
    for model, entry in results["models"].items():
        t = entry.get("targets", {})
        cells = [
            mark(t.get("fastapi_met"), f"{fmt(t.get('over_fastapi'), 2)}×"),
            mark(t.get("fastapi_workers_met"), f"{fmt(t.get('over_fastapi_workers'), 2)}×"),
            mark(t.get("allowed_met"), percent(t.get("allowed_share"))),
            mark(t.get("c1_met"), f"{fmt(t.get('c1_over_fastapi_ms'), 2)} ms"),
            mark(t.get("tail_met"), f"{fmt(t.get('tail_8'), 1)}×"),
            mark(t.get("burst_met"), f"{fmt(t.get('burst_ratio'), 2)}×"),
            mark(t.get("rss_met"), f"{fmt(t.get('rss_mb'), 0)} MB"),
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def burst_table(results: dict[str, Any]) -> list[str]:
    lines = ["| model | p50 before (c=1) | after burst: p50 | p99 | rps | p50 per slice (ms) |",
             "|---|---:|---:|---:|---:|---|"]
    for model, entry in results["models"].items():
        burst = entry.get("after_burst")
        if burst:
            trail = ", ".join(fmt(v) for v in burst["series_p50_ms"])
            lines.append(f"| {model} | {fmt(burst['before_p50_ms'], 2)} | {fmt(burst['p50_ms'], 2)} | "
                         f"{fmt(burst['p99_ms'])} | {fmt(burst['rps'])} | {trail} |")
    return lines


def model_table(entry: dict[str, Any]) -> list[str]:
    lines = ["| server | mode | clients | rate/s | rps | p50 ms | p95 ms | p99 ms | errors | mean batch | "
             "cores: server / client / other |", "|---|---|" + "---:|" * 8 + "---|"]
    order = {name: i for i, name in enumerate(COLOURS)}
    runs = sorted(entry["runs"], key=lambda r: (order.get(r["server"], 9), r["mode"], r["concurrency"],
                                                r["rate"] or 0))
    for r in runs:
        cpu = r.get("cpu", {})
        cores = " / ".join(fmt(cpu.get(k), 2) for k in ("server", "client", "other"))
        cores += " ⚠" if r.get("contended") else ""
        lines.append(f"| {r['server']} | {r['mode']} | {r['concurrency'] or '—'} | {fmt(r['rate'])} | "
                     f"{fmt(r['rps'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{r['errors']} | {fmt(r.get('mean_batch'))} | {cores} |")
    return lines


def run_header(results: dict[str, Any]) -> list[str]:
    m, v, s = results["machine"], results["versions"], results.get("settings", {})
    libs = ", ".join(f"{k} {v[k]}" for k in ("bentoml", "torch", "scikit-learn", "fastapi", "uvicorn",
                                             "aiohttp") if k in v)
    load = " / ".join(f"{x:.2f}" for x in m["loadavg_start"])
    return [
        f"Run of {m['started_at']} ({m.get('benchmark_s', '—')} s): {m['cpus']} × {m['cpu_model']}, "
        f"{m['memory_gb']} GB, load average at start {load} (1/5/15 min); {libs}; "
        f"commit {str(v.get('git_commit'))[:10]} with {len(v.get('uncommitted_files', []))} files changed.",
        "",
        f"Each point: {s.get('warmup_s')} s warm-up, {s.get('duration_s')} s measured; open loop at "
        f"{', '.join(f'{100 * r:.0f} %' for r in s.get('rates', []))} of each server's own closed-loop peak "
        f"(latency from the scheduled send time); timeout {s.get('timeout_s')} s. Models: "
        + ", ".join(f"{k}" for k in v.get("models", {}).values()) + ".",
    ]


def generated(results: dict[str, Any]) -> str:
    lines = [START, "", *run_header(results), "", "### At 32 concurrent clients (closed loop)", "",
             *summary_table(results), "", "### Targets", "", *targets_table(results), "",
             "### CPU per request at 32 clients (process CPU time / answered requests)", "",
             *cpu_table(results), "",
             "### Concurrency 1 right after the 128-client burst (batched)", "", *burst_table(results), ""]
    lines += ["⚠: other work on the machine used more than 0.3 cores during the point, even after a re-run; "
              "`other` is machine CPU outside the server and client processes.", ""]
    for model, entry in results["models"].items():
        by_batch = ", ".join(f"{k}: {fmt(v, 0)}" for k, v in entry.get("ceiling_by_batch", {}).items())
        lines += [f"### {model}", "", f"In-process ceiling {fmt(entry['ceiling_rps'], 0)} items/s "
                  f"(items/s by batch size: {by_batch}).", "", *model_table(entry), ""]
    lines += [f"![latency vs throughput]({PLOT})", "", END]
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Replace the generated block of RESULTS.md (or create the file around it)."""
    block = generated(results)
    if path.exists() and START in (text := path.read_text()) and END in text:
        path.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
        return
    title = "# Serving benchmark\n\nWritten by `python -m benchmarks` (`make bench`).\n\n"
    path.write_text(title + block + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    """One panel per model: p99 (solid) and p50 (dotted) latency against throughput, per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["models"])
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        panel(ax, model, results["models"][model])
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    fig.suptitle("Latency vs throughput: p99 solid, p50 dotted; closed loop labelled by clients, "
                 "open loop (p99) as squares")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def panel(ax: Any, model: str, entry: dict[str, Any]) -> None:
    for server, colour in COLOURS.items():
        mine = [r for r in entry["runs"] if r["server"] == server and r["p99_ms"] and r["rps"] > 0]
        closed = sorted((r for r in mine if r["mode"] == "closed"), key=lambda r: r["concurrency"])
        opened = [r for r in mine if r["mode"] == "open"]
        if closed:
            xs = [r["rps"] for r in closed]
            ax.plot(xs, [r["p99_ms"] for r in closed], "o-", color=colour, label=f"{server} p99")
            ax.plot(xs, [r["p50_ms"] for r in closed], ".:", color=colour, alpha=0.7)
            for r in closed:
                ax.annotate(str(r["concurrency"]), (r["rps"], r["p99_ms"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        if opened:
            ax.plot([r["rps"] for r in opened], [r["p99_ms"] for r in opened], "s", color=colour,
                    fillstyle="none", markersize=7)
    ax.axvline(entry["ceiling_rps"], color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"ceiling {entry['ceiling_rps']:,.0f}/s", (entry["ceiling_rps"], 1), fontsize=7,
                xycoords=("data", "axes fraction"), xytext=(-3, -12), textcoords="offset points",
                ha="right", color="grey")
    ax.set(title=model, xlabel="throughput (requests/s)", ylabel="latency (ms), log", yscale="log")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
