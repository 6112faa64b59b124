"""The bloc registry and config validation: built-ins, decorator, entry points, typos."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from th2etl import ConfigField, LoaderBloc, RunContext, ValidationError, create_bloc, register_bloc
from th2etl.blocs import bloc_types, get_bloc_class, registry, unregister_bloc
from th2etl.types import Rows


def test_builtin_types_are_registered() -> None:
    types = bloc_types()
    for name in ("csv_loader", "csv_exporter", "example_transformer"):
        assert name in types
    assert list(types) == sorted(types)


def test_each_builtin_type_is_found_in_the_module_named_for_it() -> None:
    for name, module in registry._BUILTIN_TYPES.items():
        assert get_bloc_class(name).__module__ == module
    assert set(registry._BUILTIN_TYPES) == {
        name for name, kind in bloc_types().items() if kind.__module__ in registry._BUILTIN_MODULES
    }


def test_a_run_imports_only_the_bloc_modules_it_needs() -> None:
    import subprocess

    code = (
        "import sys; from th2etl import create_bloc;"
        "create_bloc('l', 'csv_loader', {'file_path': 'x.csv'});"
        "create_bloc('e', 'postgres_exporter', {'table_name': 't', 'source_bloc': 'l'});"
        "print(sorted(m for m in sys.modules if m.startswith('th2etl.blocs.')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "th2etl.blocs.files" in found and "th2etl.blocs.postgres" in found
    assert "th2etl.blocs.http" not in found


def test_unknown_bloc_type_lists_the_known_ones() -> None:
    with pytest.raises(
        ValidationError,
        match=r"bloc 'load': unknown bloc_type 'csv_loadr'; did you mean 'csv_loader'\? known "
        r"types: .*csv_loader.*"
        r"Register new types with @register_bloc or the 'th2etl.blocs' entry point group",
    ):
        create_bloc("load", "csv_loadr", {"file_path": "x.csv"})
    with pytest.raises(ValidationError, match=r"unknown bloc_type 'zzz'; known types: "):
        create_bloc("load", "zzz", {})


def test_unknown_config_key_is_refused_with_the_allowed_keys() -> None:
    with pytest.raises(
        ValidationError,
        match=r"bloc 'load' \(csv_loader\): unknown config key 'delimeter'; allowed keys: "
        r"batch_size, delimiter, encoding, file_path, retries, retry_delay, source_bloc, "
        r"timeout, types",
    ):
        create_bloc("load", "csv_loader", {"file_path": "x.csv", "delimeter": ";"})


def test_missing_required_key_says_what_it_is() -> None:
    with pytest.raises(
        ValidationError,
        match=r"bloc 'load' \(csv_loader\): missing required config key 'file_path' "
        r"\(The path to the CSV file\)",
    ):
        create_bloc("load", "csv_loader", {})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"factor": "abc"}, r"config key 'factor' must be a number, got 'abc'"),
        ({"factor": True}, r"config key 'factor' must be a number, got True \(bool\)"),
        ({"retries": 1.5}, r"config key 'retries' must be an integer, got 1.5 \(float\)"),
        ({"source_bloc": 3}, r"'source_bloc' must be a string or a list of strings, got 3"),
        ({"source_bloc": ["a", 1]}, r"'source_bloc' must be a string or a list of strings"),
        ({"timeout": "${ENV:X}"}, r"malformed reference '\$\{ENV:X\}'; write \$\{env:NAME\}"),
    ],
)
def test_mistyped_config_values_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        create_bloc("t", "example_transformer", config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"retries": -1}, r"config key 'retries' must be 0 or more, got -1$"),
        ({"retry_delay": -5}, r"config key 'retry_delay' must be 0 or more seconds, got -5$"),
        ({"timeout": 0}, r"config key 'timeout' must be more than 0 seconds, got 0$"),
        ({"timeout": "nan"}, r"config key 'timeout' must be more than 0 seconds, got nan$"),
    ],
)
def test_common_settings_out_of_range_are_refused(config: dict[str, object], message: str) -> None:
    # A negative retries once shrank the engine's thread pool to no thread at all.
    with pytest.raises(ValidationError, match=message):
        create_bloc("t", "example_transformer", config)


def test_a_reference_out_of_range_is_refused_when_resolved() -> None:
    bloc = create_bloc("t", "example_transformer", {"retries": "${var:retries}"})
    with pytest.raises(ValidationError, match=r"config key 'retries' must be 0 or more, got -2"):
        bloc.resolved({"retries": -2})
    assert bloc.resolved({"retries": 2}).retries == 2


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(ValidationError, match=r"config must be an object \(dict\), got list"):
        create_bloc("t", "example_transformer", [1])  # type: ignore[arg-type]


def test_numbers_and_booleans_from_strings_are_coerced() -> None:
    bloc = create_bloc("t", "example_transformer", {"factor": "2.5", "retries": "3"})
    assert bloc.config["factor"] == 2.5
    assert bloc.retries == 3


def test_defaults_are_filled_in() -> None:
    bloc = create_bloc("load", "csv_loader", {"file_path": "x.csv"})
    assert bloc.config == {
        "file_path": "x.csv",
        "delimiter": ",",
        "encoding": "utf-8",
        "retries": 0,
        "retry_delay": 1.0,
    }


def test_schema_describes_every_key() -> None:
    schema = get_bloc_class("csv_loader").schema()
    assert schema["bloc_type"] == "csv_loader"
    assert schema["kind"] == "loader"
    fields = {field["name"]: field for field in schema["config"]}
    assert fields["file_path"]["required"] is True
    assert fields["delimiter"]["default"] == ","
    assert fields["types"]["json_type"] == "object"
    assert fields["retries"]["minimum"] == 0
    assert fields["timeout"]["exclusive_minimum"] == 0


class Upper(LoaderBloc):
    bloc_type = "test_upper"
    config_fields = (ConfigField("text", "str", required=True),)

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return [{"text": self.config["text"].upper()}]


@pytest.fixture
def upper() -> Iterator[None]:
    yield
    unregister_bloc("test_upper")
    unregister_bloc("test_upper_again")


def test_decorator_registers_and_refuses_a_second_owner(upper: None) -> None:
    register_bloc(Upper)
    assert get_bloc_class("test_upper") is Upper
    register_bloc(Upper)  # the same class again is fine

    class Other(Upper):
        pass

    with pytest.raises(
        ValidationError,
        match=r"bloc_type 'test_upper' is already registered by .*Upper; pick another name",
    ):
        register_bloc(Other)
    register_bloc(Other, replace=True)
    assert get_bloc_class("test_upper") is Other


def test_decorator_refuses_classes_without_a_type() -> None:
    class Nameless(LoaderBloc):
        def run(self, context: RunContext, rows: Rows) -> Rows:
            return []

    with pytest.raises(ValidationError, match=r"Nameless has no bloc_type; set the class"):
        register_bloc(Nameless)
    with pytest.raises(ValidationError, match=r"is not a subclass of LoaderBloc"):
        register_bloc(dict)  # type: ignore[type-var]


PLUGIN = """
from th2etl import LoaderBloc


class Greeting(LoaderBloc):
    bloc_type = "greeting"
    summary = "Says hello."

    def run(self, context, rows):
        return [{"hello": "world"}]
"""


def test_a_bloc_from_an_installed_package_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed distribution: a module plus a .dist-info with entry_points.txt.
    (tmp_path / "th2etl_greeting_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "th2etl_greeting_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: th2etl-greeting-plugin\n")
    (dist / "entry_points.txt").write_text(
        "[th2etl.blocs]\ngreeting_from_plugin = th2etl_greeting_plugin:Greeting\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry.reload_entry_points()
        bloc = create_bloc("hello", "greeting_from_plugin")
        assert bloc.run(RunContext("p"), []) == [{"hello": "world"}]
        assert "greeting_from_plugin" in bloc_types()
    finally:
        unregister_bloc("greeting_from_plugin")
        sys.modules.pop("th2etl_greeting_plugin", None)


def test_a_broken_entry_point_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dist = tmp_path / "th2etl_broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: th2etl-broken-plugin\n")
    (dist / "entry_points.txt").write_text("[th2etl.blocs]\nbroken = no_such_module_xyz:Bloc\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reload_entry_points()
    assert "broken" not in bloc_types()
    assert "bloc type 'broken' from entry point 'no_such_module_xyz:Bloc' could not be loaded" in (
        caplog.text
    )
