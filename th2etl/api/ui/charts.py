"""The dashboard's two drawings, as inline SVG: a pipeline's stages and a run's timeline.

Both scale with their container (``viewBox``, width 100%) and carry text as ``<text>`` and
``<title>``, so they read on a phone and without any script or network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from th2etl.storage.records import BlocRunRecord

__all__ = ["pipeline_graph", "run_timeline"]

_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _PAD = 150, 36, 60, 16, 10


def pipeline_graph(
    stages: Sequence[Sequence[str]], sources: Mapping[str, Sequence[str]] | None = None
) -> str:
    """One column per stage, a box per bloc, an arrow for each flow of rows (from the bloc's
    ``source_bloc`` names when it has some, else from every bloc of the previous stage)."""
    sources = sources or {}
    tallest = max((len(stage) for stage in stages), default=1)
    width = _PAD * 2 + len(stages) * _BOX_W + max(len(stages) - 1, 0) * _GAP_X
    height = _PAD * 2 + 20 + tallest * _BOX_H + (tallest - 1) * _GAP_Y
    where: dict[str, tuple[float, float]] = {}
    boxes: list[str] = []
    for column, stage in enumerate(stages):
        x = _PAD + column * (_BOX_W + _GAP_X)
        boxes.append(
            f'<text class="stage" x="{x + _BOX_W / 2}" y="{_PAD + 10}">stage {column + 1}</text>'
        )
        top = _PAD + 20 + (tallest - len(stage)) * (_BOX_H + _GAP_Y) / 2
        for row, bloc in enumerate(stage):
            y = top + row * (_BOX_H + _GAP_Y)
            where[bloc] = (x, y)
            label = bloc if len(bloc) <= 20 else bloc[:19] + "\u2026"
            boxes.append(
                f'<g class="bloc"><title>{escape(bloc)}</title>'
                f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6"/>'
                f'<text x="{x + _BOX_W / 2}" y="{y + _BOX_H / 2 + 4}">{escape(label)}</text></g>'
            )
    arrows: list[str] = []
    previous: Sequence[str] = ()
    for stage in stages:
        for bloc in stage:
            for source in sources.get(bloc) or previous:
                if source in where and bloc in where:
                    (x1, y1), (x2, y2) = where[source], where[bloc]
                    arrows.append(
                        f'<path class="flow" d="M{x1 + _BOX_W},{y1 + _BOX_H / 2} '
                        f"C{x1 + _BOX_W + _GAP_X / 2},{y1 + _BOX_H / 2} "
                        f'{x2 - _GAP_X / 2},{y2 + _BOX_H / 2} {x2 - 4},{y2 + _BOX_H / 2}" '
                        'marker-end="url(#arrow)"/>'
                    )
        previous = stage
    return (
        f'<svg class="graph" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="stages of the pipeline" width="{width}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z"/></marker></defs>'
        + "".join(arrows)
        + "".join(boxes)
        + "</svg>"
    )


_ROW_H, _LABEL_W, _AXIS_H, _CHART_W = 24, 170, 26, 560


def _seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.2g} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def run_timeline(blocs: Sequence[BlocRunRecord], start: datetime, end: datetime) -> str:
    """One row per bloc in stage order, its bar from start to finish on the run's time axis
    (``start`` .. ``end``); a bloc not started has no bar, one still running reaches ``end``."""
    ordered = sorted(blocs, key=lambda b: (b.stage, b.started_at or end, b.bloc_name))
    span = max((end - start).total_seconds(), 1e-3)
    height = _AXIS_H + len(ordered) * _ROW_H + 4
    width = _LABEL_W + _CHART_W + 30
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="timeline of the blocs">'
    ]
    for tick in range(5):
        x = _LABEL_W + _CHART_W * tick / 4
        parts.append(
            f'<line class="tick" x1="{x}" y1="{_AXIS_H - 6}" x2="{x}" y2="{height}"/>'
            f'<text class="axis" x="{x}" y="{_AXIS_H - 10}">{_seconds(span * tick / 4)}</text>'
        )
    for row, bloc in enumerate(ordered):
        y = _AXIS_H + row * _ROW_H
        name = bloc.bloc_name if len(bloc.bloc_name) <= 22 else bloc.bloc_name[:21] + "\u2026"
        parts.append(
            f'<text class="label" x="{_LABEL_W - 8}" y="{y + 16}">'
            f"{bloc.stage}\u00b7{escape(name)}</text>"
        )
        if bloc.started_at is None:
            continue
        left = max((bloc.started_at - start).total_seconds(), 0.0)
        right = ((bloc.finished_at or end) - start).total_seconds()
        x = _LABEL_W + _CHART_W * left / span
        w = max(_CHART_W * (right - left) / span, 2.0)
        status = str(bloc.status)
        took = _seconds(max(right - left, 0.0))
        parts.append(
            f'<rect class="bar {escape(status)}" x="{x:.1f}" y="{y + 4}" width="{w:.1f}" '
            f'height="{_ROW_H - 8}" rx="3"><title>{escape(bloc.bloc_name)}: {escape(status)}, '
            f"{took}, rows in {bloc.rows_in}, out {bloc.rows_out}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)
