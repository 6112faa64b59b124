"""th2etl apply of a project file with 500 blocs and 100 pipelines, and its no-change re-apply.

    .venv/bin/python scripts/bench_apply.py [--blocs 500] [--pipelines 100] [--database-url URL]

Each round uses a fresh database (a SQLite file, or a new schema of ``--database-url``):

* reference: the same definitions created one call each (``create_bloc``, ``create_pipeline``,
  ``create_trigger``, ``create_scheduler``), as a script without ``apply`` would;
* apply: parse the file, plan, apply it in one transaction (what ``th2etl apply`` does);
* re-apply: the same file again, which plans "no changes" and writes nothing.

Printed: seconds of each (median of ``--rounds``), apply / reference, and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from th2etl.projects import ProjectFile, apply_plan, make_plan
from th2etl.storage import DatabaseStorage


def project_text(blocs: int, pipelines: int) -> str:
    lines = ['project = "bench"']
    for number in range(blocs):
        lines += [
            "",
            f"[blocs.b{number:04d}]",
            'bloc_type = "example_transformer"',
            f'description = "bloc {number}"',
            f"config = {{ factor = {number % 7 + 1} }}",
        ]
    per = max(1, blocs // pipelines)
    for number in range(pipelines):
        names = [f"b{(number * per + i) % blocs:04d}" for i in range(per)]
        stages = ", ".join(f'["{name}"]' for name in names)
        lines += ["", f"[pipelines.p{number:03d}]", f"stages = [{stages}]"]
        lines += [
            "",
            f"[triggers.t{number:03d}]",
            f'pipeline_name = "p{number:03d}"',
            f'cron_expression = "{number % 60} 2 * * *"',
            'timezone = "Europe/Paris"',
            "",
            f"[schedulers.s{number:03d}]",
            f'pipeline_name = "p{number:03d}"',
            f'trigger_name = "t{number:03d}"',
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def fresh(url: str | None, folder: Path) -> Iterator[Any]:
    if url is None:
        storage = DatabaseStorage(folder / f"{uuid.uuid4().hex}.db")
        try:
            yield storage
        finally:
            storage.close()
        return
    import psycopg
    from psycopg import sql

    schema = f"bench_apply_{uuid.uuid4().hex[:8]}"
    storage = DatabaseStorage(url, schema=schema)
    try:
        yield storage
    finally:
        storage.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def reference(storage: Any, project: ProjectFile) -> None:
    for definition in project:
        getattr(storage, f"create_{definition.kind}")(definition.name, **definition.values)


def apply(storage: Any, project: ProjectFile) -> str:
    plan = make_plan(storage, project)
    apply_plan(storage, plan, project)
    return plan.describe().splitlines()[-1]


def one_round(url: str | None, folder: Path, path: Path, what: str) -> float:
    project = ProjectFile.load(path)
    with fresh(url, folder) as storage:
        return timed(lambda: reference(storage, project))


def two_applies(url: str | None, folder: Path, path: Path) -> tuple[float, float]:
    project = ProjectFile.load(path)
    with fresh(url, folder) as storage:
        first = timed(lambda: apply(storage, project))
        outcome: list[str] = []
        second = timed(lambda: outcome.append(apply(storage, project)))
    assert outcome[0].startswith("no changes"), outcome
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocs", type=int, default=500)
    parser.add_argument("--pipelines", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL (default: a SQLite file)")
    args = parser.parse_args()
    text = project_text(args.blocs, args.pipelines)
    results: dict[str, list[float]] = {"reference": [], "apply": [], "re-apply": [], "parse": []}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.toml"
        path.write_text(text)
        for _ in range(args.rounds):
            results["parse"].append(timed(lambda: ProjectFile.load(path)))
            results["reference"].append(one_round(args.database_url, Path(folder), path, "ref"))
            apply_time, reapply_time = two_applies(args.database_url, Path(folder), path)
            results["apply"].append(apply_time)
            results["re-apply"].append(reapply_time)
    where = "PostgreSQL" if args.database_url else "SQLite"
    median = {name: statistics.median(values) for name, values in results.items()}
    definitions = args.blocs + 3 * args.pipelines
    print(
        f"{args.blocs} blocs, {args.pipelines} pipelines (+ a trigger and a scheduler each) "
        f"= {definitions} definitions on {where}, median of {args.rounds} rounds:"
    )
    print(f"  parse + check the file      {median['parse']:.3f} s")
    print(f"  reference (one call each)   {median['reference']:.3f} s")
    print(
        f"  apply (plan + one transaction) {median['apply']:.3f} s  "
        f"= {median['apply'] / median['reference']:.2f} x reference"
    )
    print(
        f"  re-apply, no changes        {median['re-apply']:.3f} s  "
        f"= {median['re-apply'] / median['reference']:.2f} x reference"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS                    {peak:.0f} MiB")


if __name__ == "__main__":
    main()
