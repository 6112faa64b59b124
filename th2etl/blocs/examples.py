"""``example_transformer``, the bloc of the quickstart."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from th2etl.blocs.base import ConfigField, TransformerBloc
from th2etl.blocs.registry import register_bloc
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["ExampleTransformerBloc"]


def _as_number(value: Any) -> int | float | Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, str):
        # Text from a CSV without `types`: "12" and "3.5" count as numbers, "007" too.
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


@register_bloc
class ExampleTransformerBloc(TransformerBloc):
    bloc_type = "example_transformer"
    summary = (
        "Multiplies every numeric field (numbers, and text that reads as a number) by a factor; "
        "other fields pass unchanged."
    )
    config_fields = (
        ConfigField("factor", "number", default=1, help="What numeric fields are multiplied by"),
    )
    per_batch = True  # row by row
    streams_safely = True  # no effect outside the run

    def run(self, context: RunContext, rows: Rows) -> Rows:
        factor = self.config["factor"]
        out: Rows = []
        for row in rows:
            new = dict(row)
            for key, value in row.items():
                number = _as_number(value)
                if isinstance(number, Decimal):
                    new[key] = number * Decimal(str(factor))
                elif number is not None:
                    new[key] = number * factor
            out.append(new)
        return out
