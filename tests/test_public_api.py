"""The public surface: a complete, sorted ``__all__`` and the seed's import paths."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import th2etl


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(th2etl).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert th2etl.__all__ == sorted(th2etl.__all__, key=isort_key)
    assert public == set(th2etl.__all__) - {"__version__"}


def test_package_ships_type_information() -> None:
    assert (Path(th2etl.__file__).parent / "py.typed").exists()


def test_seed_import_paths_work() -> None:
    paths = {
        "th2etl": ["DatabaseStorage"],
        "th2etl.configs.settings": ["get_settings"],
        "th2etl.pipelines": ["build_example_pipeline"],
        "th2etl.scheduler": [
            "CronScheduler",
            "CronTrigger",
            "SchedulerManager",
            "load_scheduler_manager",
            "schedule_pipeline",
        ],
        "th2etl.helpers.client": ["HttpClient"],
        "th2etl.helpers.th2etl_client": ["Th2etlClient"],
        "th2etl.runner": ["main"],
        "th2etl.api": ["create_app"],
    }
    for module, names in paths.items():
        loaded = importlib.import_module(module)
        for name in names:
            assert hasattr(loaded, name), f"{module}.{name} is missing"


def test_every_subpackage_has_a_sorted_all() -> None:
    for module in (
        "th2etl.blocs",
        "th2etl.pipelines",
        "th2etl.exceptions",
        "th2etl.scheduler",
        "th2etl.storage",
    ):
        loaded = importlib.import_module(module)
        assert loaded.__all__ == sorted(loaded.__all__, key=isort_key), module


def test_the_console_script_is_the_runner() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"th2etl": "th2etl.runner:main"}


def test_import_th2etl_leaves_psycopg_and_croniter_until_used() -> None:
    # psycopg took about half of `import th2etl` (SQLite users never need it), croniter a tenth;
    # a pipeline of CSV blocs does not need psycopg either.
    code = (
        "import sys, th2etl\n"
        "th2etl.build_example_pipeline()\n"
        "assert 'psycopg' not in sys.modules, 'import th2etl or CSV blocs loaded psycopg'\n"
        "assert 'croniter' not in sys.modules, 'import th2etl loaded croniter'\n"
        "from th2etl.storage import PostgresStorage\n"
        "assert PostgresStorage.backend == 'postgresql'\n"
        "assert 'psycopg' in sys.modules\n"
        "th2etl.CronTrigger('0 * * * *')\n"
        "assert 'croniter' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
