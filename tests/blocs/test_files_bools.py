"""csv_loader's bool column: the C lookup of usual spellings agrees with the full parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from th2etl import BlocError, RunContext, create_bloc

SPELLINGS = {
    "true": True, "t": True, "1": True, "yes": True, "y": True, "True": True, "TRUE": True,
    "Yes": True, " yes ": True, "tRuE": True, "false": False, "f": False, "0": False,
    "no": False, "n": False, "False": False, "FALSE": False, "No": False, " N": False,
}  # fmt: skip


def load_ok(path: Path) -> list[object]:
    bloc = create_bloc("load", "csv_loader", {"file_path": str(path), "types": {"ok": "bool"}})
    return [row["ok"] for row in bloc.run(RunContext("test"), [])]


def test_every_accepted_spelling_gives_the_same_bool(tmp_path: Path) -> None:
    path = tmp_path / "bools.csv"
    path.write_text("ok\n" + "\n".join(f'"{word}"' for word in SPELLINGS) + "\n\n")
    assert load_ok(path) == list(SPELLINGS.values())


def test_a_word_that_is_no_bool_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bools.csv"
    path.write_text("ok\ntrue\n\nmaybe\n")
    with pytest.raises(BlocError, match=r"row 2, column ok: 'maybe' is not a bool"):
        load_ok(path)
