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
        *_section("Cross-validation", meta.get("cross_validation")),
        *_section("Calibration", meta.get("calibration")),
        *_section("Subject level (finer labels, not served)", meta.get("subject_level")),
        *_section("When the answer is flagged not confident", meta.get("confidence")),
        *_examples(meta.get("examples")),
        "## Confusion summary (test split)", "",
        *_confusion_lines(meta), "",
        "## Known limitations", "", *[f"- {x}" for x in about.get("limitations", [])], "",
        *_section("Reproducibility", about.get("reproducibility") and {"": about["reproducibility"]}),
        "## Misuse to avoid", "", *[f"- {x}" for x in about.get("misuse", [])], "",
        "## Training parameters", "", *[f"- {k}: {v}" for k, v in meta.get("params", {}).items()], "",
        f"Libraries: {meta.get('library_versions', {})}", "",
    ]
    return "\n".join(lines)


def _section(title: str, values: dict[str, Any] | None) -> list[str]:
    """A titled key/value table (or one paragraph, for a single unnamed value); nothing when absent."""
    if not values:
        return []
    if list(values) == [""]:
        return [f"## {title}", "", str(values[""]), ""]
    return [f"## {title}", "", "| | |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in values.items()], ""]


def _examples(rows: list[dict[str, Any]] | None) -> list[str]:
    """What the trained model answers to the seed's and README's examples: a user sees at once what it
    believes, and how sure it is."""
    if not rows:
        return []
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return ["## Answers to expect", "", "Computed by this version at the end of its training run.", "",
            f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}",
            *[f"| {' | '.join(_fmt(row.get(c, '')) for c in columns)} |" for row in rows], ""]


def _confusion_lines(meta: dict[str, Any]) -> list[str]:
    """Per-class results (names) as a table; any other confusion summary as a list."""
    per_class = meta.get("per_class") if meta.get("confusion") is None else None
    if isinstance(per_class, dict):
        return ["| class | test names | accuracy | most confused with | share |", "|---|---|---|---|---|",
                *[f"| {label} | {row.get('support', '?')} | {_fmt(row.get('accuracy'))} | "
                  f"{row.get('most_confused_with') or '-'} | {_fmt(row.get('confused_share') or '-')} |"
                  for label, row in per_class.items()]]
    return [f"- {k}: {v}" for k, v in _confusion_items(meta)]


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
        if cv := meta.get("cross_validation"):
            shown += (f"; {cv['folds']}-fold CV accuracy {_fmt(cv['cv_accuracy_mean'])} "
                      f"± {_fmt(cv['cv_accuracy_std'])}")
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
