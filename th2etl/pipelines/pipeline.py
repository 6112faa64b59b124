"""Pipeline: named stages of blocs, validated when built. Running is the engine's job."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from th2etl._names import check_name
from th2etl.blocs.base import Bloc
from th2etl.exceptions import ValidationError

if TYPE_CHECKING:
    from th2etl.pipelines.result import RunResult

__all__ = ["Pipeline", "check_timeout", "validate_stage_names"]


def validate_stage_names(
    pipeline_name: str,
    stages: Any,
    source_blocs: Mapping[str, Sequence[str]] | None = None,
) -> list[list[str]]:
    """Check a stages definition given as bloc names; return it as a list of lists.

    ``source_blocs`` maps a bloc name to the names it reads (its ``source_bloc`` config), for
    the blocs whose definition is known. Each refusal names the pipeline, the stage and the bloc.
    """
    where = f"pipeline {pipeline_name!r}"
    if isinstance(stages, str | bytes) or not isinstance(stages, Sequence):
        raise ValidationError(
            f"{where}: stages must be a list of stages, each a list of bloc names, "
            f"e.g. [['load'], ['clean_a', 'clean_b'], ['export']]; got {stages!r}"
        )
    if not stages:
        raise ValidationError(f"{where} has no stages; give at least one stage with one bloc")
    seen: dict[str, int] = {}
    result: list[list[str]] = []
    for number, stage in enumerate(stages, start=1):
        if isinstance(stage, str | bytes) or not isinstance(stage, Sequence):
            raise ValidationError(
                f"{where}, stage {number}: a stage must be a list of bloc names, got {stage!r} "
                f"(write [{stage!r}] for a stage of one bloc)"
            )
        if not stage:
            raise ValidationError(
                f"{where}, stage {number} is empty; every stage needs at least one bloc"
            )
        names: list[str] = []
        for name in stage:
            if not isinstance(name, str):
                raise ValidationError(
                    f"{where}, stage {number}: expected a bloc (or a bloc name), got {name!r}"
                )
            if name in seen:
                again = (
                    "again in the same stage"
                    if seen[name] == number
                    else (f"already in stage {seen[name]}")
                )
                raise ValidationError(
                    f"{where}, stage {number}: bloc {name!r} is {again}; a bloc runs once "
                    "per pipeline (create a second bloc with another name)"
                )
            seen[name] = number
            names.append(name)
        result.append(names)
    for number, names in enumerate(result, start=1):
        for name in names:
            for source in (source_blocs or {}).get(name, ()):
                _check_source(where, pipeline_name, number, name, source, seen)
    return result


def _check_source(
    where: str, pipeline: str, number: int, name: str, source: str, seen: Mapping[str, int]
) -> None:
    if source not in seen:
        raise ValidationError(
            f"{where}, stage {number}: bloc {name!r} reads source_bloc {source!r}, which is not "
            f"in pipeline {pipeline!r}; its blocs are: {', '.join(seen)}"
        )
    if seen[source] >= number:
        place = "the same stage" if seen[source] == number else f"stage {seen[source]}"
        raise ValidationError(
            f"bloc {name!r} reads source_bloc {source!r}, which is not in an earlier stage of "
            f"pipeline {pipeline!r} ({source!r} is in {place}, {name!r} in stage {number}); "
            f"move {source!r} to an earlier stage"
        )


def check_timeout(pipeline_name: str, timeout: object) -> float | None:
    """A pipeline's ``timeout``: None (or 0) for none, else seconds > 0; refused otherwise."""
    if timeout is None or (type(timeout) in (int, float) and timeout == 0):
        return None
    if type(timeout) not in (int, float) or not 0 < timeout < math.inf:  # type: ignore[operator]
        raise ValidationError(
            f"pipeline {pipeline_name!r}: timeout must be a number of seconds above 0, got "
            f"{timeout!r}; leave it out (or give 0) for a pipeline without a timeout"
        )
    return float(timeout)  # type: ignore[arg-type]


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _names_of(stage: Any) -> Any:
    if not _is_list(stage):
        return stage
    return [bloc.name if isinstance(bloc, Bloc) else bloc for bloc in stage]


class Pipeline:
    """Stages of blocs: stages run in order, the blocs of a stage in parallel.

    >>> from th2etl.blocs import create_bloc
    >>> load = create_bloc("load", "csv_loader", {"file_path": "data.csv"})
    >>> double = create_bloc("double", "example_transformer", {"factor": 2})
    >>> pipeline = Pipeline("daily", [[load], [double]])
    >>> pipeline.stage_names
    [['load'], ['double']]

    ``timeout`` (seconds, optional) bounds a whole run where an executor runs it (the
    scheduler, the service, ``th2etl run``; see :mod:`th2etl.executors`): past it, the run is
    stopped and recorded ``failed``. ``Pipeline.run()`` runs in the caller's thread and does
    not enforce it.
    """

    def __init__(
        self,
        name: str,
        stages: Sequence[Sequence[Bloc]],
        *,
        description: str = "",
        timeout: float | None = None,
    ) -> None:
        self.name = check_name("pipeline", name)
        self.description = description
        self.timeout = check_timeout(self.name, timeout)
        # Validate the shape on names first, so every refusal is worded once.
        shape = [_names_of(stage) for stage in stages] if _is_list(stages) else stages
        sources = {
            bloc.name: bloc.source_blocs
            for stage in (stages if _is_list(stages) else [])
            if _is_list(stage)
            for bloc in stage
            if isinstance(bloc, Bloc)
        }
        validate_stage_names(name, shape, sources)
        for number, stage in enumerate(stages, start=1):
            for bloc in stage:
                if not isinstance(bloc, Bloc):
                    # A bloc name is valid in a stored definition, not here.
                    raise ValidationError(
                        f"pipeline {name!r}, stage {number}: {bloc!r} is a name, not a bloc; "
                        "give blocs made with create_bloc(...), or build from names with "
                        "Pipeline.from_names(name, stages, blocs) or storage.build_pipeline(name)"
                    )
        self.stages: list[list[Bloc]] = [list(stage) for stage in stages]
        self.blocs: dict[str, Bloc] = {bloc.name: bloc for stage in self.stages for bloc in stage}

    @classmethod
    def from_names(
        cls,
        name: str,
        stages: Sequence[Sequence[str]],
        blocs: Mapping[str, Bloc],
        *,
        description: str = "",
        timeout: float | None = None,
    ) -> Pipeline:
        """Build a pipeline from stage lists of bloc names and the blocs by name."""
        validate_stage_names(name, stages)
        missing = [bloc for stage in stages for bloc in stage if bloc not in blocs]
        if missing:
            raise ValidationError(
                f"pipeline {name!r} names bloc {missing[0]!r}, which does not exist; "
                "create it first"
            )
        return cls(
            name,
            [[blocs[n] for n in stage] for stage in stages],
            description=description,
            timeout=timeout,
        )

    @property
    def stage_names(self) -> list[list[str]]:
        return [[bloc.name for bloc in stage] for stage in self.stages]

    def run(self, variables: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
        """Run the pipeline now and return its result; see :func:`th2etl.pipelines.run_pipeline`
        for ``options`` (executor, listeners, cancel_token, output_dir, ...)."""
        from th2etl.pipelines.engine import run_pipeline

        return run_pipeline(self, variables=variables, **options)

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, stages={self.stage_names!r})"
