"""A pipeline as a Mermaid flowchart, drawn like the seed's execution-flow diagram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["mermaid_graph"]


def mermaid_graph(
    stages: Sequence[Sequence[str]], source_blocs: Mapping[str, Sequence[str]] | None = None
) -> str:
    """``graph TD`` with one subgraph per stage (its blocs side by side) and an arrow for each
    data flow: from a bloc's ``source_bloc`` names when it has some, else from every bloc of the
    previous stage (which is what the engine feeds it).

    >>> print(mermaid_graph([["load"], ["a", "b"]]))
    graph TD
      subgraph S1 ["Stage 1"]
        direction LR
        B1_1["load"]
      end
      subgraph S2 ["Stage 2"]
        direction LR
        B2_1["a"]
        B2_2["b"]
      end
      B1_1 --> B2_1
      B1_1 --> B2_2
    """
    sources = source_blocs or {}
    ids: dict[str, str] = {}
    lines = ["graph TD"]
    for number, stage in enumerate(stages, start=1):
        lines.append(f'  subgraph S{number} ["Stage {number}"]')
        lines.append("    direction LR")
        for position, bloc in enumerate(stage, start=1):
            ids[bloc] = f"B{number}_{position}"
            # Names are letters, digits, '_', '-' and '.': nothing to escape inside quotes.
            lines.append(f'    {ids[bloc]}["{bloc}"]')
        lines.append("  end")
    previous: Sequence[str] = ()
    for stage in stages:
        for bloc in stage:
            for source in sources.get(bloc) or previous:
                if source in ids:
                    lines.append(f"  {ids[source]} --> {ids[bloc]}")
        previous = stage
    return "\n".join(lines)
