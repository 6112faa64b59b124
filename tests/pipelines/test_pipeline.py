"""Pipeline validation: every refusal names the pipeline, the stage and the bloc."""

from __future__ import annotations

import pytest

from th2etl import Pipeline, ValidationError, create_bloc
from th2etl.pipelines import validate_stage_names


def t(name: str, **config: object) -> object:
    return create_bloc(name, "example_transformer", config)


def test_stage_names_and_blocs_are_kept() -> None:
    pipeline = Pipeline("daily", [[t("a")], [t("b"), t("c")]])
    assert pipeline.stage_names == [["a"], ["b", "c"]]
    assert list(pipeline.blocs) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "pipeline 'daily' has no stages; give at least one stage with one bloc"),
        ([["a"], []], r"pipeline 'daily', stage 2 is empty; every stage needs at least one bloc"),
        (
            [["a"], ["b", "a"]],
            r"pipeline 'daily', stage 2: bloc 'a' is already in stage 1; a bloc runs once per "
            r"pipeline \(create a second bloc with another name\)",
        ),
        ([["a", "a"]], r"stage 1: bloc 'a' is again in the same stage"),
        ("a", r"pipeline 'daily': stages must be a list of stages, each a list of bloc names"),
        ([["a"], "b"], r"pipeline 'daily', stage 2: a stage must be a list of bloc names, got 'b'"),
        ([["a"], [3]], r"pipeline 'daily', stage 2: expected a bloc \(or a bloc name\), got 3"),
    ],
)
def test_malformed_stages_are_refused(stages: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_stage_names("daily", stages)


def test_source_bloc_must_be_in_an_earlier_stage() -> None:
    with pytest.raises(
        ValidationError,
        match=r"bloc 'export' reads source_bloc 'clean', which is not in an earlier stage of "
        r"pipeline 'daily' \('clean' is in the same stage, 'export' in stage 2\)",
    ):
        Pipeline("daily", [[t("load")], [t("clean"), t("export", source_bloc="clean")]])


def test_source_bloc_in_a_later_stage_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"'late' is in stage 2, 'early' in stage 1"):
        Pipeline("daily", [[t("early", source_bloc="late")], [t("late")]])


def test_source_bloc_must_exist() -> None:
    with pytest.raises(
        ValidationError,
        match=r"pipeline 'daily', stage 2: bloc 'export' reads source_bloc 'cleen', which is "
        r"not in pipeline 'daily'; its blocs are: load, export",
    ):
        Pipeline("daily", [[t("load")], [t("export", source_bloc=["load", "cleen"])]])


def test_two_blocs_with_one_name_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"bloc 'x' is already in stage 1"):
        Pipeline("daily", [[t("x")], [t("x")]])


def test_non_bloc_objects_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"stage 1: expected a bloc \(or a bloc name\)"):
        Pipeline("daily", [[object()]])  # type: ignore[list-item]


def test_bloc_names_are_refused_with_how_to_build_from_names() -> None:
    with pytest.raises(
        ValidationError,
        match=r"pipeline 'daily', stage 2: 'b' is a name, not a bloc; give blocs made with "
        r"create_bloc\(...\), or build from names with Pipeline.from_names\(name, stages, blocs\)",
    ):
        Pipeline("daily", [[t("a")], ["b"]])  # type: ignore[list-item]


def test_from_names_needs_every_bloc() -> None:
    with pytest.raises(
        ValidationError, match=r"pipeline 'daily' names bloc 'ghost', which does not exist"
    ):
        Pipeline.from_names("daily", [["a"], ["ghost"]], {"a": t("a")})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", r"pipeline name must be a non-empty string, got ''"),
        ("a b", r"pipeline name 'a b' has characters that are not allowed"),
        ("x" * 129, r"is 129 characters long; use at most 128"),
    ],
)
def test_pipeline_names_are_checked(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Pipeline(name, [[t("a")]])
