"""The example pipeline: runs anywhere, with no database and no network."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from th2etl.blocs.registry import create_bloc
from th2etl.pipelines.pipeline import Pipeline

__all__ = ["EXAMPLE_DATA", "build_example_pipeline", "example_definitions"]

EXAMPLE_DATA = Path(str(resources.files("th2etl.pipelines") / "data" / "example_sales.csv"))
"""A small sales CSV shipped inside the package."""


def example_definitions(
    output_file: str = "example_output.csv",
) -> tuple[dict[str, tuple[str, dict[str, object]]], list[list[str]]]:
    """The example's blocs as ``{name: (bloc_type, config)}`` and its stages, ready to store."""
    blocs: dict[str, tuple[str, dict[str, object]]] = {
        "example_loader": (
            "csv_loader",
            {"file_path": str(EXAMPLE_DATA), "types": {"units": "int", "unit_price": "float"}},
        ),
        "transformer_a": ("example_transformer", {"factor": 2}),
        "transformer_b": ("example_transformer", {"factor": 3}),
        "example_exporter": (
            "csv_exporter",
            {"file_path": output_file, "source_bloc": "transformer_a"},
        ),
    }
    stages = [["example_loader"], ["transformer_a", "transformer_b"], ["example_exporter"]]
    return blocs, stages


def build_example_pipeline(
    name: str = "example_pipeline", output_file: str = "example_output.csv"
) -> Pipeline:
    """Load the shipped CSV, transform it twice in parallel (x2, x3), export the x2 rows to CSV.

    ``output_file`` is relative to the run's ``output_dir`` when it has one, else to the
    working directory.

    >>> result = build_example_pipeline().run(output_dir=tmp_path)  # doctest: +SKIP
    >>> result.status.value
    'succeeded'
    """
    definitions, stages = example_definitions(output_file)
    blocs = {
        bloc_name: create_bloc(bloc_name, bloc_type, config)
        for bloc_name, (bloc_type, config) in definitions.items()
    }
    return Pipeline.from_names(name, stages, blocs, description="th2etl's example pipeline")
