"""Helpers of ``make build`` (deploy/image/build.sh): the image options of each bentofile, a check that
each built bento packs exactly the model tags its own routing plan names, and the size table.

Run from the project root with the project on ``PYTHONPATH`` (build.sh does):

    python deploy/image/bentos.py bentofile SRC OUT     SRC plus deploy/image/docker.yaml, written to OUT
    python deploy/image/bentos.py verify NAME TAG       exit 1 unless the models match the packed plan
    python deploy/image/bentos.py sizes OUT TAG...      write the size table (Markdown) to OUT
                                                        (EXPORT=1: also time and size `bentoml export`)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import bentoml
import yaml

from fleet.routing import load_plan

HERE = Path(__file__).resolve().parent
DOCKER_OPTIONS = HERE / "docker.yaml"
# The store models each bento serves, as named in deploy/routing.yaml (None: every model in the plan).
SERVES: dict[str, list[str] | None] = {
    "bento-fleet": None,
    "names": ["names"],
    "loans": ["loans"],
    "digits": ["digits_sklearn", "digits_cnn"],
    "topics": ["topics"],
    "titanic": ["titanic"],
}


def bentofile(source: Path, out: Path) -> None:
    """The bentofile with the image options of deploy/image/docker.yaml, unless it has its own.

    The project's bentofiles are owned elsewhere; once they carry a ``docker:`` section this step
    changes nothing. Paths in a bentofile are relative to the build context, so OUT may live anywhere.
    """
    config = yaml.safe_load(source.read_text())
    if "docker" in config:
        print(f"{source}: its own docker options are used", file=sys.stderr)
    else:
        config["docker"] = yaml.safe_load(DOCKER_OPTIONS.read_text())["docker"]
    out.write_text(yaml.safe_dump(config, sort_keys=False))


def planned_tags(name: str, bento: bentoml.Bento) -> set[str]:
    """Every tag the bento's own packed plan keeps (served tags and the rollback target)."""
    plan = load_plan(Path(bento.path) / "src" / "deploy" / "routing.yaml")
    models = SERVES[name] if SERVES[name] is not None else list(plan)
    return {tag for model in models for tag in plan[model].kept_tags()}


def verify(name: str, tag: str) -> int:
    bento = bentoml.get(tag)
    packed = {str(model.tag) for model in bento.info.all_models}
    planned = planned_tags(name, bento)
    if packed != planned:
        print(f"{tag}: packs {sorted(packed)}, its plan names {sorted(planned)}", file=sys.stderr)
        return 1
    requirements = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text()
    torch = [line for line in requirements.splitlines() if line.startswith("torch==")]
    print(f"{tag}: models {', '.join(sorted(packed))}; {torch[0] if torch else 'no torch'}")
    return 0


def _du(*paths: Path) -> int:
    """Bytes on disk of the files under ``paths`` (apparent sizes, hard links counted once per path)."""
    return sum(f.stat().st_size for path in paths for f in path.rglob("*") if f.is_file())


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f}"


def _exported(tag: str) -> str:
    """Size of ``bentoml export`` (the xz-compressed .bento archive another machine receives).

    Opt-in (EXPORT=1): xz-compressing the topics model takes about a minute per bento on 2 cores.
    """
    if os.environ.get("EXPORT") != "1":
        return "–"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "bento.bento"
        start = time.monotonic()
        subprocess.run([str(Path(sys.executable).parent / "bentoml"), "export", tag, str(archive)],
                       check=True, capture_output=True, env=os.environ)
        return f"{_mb(archive.stat().st_size)} ({time.monotonic() - start:.0f} s)"


def sizes(out: Path, tags: list[str]) -> None:
    rows = []
    for tag in tags:
        bento = bentoml.get(tag)
        models = [Path(bentoml.models.get(str(m.tag)).path) for m in bento.info.all_models]
        own, packed = _du(Path(bento.path)), _du(*models)
        rows.append(f"| `{tag}` | {len(models)} | {_mb(own)} | {_mb(packed)} | {_mb(own + packed)} "
                    f"| {_exported(tag)} |")
    out.write_text("\n".join([
        "# Bento sizes",
        "",
        f"Written by `make build` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC). Sizes in MB (10^6 bytes):",
        "",
        "- **bento dir**: the bento in the store (`src/`, `env/`, `apis/`, `bento.yaml`; models are only",
        "  referenced there);",
        "- **models**: the model store directories of the model tags it packs;",
        "- **dir + models**: what `bentoml serve <tag>` and `bentoml containerize` use;",
        "- **export**: the archive `bentoml export <tag>` writes (bento and models, xz-compressed, what",
        "  moves between machines or to a registry) and how long that took; `EXPORT=1 make build` only.",
        "",
        "Python packages are not in a bento (only `env/python/requirements.txt`); they are installed into",
        "the image (`make image`; its size and build time are in README.md, Deploying).",
        "",
        "| bento | models | bento dir | models | dir + models | export |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]))
    print(out.read_text())


def main(argv: list[str]) -> int:
    match argv:
        case ["bentofile", source, out]:
            bentofile(Path(source), Path(out))
            return 0
        case ["verify", name, tag]:
            return verify(name, tag)
        case ["sizes", out, *tags] if tags:
            sizes(Path(out), tags)
            return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
