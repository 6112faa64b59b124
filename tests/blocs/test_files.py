"""csv_loader, csv_exporter and example_transformer, including every bad input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from th2etl import BlocError, Pipeline, RunContext, RunStatus, ValidationError, create_bloc
from th2etl.pipelines import EXAMPLE_DATA, build_example_pipeline


def load(path: Path, **config: object) -> list[dict[str, object]]:
    bloc = create_bloc("load", "csv_loader", {"file_path": str(path), **config})
    return bloc.run(RunContext("p"), [])


def test_csv_loader_reads_rows_as_dicts(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('id,name\n1,ann\n2,bob\n\n3,"c, d"\n')
    assert load(path) == [
        {"id": "1", "name": "ann"},
        {"id": "2", "name": "bob"},
        {"id": "3", "name": "c, d"},
    ]


def test_csv_loader_delimiter_encoding_and_types(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(
        "day;amount;price;ok;when;who;n;blob\n"
        '2026-01-02;1.5;3.10;true;2026-01-02T03:04:05+00:00;José;7;{"a": 1}\n'
        "2026-01-03;;0;no;2026-01-03T00:00:00;Zoë;;[]\n".encode("latin-1", "replace")
    )
    rows = load(
        path,
        delimiter=";",
        encoding="latin-1",
        types={
            "day": "date",
            "amount": "float",
            "price": "decimal",
            "ok": "bool",
            "when": "datetime",
            "n": "int",
            "blob": "json",
        },
    )
    assert rows[0] == {
        "day": dt.date(2026, 1, 2),
        "amount": 1.5,
        "price": Decimal("3.10"),
        "ok": True,
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "who": "José",
        "n": 7,
        "blob": {"a": 1},
    }
    assert rows[1]["amount"] is None
    assert rows[1]["n"] is None
    assert rows[1]["ok"] is False


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(BlocError, match=r"bloc 'load' \(csv_loader\): file '.*nope.csv' does not"):
        load(tmp_path / "nope.csv")


def test_a_wrong_delimiter_gives_ragged_rows_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("a;b\n1;2\n3;4;5\n")
    with pytest.raises(
        BlocError,
        match=r"file '.*semi.csv', line 3: 3 fields where the header has 2; check the delimiter "
        r"\(now ';'\)",
    ):
        load(path, delimiter=";")


def test_an_undecodable_file_names_the_line_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n1,2\n3,\xff\xfe\n")
    with pytest.raises(
        BlocError, match=r"cannot decode the bytes with encoding 'utf-8' .*set the encoding"
    ):
        load(path)


@pytest.mark.parametrize("bloc_type", ["csv_loader", "csv_exporter"])
def test_an_unknown_encoding_is_refused_with_the_config(bloc_type: str) -> None:
    with pytest.raises(
        ValidationError,
        match=rf"bloc 't' \({bloc_type}\): unknown encoding 'utf-9'; use e.g. 'utf-8'",
    ):
        create_bloc("t", bloc_type, {"file_path": "a.csv", "encoding": "utf-9"})


@pytest.mark.parametrize("bloc_type", ["csv_loader", "csv_exporter"])
def test_an_unknown_encoding_from_a_variable_is_refused_when_resolved(bloc_type: str) -> None:
    bloc = create_bloc("t", bloc_type, {"file_path": "a.csv", "encoding": "${var:encoding}"})
    with pytest.raises(
        ValidationError,
        match=rf"bloc 't' \({bloc_type}\): unknown encoding 'utf-9'; use e.g. 'utf-8'",
    ):
        bloc.resolved({"encoding": "utf-9"})
    assert bloc.resolved({"encoding": "latin-1"}).config["encoding"] == "latin-1"


def test_a_value_that_does_not_parse_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    lines = ["id,amount"] + [f"{i},{i}.5" for i in range(1, 17)] + ["17,abc"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BlocError, match=r"row 17, column amount: 'abc' is not a float"):
        load(path, types={"amount": "float"})


def test_types_naming_an_unknown_column_or_type(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,amount\n1,2\n")
    with pytest.raises(BlocError, match=r"types names column 'amout', which is not in the header"):
        load(path, types={"amout": "float"})
    with pytest.raises(
        ValidationError, match=r"types gives column 'amount' the unknown type 'money'; use one of"
    ):
        create_bloc("load", "csv_loader", {"file_path": "x", "types": {"amount": "money"}})
    with pytest.raises(ValidationError, match=r"delimiter must be one character, got ';;'"):
        create_bloc("load", "csv_loader", {"file_path": "x", "delimiter": ";;"})


def test_csv_exporter_writes_atomically_into_the_output_dir(tmp_path: Path) -> None:
    bloc = create_bloc("out", "csv_exporter", {"file_path": "sub/out.csv"})
    context = RunContext("p", output_dir=tmp_path)
    rows = [{"a": 1, "b": "x"}, {"a": 2, "c": None}]
    assert bloc.run(context, rows) == [{"file_path": str(tmp_path / "sub/out.csv"), "rows": 2}]
    assert (tmp_path / "sub/out.csv").read_text() == "a,b,c\n1,x,\n2,,\n"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.csv"]


def test_a_failed_export_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    bloc = create_bloc("out", "csv_exporter", {"file_path": str(target), "encoding": "ascii"})
    with pytest.raises(UnicodeEncodeError):
        bloc.run(RunContext("p"), [{"a": "ok"}, {"a": "é"}])
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_example_transformer_multiplies_numbers_and_numeric_text() -> None:
    bloc = create_bloc("x", "example_transformer", {"factor": 2})
    rows = [{"a": 2, "b": 1.5, "c": "3", "d": "n", "e": True, "f": Decimal("1.1"), "g": None}]
    assert bloc.run(RunContext("p"), rows) == [
        {"a": 4, "b": 3.0, "c": 6, "d": "n", "e": True, "f": Decimal("2.2"), "g": None}
    ]
    assert rows[0]["a"] == 2  # input rows are not modified


def test_the_example_pipeline_runs_with_nothing_configured(tmp_path: Path) -> None:
    result = build_example_pipeline().run(output_dir=tmp_path)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert [b.rows_out for b in result.blocs.values()] == [24, 24, 24, 1]
    written = (tmp_path / "example_output.csv").read_text().splitlines()
    assert written[0] == "day,region,product,units,unit_price"
    assert len(written) == 25
    source = EXAMPLE_DATA.read_text().splitlines()[1].split(",")
    first = written[1].split(",")
    assert int(first[3]) == 2 * int(source[3])


def test_a_csv_pipeline_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("k,v\na,1\nb,2\n")
    pipeline = Pipeline(
        "csv",
        [
            [create_bloc("load", "csv_loader", {"file_path": str(src), "types": {"v": "int"}})],
            [create_bloc("times10", "example_transformer", {"factor": 10})],
            [create_bloc("save", "csv_exporter", {"file_path": "out.csv"})],
        ],
    )
    result = pipeline.run(output_dir=tmp_path / "run1")
    assert result.succeeded
    assert (tmp_path / "run1/out.csv").read_text() == "k,v\na,10\nb,20\n"
