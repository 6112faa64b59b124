"""A run's graph, as the engine plans it: one :class:`Node` per bloc, the streams (a
:class:`Group`: a bloc that starts on its own and the blocs streaming from it), and one attempt
of a bloc in an executor's thread. The rules they follow are the engine's contract
(:mod:`th2etl.pipelines.engine`); this module only holds their state."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from enum import Enum

from th2etl.blocs.base import Bloc
from th2etl.pipelines._threads import Ticket
from th2etl.pipelines.context import DEFAULT_BATCH_SIZE, RunContext
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import BlocResult, BlocStatus
from th2etl.pipelines.streams import Input, Output, Pipe, Spill, SpillFolder, Stopped
from th2etl.types import Rows


class State(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    STOPPING = "stopping"
    RETRY = "retry"
    DONE = "done"


class Node:
    """One bloc of the run: where it reads from, who reads it, its current attempt."""

    __slots__ = (
        "at_end",
        "batch_size",
        "bloc",
        "children",
        "context",
        "deadline",
        "feeding",
        "final",
        "fused",
        "fused_into",
        "group",
        "in_pipe",
        "input",
        "output",
        "parent",
        "reads",
        "resolve_error",
        "resolved",
        "result",
        "shown",
        "sources",
        "spill",
        "stage",
        "stop_reason",
        "t0",
        "ticket",
        "timeout",
        "where",
    )

    def __init__(self, bloc: Bloc, stage: int, sources: list[str]) -> None:
        self.bloc = bloc
        self.stage = stage
        self.sources = sources
        self.result = BlocResult(bloc.name, bloc.bloc_type, stage, BlocStatus.RUNNING)
        self.parent: Node | None = None  # the bloc it streams from, when it streams
        self.children: list[Node] = []  # the blocs that stream from it
        self.spill: Spill | None = None
        self.group: Group
        self.resolved: Bloc | None = None
        self.resolve_error: Exception | None = None
        self.batch_size = DEFAULT_BATCH_SIZE
        self.final = False
        # The current attempt:
        self.ticket: Ticket | None = None
        self.context: RunContext | None = None
        self.input: Input | None = None
        self.output: Output | None = None
        self.in_pipe: Pipe | None = None
        self.deadline: float | None = None
        self.feeding = False  # runs again only to feed its stream (already final)
        self.stop_reason: tuple[BlocStatus, str] | None = None
        self.t0 = 0.0
        self.shown = (0, 0)
        self.fused: Node | None = None  # a source this bloc reads itself (Bloc.fuses)
        self.fused_into: Node | None = None
        self.where = f"bloc {bloc.name!r} ({bloc.bloc_type})"
        self.timeout = bloc.timeout
        self.at_end: Callable[[RunContext], None]  # the end of its input (see _Run._at_end)
        self.reads: list[Callable[[], Iterator[Rows]]] = []  # its spills, if it does not stream

    def descendants(self) -> Iterator[Node]:
        for child in self.children:
            yield child
            yield from child.descendants()


class Group:
    """A stream: a bloc that starts on its own and the blocs streaming from it, attempted
    together."""

    __slots__ = (
        "_wakeup",
        "charged",
        "error",
        "nodes",
        "retry_at",
        "root",
        "running",
        "state",
        "stop_deadline",
    )

    def __init__(self, root: Node, wakeup: queue.SimpleQueue[object]) -> None:
        self.root = root
        self._wakeup = wakeup
        self.nodes = [root, *root.descendants()] if root.children else [root]
        self.state = State.WAITING
        self.charged: Node | None = None
        self.error: BaseException | None = None
        self.retry_at = 0.0
        self.stop_deadline = 0.0
        self.running: list[Node] = []

    def wake(self) -> None:
        """An attempt of this stream ended (called from its thread): look at it."""
        self._wakeup.put(self)


class SourceFailed(BaseException):
    """A fused source failed inside the bloc that reads it: its own failure, not the reader's."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def fused_stream(bloc: Bloc, context: RunContext) -> Iterator[Rows]:
    try:
        yield from bloc.stream(context, [])
    except (Stopped, GeneratorExit):
        raise
    except BaseException as exc:
        raise SourceFailed(exc) from exc


def nothing_before(context: RunContext) -> None:
    """The end of the input of a bloc of the first stage: no earlier stage to wait for."""


def attempt(bloc: Bloc, context: RunContext, rows: Input, output: Output) -> None:
    """One attempt of one bloc, in an executor's thread."""
    stream = bloc.stream(context, rows)
    try:
        for batch in stream:
            output.emit(batch)
    except BaseException:
        output.close(failed=True)
        raise
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # a generator left at a yield: its `with` blocks roll back now
    output.close(failed=False)


def plan(
    pipeline: Pipeline,
    context: RunContext,
    *,
    streaming: bool,
    keeps_rows: bool,
    folder: SpillFolder,
    wakeup: queue.SimpleQueue[object],
) -> dict[str, Node]:
    """The run's blocs as nodes: what each reads, which stream from their source (and so form a
    stream, a :class:`Group`, with it), which spill their output, and which fuse their source
    (see the engine's contract). The caller sets each node's ``at_end`` and ``reads``."""
    nodes: dict[str, Node] = {}
    previous: list[str] = []
    for number, stage in enumerate(pipeline.stages, start=1):
        for bloc in stage:
            nodes[bloc.name] = Node(bloc, number, list(bloc.source_blocs or previous))
        previous = [bloc.name for bloc in stage]
    for node in nodes.values():
        try:
            node.resolved = node.bloc.resolved(context.variables, context.logical_time)
            node.batch_size = node.resolved.batch_size or context.batch_size
        except Exception as exc:  # a missing ${env:...} fails this bloc, not the engine
            node.resolve_error = exc
        live = (
            streaming
            and node.resolved is not None
            and type(node.bloc).streams_safely
            and len(node.sources) == 1
        )
        if live:
            node.parent = nodes[node.sources[0]]
            node.parent.children.append(node)
        else:
            for source in node.sources:
                found = nodes[source]
                if found.spill is None:
                    found.spill = Spill(source, folder, DEFAULT_BATCH_SIZE)
    for node in nodes.values():
        if node.parent is None:
            group = Group(node, wakeup)
            for member in group.nodes:
                member.group = group
        feeder = node.parent
        if (
            not keeps_rows  # the source's rows are kept nowhere: nothing asks for them
            and feeder is not None
            and feeder.parent is None
            and feeder.spill is None
            and len(feeder.children) == 1
            and feeder.resolved is not None
            and not any(feeder.stage < n.stage < node.stage for n in nodes.values())
            and type(node.bloc).fuses(feeder.resolved)
        ):
            node.fused, feeder.fused_into = feeder, node
    return nodes
