"""Model cards and the README metrics table, written from what each model carries in the store.

Nothing here is typed by hand: the figures are the held-out metrics saved with each version, and the
descriptive text (source, licence, label meaning, limitations) is the ``card`` each training run saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet import PROJECT_ROOT, store

README = PROJECT_ROOT / "README.md"
CARDS = PROJECT_ROOT / "docs" / "cards"
START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def card(tag: str) -> str:
    """A Markdown model card for exactly ``tag``."""
    info = store.get(tag).info
    meta: dict[str, Any] = info.metadata
    about = meta.get("card", {})
    data = meta.get("dataset", {})
    lines = [
        f"# Model card: {tag}", "",
        f"Trained {meta.get('trained_at', '?')} from commit {meta.get('git_commit', 'unknown')}.", "",
        "## Data", "",
        f"- Source: {about.get('source', data.get('source', '?'))}",
        f"- Licence: {about.get('licence', '?')}",
        f"- Rows: {data.get('rows', '?')}; splits: {data.get('splits', '?')}",
        f"- Fingerprint: sha256 `{data.get('sha256', '?')}`",
        f"- What the label means: {about.get('label', '?')}", "",
        "## Class balance", "",
        *[f"- {k}: {v}" for k, v in data.get("class_balance", {}).items()], "",
        "## Held-out metrics", "", "| metric | value |", "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in meta.get("metrics", {}).items()], "",
        "## Confusion summary (test split)", "",
        *[f"- {k}: {v}" for k, v in _confusion_items(meta)], "",
        "## Known limitations", "", *[f"- {x}" for x in about.get("limitations", [])], "",
        "## Misuse to avoid", "", *[f"- {x}" for x in about.get("misuse", [])], "",
        "## Training parameters", "", *[f"- {k}: {v}" for k, v in meta.get("params", {}).items()], "",
        f"Libraries: {meta.get('library_versions', {})}", "",
    ]
    return "\n".join(lines)


def _confusion_items(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """The model's confusion summary, or for models that record per-class results instead (names), each
    class's accuracy and the class it is most confused with."""
    confusion = meta.get("confusion")
    if confusion is None and isinstance(meta.get("per_class"), dict):
        return [(label, _per_class(row)) for label, row in meta["per_class"].items()]
    if isinstance(confusion, dict):
        return list(confusion.items())
    if isinstance(confusion, list):
        return [(str(i + 1), row) for i, row in enumerate(confusion)]
    return []


def _per_class(row: dict[str, Any]) -> str:
    text = f"accuracy {_fmt(row.get('accuracy'))} over {row.get('support', '?')}"
    if row.get("most_confused_with"):
        text += f"; most confused with {row['most_confused_with']} ({_fmt(row.get('confused_share'))})"
    return text


def metrics_table(tags: dict[str, str]) -> str:
    """One row per served model: its tag and held-out metrics."""
    rows = ["| model | tag | held-out metrics | trained in |", "|---|---|---|---|"]
    for name, tag in tags.items():
        meta = store.get(tag).info.metadata
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in meta.get("metrics", {}).items())
        seconds = meta.get("training_seconds")
        rows.append(f"| {name} | `{tag}` | {shown} | {f'{seconds:.1f} s' if seconds else '?'} |")
    return "\n".join(rows)


def write(tags: dict[str, str], readme: Path = README, folder: Path = CARDS) -> list[Path]:
    """Write one card per model and refresh the README table between its markers."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, tag in tags.items():
        path = folder / f"{name}.md"
        path.write_text(card(tag))
        written.append(path)
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        readme.write_text(f"{head}{START}\n{metrics_table(tags)}\n{END}{tail}")
        written.append(readme)
    return written
