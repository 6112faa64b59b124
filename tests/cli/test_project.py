"""th2etl apply and th2etl export: plan, one transaction, prune, round trip, and refusals that
name the file, the line and the key."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from th2etl.exceptions import ProjectFileError
from th2etl.projects import ProjectFile

SALES = """\
project = "sales"

[blocs.load_sales]
bloc_type = "csv_loader"
description = "the day's sales"

[blocs.load_sales.config]
file_path = "data/sales-${var:day}.csv"

[blocs.double]
bloc_type = "example_transformer"
config = { factor = 2 }

[blocs.store]
bloc_type = "postgres_exporter"

[blocs.store.config]
source_bloc = "double"
dsn = "${env:WAREHOUSE_DSN}"
table_name = "daily_sales"

[pipelines.daily_sales]
stages = [["load_sales"], ["double"], ["store"]]

[triggers.every_night]
pipeline_name = "daily_sales"
cron_expression = "30 2 * * *"
timezone = "Europe/Paris"

[schedulers.nightly_sales]
pipeline_name = "daily_sales"
trigger_name = "every_night"
"""


def _write(tmp_path: Path, text: str, name: str = "sales.toml") -> str:
    (tmp_path / name).write_text(text)
    return name


def _names(cli: Cli) -> dict[str, list[str]]:
    s = cli.storage
    return {
        "blocs": [r.name for r in s.list_blocs()],
        "pipelines": [r.name for r in s.list_pipelines()],
        "triggers": [r.name for r in s.list_triggers()],
        "schedulers": [r.name for r in s.list_schedulers()],
    }


def test_apply_plans_applies_then_has_no_changes_and_export_round_trips(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _write(tmp_path, SALES)
    code, out, _ = cli("apply", name, "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "plan for project 'sales' from sales.toml:",
        "  + bloc double (example_transformer)",
        "  + bloc load_sales (csv_loader)",
        "  + bloc store (postgres_exporter)",
        "  + pipeline daily_sales",
        "  + trigger every_night",
        "  + scheduler nightly_sales",
        "6 to add, 0 to change, 0 to remove",
        "dry run: nothing was applied",
    ]
    assert cli.storage.list_blocs() == []

    code, out, _ = cli("apply", name)
    assert code == 0 and out.endswith(f"applied to {cli.storage.describe()}\n")
    assert cli.storage.get_trigger("every_night").timezone == "Europe/Paris"
    assert cli.storage.definition_projects("scheduler") == {"nightly_sales": "sales"}
    assert cli("apply", name)[1] == (
        "no changes: the database matches sales.toml (project 'sales')\n"
    )

    # The secret stays a reference even where the variable is set.
    monkeypatch.setenv("WAREHOUSE_DSN", "postgresql://etl:s3cret@db/warehouse")
    code, exported, _ = cli("export")
    assert code == 0 and "s3cret" not in exported
    assert 'dsn = "${env:WAREHOUSE_DSN}"' in exported
    assert ProjectFile.parse(exported).project == "sales"

    # export -> apply on an empty database -> export gives the same file.
    other = tmp_path / "empty.db"
    monkeypatch.delenv("DATABASE_HOST", raising=False)
    monkeypatch.setenv("TH2ETL_SQLITE_PATH", str(other))
    assert cli("apply", _write(tmp_path, exported, "exported.toml"))[0] == 0
    assert cli("export", "-o", "again.toml")[0] == 0
    assert (tmp_path / "again.toml").read_text() == exported


def test_a_changed_file_changes_what_differs_and_prune_removes_only_its_own(
    cli: Cli, tmp_path: Path
) -> None:
    name = _write(tmp_path, SALES)
    assert cli("apply", name)[0] == 0
    cli.storage.create_bloc("by_hand", "example_transformer")  # a person's: never pruned
    _write(
        tmp_path,
        'project = "stock"\n[blocs.stock_double]\nbloc_type = "example_transformer"\n',
        "stock.toml",
    )
    assert cli("apply", "stock.toml")[0] == 0

    changed = SALES.replace('"30 2 * * *"', '"0 3 * * *"').replace(
        'description = "the day\'s sales"\n', ""
    )
    changed = changed[: changed.index("[schedulers.")]
    _write(tmp_path, changed)
    code, out, _ = cli("apply", name)
    assert code == 0
    assert "  ~ bloc load_sales: description\n  ~ trigger every_night: cron_expression\n" in out
    assert "remove" in out and "- scheduler" not in out  # no --prune: nothing removed
    assert cli.storage.get_trigger("every_night").cron_expression == "0 3 * * *"
    assert cli.storage.get_bloc("load_sales").description == ""

    code, out, _ = cli("apply", name, "--prune")
    assert code == 0
    assert "  - scheduler nightly_sales\n0 to add, 0 to change, 1 to remove\n" in out
    assert _names(cli)["schedulers"] == []
    assert _names(cli)["blocs"] == ["by_hand", "double", "load_sales", "stock_double", "store"]


def test_a_person_made_definition_is_adopted_and_another_projects_refused(
    cli: Cli, tmp_path: Path
) -> None:
    cli.storage.create_bloc("double", "example_transformer", config={"factor": 2})
    name = _write(tmp_path, SALES)
    code, out, _ = cli("apply", name, "--dry-run")
    assert "  ~ bloc double: project\n" in out
    assert cli("apply", name)[0] == 0
    assert cli.storage.definition_projects("bloc")["double"] == "sales"

    _write(
        tmp_path,
        'project = "stock"\n\n[blocs.double]\nbloc_type = "example_transformer"\n',
        "stock.toml",
    )
    code, _, err = cli("apply", "stock.toml")
    assert code == 1
    assert err == (
        "th2etl: error: stock.toml:3: [blocs.double] bloc 'double' is stored already and "
        "belongs to project 'sales'; rename it here, or remove it from project 'sales''s file "
        "and apply that first\n"
    )


def test_prune_never_removes_a_pipeline_with_a_running_run(cli: Cli, tmp_path: Path) -> None:
    name = _write(tmp_path, SALES)
    assert cli("apply", name)[0] == 0
    cli.storage.start_run("r-1", "daily_sales", started_at=datetime.now(UTC))
    only_blocs = SALES[: SALES.index("[pipelines.")]
    _write(tmp_path, only_blocs.replace("factor = 2", "factor = 3"))
    code, _, err = cli("apply", name, "--prune")
    assert code == 1
    assert "--prune would remove pipeline 'daily_sales', which has run(s) that have not " in err
    assert "finished: r-1; nothing was applied" in err
    assert cli.storage.get_bloc("double").config == {"factor": 2}
    assert _names(cli)["pipelines"] == ["daily_sales"]


def test_a_refusal_half_way_applies_nothing(cli: Cli, tmp_path: Path) -> None:
    # The blocs are fine; the pipeline reads 'double' in the stage before it runs.
    backwards = SALES.replace(
        '[["load_sales"], ["double"], ["store"]]', '[["load_sales", "store"], ["double"]]'
    )
    name = _write(tmp_path, backwards)
    for dry_run in (["--dry-run"], []):
        code, _, err = cli("apply", name, *dry_run)
        assert code == 1
        assert err.startswith("th2etl: error: sales.toml:22: [pipelines.daily_sales] ")
        assert "source_bloc" in err and err.endswith("; nothing was applied\n")
        assert _names(cli) == {"blocs": [], "pipelines": [], "triggers": [], "schedulers": []}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("cron_expression =", "cron_expresion ="),
            r"sales.toml:27: \[triggers.every_night\] unknown key 'cron_expresion'; did you "
            r"mean 'cron_expression'\? allowed keys: pipeline_name, cron_expression, timezone",
        ),
        (
            ('"example_transformer"', '"example_transfomer"'),
            r"sales.toml:11: \[blocs.double\] bloc 'double': unknown bloc_type "
            r"'example_transfomer'; did you mean 'example_transformer'\?",
        ),
        (
            ('trigger_name = "every_night"', 'trigger_name = "every_nite"'),
            r"sales.toml:32: \[schedulers.nightly_sales\] trigger_name names trigger "
            r"'every_nite', which is neither in sales.toml nor stored; did you mean "
            r"'every_night'\? add \[triggers.every_nite\] to the file or fix the name",
        ),
        (
            ('[["load_sales"], ["double"]', '[["load_sale"], ["double"]'),
            r"sales.toml:23: \[pipelines.daily_sales\] stages names bloc 'load_sale'",
        ),
        (
            ('project = "sales"', 'projet = "sales"'),
            r"sales.toml:1: unknown key 'projet'; did you mean 'project'\?",
        ),
        (
            ("[blocs.double]", "[blocs.double"),
            r"sales.toml:10: .*\(at line 10, column 14\); fix the TOML syntax",
        ),
        (
            ("[blocs.store]\n", "[blocs.store]\ncolour = 1\n"),
            r"sales.toml:15: \[blocs.store\] unknown key 'colour'; allowed keys: bloc_type, "
            r"config, description",
        ),
    ],
)
def test_bad_files_are_refused_with_file_line_key_and_fix(
    cli: Cli, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    assert edit[0] in SALES
    name = _write(tmp_path, SALES.replace(edit[0], edit[1], 1))
    code, _, err = cli("apply", name)
    assert code == 1
    assert re.search(message, err), err
    assert _names(cli)["blocs"] == []


def test_project_file_errors_carry_the_line_and_the_key() -> None:
    with pytest.raises(ProjectFileError, match=r"f.toml:3: \[blocs.a\] unknown key 'typ'") as info:
        ProjectFile.parse('project = "p"\n[blocs.a]\ntyp = 1\n', "f.toml")
    assert (info.value.file, info.value.line, info.value.key) == ("f.toml", 3, "typ")
    with pytest.raises(ProjectFileError, match=r"project is missing; the file must name its"):
        ProjectFile.parse("[blocs.a]\nbloc_type = 'csv_loader'\n", "f.toml")


def test_the_readme_example_applies_once_and_exports_as_written(cli: Cli, tmp_path: Path) -> None:
    from tests.readme import code_blocks

    (example,) = code_blocks("Pipelines as code", "toml")
    name = _write(tmp_path, example)
    code, out, _ = cli("apply", name)
    assert code == 0 and "6 to add, 0 to change, 0 to remove" in out
    assert cli("apply", name)[1].startswith("no changes")
    code, exported, _ = cli("export", "--pipeline", "daily_sales")
    assert code == 0
    assert _desired(ProjectFile.parse(exported)) == _desired(ProjectFile.parse(example))


def _desired(project_file: ProjectFile) -> dict[str, dict[str, object]]:
    return {f"{d.kind} {d.name}": d.desired() for d in project_file}
