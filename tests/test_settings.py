"""get_settings: which database th2etl uses, and how bad settings are refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from th2etl.configs.settings import Settings, get_settings
from th2etl.exceptions import ConfigurationError

SECRET = "s3cr3t-p@ss:word/x"


def test_nothing_set_uses_the_embedded_sqlite_default(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.chdir(tmp_path)
    settings = get_settings({})
    assert settings.backend == "sqlite"
    assert settings.database_url is None
    assert settings.sqlite_path == tmp_path / "th2etl.db"
    assert settings.embedded_default
    assert settings.database_schema == "public"
    assert settings.pipelines_logs_dir is None
    assert "SQLite database at" in settings.describe()
    assert "embedded default" in settings.describe()


def test_reads_os_environ_by_default(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TH2ETL_SQLITE_PATH", str(tmp_path / "x.db"))
    clean_env.setenv("pipelines_logs_dir", str(tmp_path / "logs"))
    settings = get_settings()
    assert settings.sqlite_path == tmp_path / "x.db"
    assert not settings.embedded_default
    assert settings.pipelines_logs_dir == tmp_path / "logs"


def test_sqlite_path_override_and_upper_case_logs_dir(tmp_path: Path) -> None:
    settings = get_settings(
        {"TH2ETL_SQLITE_PATH": str(tmp_path / "a.db"), "PIPELINES_LOGS_DIR": "out"}
    )
    assert settings.backend == "sqlite"
    assert settings.sqlite_path == tmp_path / "a.db"
    assert settings.pipelines_logs_dir == Path("out")


def test_empty_values_count_as_unset() -> None:
    settings = get_settings({"DATABASE_URL": "", "DATABASE_HOST": "  "})
    assert settings.backend == "sqlite"


def test_database_parts_build_a_url() -> None:
    settings = get_settings(
        {
            "DATABASE_HOST": "db.example.com",
            "DATABASE_PORT": "6543",
            "DATABASE_NAME": "etl",
            "DATABASE_USER": "etl_user",
            "DATABASE_PASSWORD": SECRET,
            "DATABASE_SSL_MODE": "require",
            "DATABASE_SCHEMA": "th2etl_meta",
        }
    )
    assert settings.backend == "postgresql"
    assert settings.database_schema == "th2etl_meta"
    import psycopg.conninfo

    info = psycopg.conninfo.conninfo_to_dict(settings.postgres_conninfo())
    assert info == {
        "host": "db.example.com",
        "port": "6543",
        "dbname": "etl",
        "user": "etl_user",
        "password": SECRET,
        "sslmode": "require",
    }
    assert settings.describe() == (
        "PostgreSQL database 'etl' on db.example.com:6543 as user 'etl_user', schema 'th2etl_meta'"
    )


def test_parts_have_defaults() -> None:
    settings = get_settings({"DATABASE_HOST": "db"})
    assert settings.database_url == "postgresql://db:5432/th2etl"


def test_database_url_wins_and_is_kept_as_given() -> None:
    url = "postgresql://u:pw@h:5433/d?sslmode=disable"
    settings = get_settings({"DATABASE_URL": url, "DATABASE_HOST": "other"})
    assert settings.database_url == url
    assert settings.describe() == "PostgreSQL database 'd' on h:5433 as user 'u', schema 'public'"


def test_password_never_in_repr_describe_or_str() -> None:
    for environ in (
        {"DATABASE_URL": f"postgresql://u:{SECRET.replace('/', '%2F')}@h/d"},
        {"DATABASE_HOST": "h", "DATABASE_USER": "u", "DATABASE_PASSWORD": SECRET},
    ):
        settings = get_settings(environ)
        for text in (repr(settings), str(settings), settings.describe()):
            assert "s3cr3t" not in text
            assert "h" in text


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DATABASE_PORT": "54x2"}, r"DATABASE_PORT '54x2' is not a port number; use a number"),
        ({"DATABASE_PORT": "70000"}, r"DATABASE_PORT '70000' is not a port number"),
        ({"DATABASE_PORT": "0"}, r"DATABASE_PORT '0' is not a port number"),
        (
            {"DATABASE_URL": "mysql://u@h/d"},
            r"DATABASE_URL 'mysql://u@h/d' is not a PostgreSQL URL; write it as postgresql://",
        ),
        ({"DATABASE_URL": "localhost:5432"}, r"DATABASE_URL 'localhost:5432' is not a PostgreSQL"),
        (
            {"DATABASE_URL": "postgresql://u@h:port/d"},
            r"DATABASE_URL 'postgresql://u@h:port/d' has a malformed port; use a number",
        ),
        (
            {"DATABASE_URL": "postgresql://u@h:99999/d"},
            r"has a malformed port",
        ),
        ({"DATABASE_URL": "postgresql://u@h:5432"}, r"names no database; add it after the host"),
        (
            {"DATABASE_URL": "postgresql://u@h/d?sslmode=sometimes"},
            r"sslmode in DATABASE_URL 'sometimes' is not an SSL mode .* verify-full",
        ),
        (
            {"DATABASE_HOST": "h", "DATABASE_SSL_MODE": "on"},
            r"DATABASE_SSL_MODE 'on' is not an SSL mode PostgreSQL knows; use one of disable",
        ),
        (
            {"DATABASE_HOST": "h", "DATABASE_PASSWORD": SECRET},
            r"DATABASE_PASSWORD is set but DATABASE_USER is not; set DATABASE_USER too",
        ),
        ({"DATABASE_SCHEMA": "my schema;"}, r"DATABASE_SCHEMA 'my schema;' is not a usable"),
        ({"DATABASE_SCHEMA": "1abc"}, r"DATABASE_SCHEMA '1abc' is not a usable schema name"),
    ],
)
def test_malformed_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        get_settings(environ)


def test_malformed_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_settings({"DATABASE_URL": f"postgresql://u:{SECRET[:6]}@h:bad/d"})
    assert "s3cr3t" not in str(caught.value)
    assert "postgresql://u:***@h:bad/d" in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        get_settings({"DATABASE_URL": f"mysql://u:{SECRET[:6]}@h/d"})
    assert "s3cr3t" not in str(caught.value)


def test_a_password_given_as_a_url_parameter_is_hidden_too() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_settings({"DATABASE_URL": f"postgresql://u@h:99999/d?password={SECRET[:6]}"})
    assert "s3cr3t" not in str(caught.value)
    assert "postgresql://u@h:99999/d?password=***" in str(caught.value)


def test_an_unparsable_url_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigurationError, match=r"DATABASE_URL '\*\*\*' is not a valid URL \(Invalid IPv6 URL\)"
    ) as caught:
        get_settings({"DATABASE_URL": f"postgresql://u:{SECRET[:6]}@[::1/d"})
    assert "s3cr3t" not in str(caught.value)


def test_postgres_conninfo_on_sqlite_says_how_to_configure_postgres(tmp_path: Path) -> None:
    settings = Settings(sqlite_path=tmp_path / "t.db")
    with pytest.raises(
        ConfigurationError, match=r"no PostgreSQL database is configured .* set DATABASE_URL"
    ):
        settings.postgres_conninfo()


def test_settings_are_frozen() -> None:
    settings = get_settings({})
    with pytest.raises(AttributeError):
        settings.database_schema = "x"  # type: ignore[misc]


def test_embedded_default_is_logged_once_when_storage_opens(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from th2etl import DatabaseStorage

    clean_env.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    settings = get_settings()
    assert caplog.records == []  # reading settings says nothing; opening storage does
    for _ in range(2):
        with DatabaseStorage.from_settings(settings) as storage:
            storage.check_connection()
    lines = [r.getMessage() for r in caplog.records if "embedded SQLite" in r.getMessage()]
    assert lines == [
        "no DATABASE_URL or DATABASE_* variables set: using the embedded SQLite database at "
        f"{tmp_path / 'th2etl.db'} (set TH2ETL_SQLITE_PATH to move it, or DATABASE_URL to use "
        "PostgreSQL)"
    ]
    assert (tmp_path / "th2etl.db").is_file()


def test_chosen_sqlite_path_is_not_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from th2etl import DatabaseStorage

    caplog.set_level(logging.INFO)
    settings = get_settings({"TH2ETL_SQLITE_PATH": str(tmp_path / "mine.db")})
    with DatabaseStorage.from_settings(settings) as storage:
        assert storage.describe() == f"SQLite database at {tmp_path / 'mine.db'}"
    assert not [r for r in caplog.records if "embedded" in r.getMessage()]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TH2ETL_HEARTBEAT_INTERVAL", "0",
         r"TH2ETL_HEARTBEAT_INTERVAL '0' is not allowed; use a number from 0.1 to 3600"),
        ("TH2ETL_HEARTBEAT_INTERVAL", "nan", r"from 0.1 to 3600, or unset it for the default 10"),
        ("TH2ETL_MAX_QUEUED_RUNS", "-1",
         r"TH2ETL_MAX_QUEUED_RUNS '-1' is not allowed; use a whole number from 0 to 1000000"),
        ("TH2ETL_MAX_QUEUED_RUNS", "2.5", r"use a whole number from 0"),
    ],
)  # fmt: skip
def test_run_lifecycle_settings_are_bounded(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        get_settings({key: value})


def test_run_lifecycle_settings_are_read() -> None:
    settings = get_settings({"TH2ETL_HEARTBEAT_INTERVAL": "2.5", "TH2ETL_MAX_QUEUED_RUNS": "0"})
    assert (settings.heartbeat_interval, settings.max_queued_runs) == (2.5, 0)
    assert get_settings({}).heartbeat_interval == 10.0
