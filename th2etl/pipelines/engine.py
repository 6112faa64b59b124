"""The engine: runs a pipeline's blocs, stage after stage, with their rows streaming in batches.

Semantics, in one place:

* **Batches.** Rows travel between blocs as batches: plain lists of at most ``batch_size``
  dicts (the bloc's ``batch_size`` config, else the run's ``batch_size=``, else
  :data:`~th2etl.pipelines.context.DEFAULT_BATCH_SIZE`). Loaders yield batches as they read.
  A ``per_batch`` transformer runs once per batch; any other bloc type receives all of its
  input rows as one list, as in th2etl's first releases (the one place where memory grows with
  the data: aggregates, sorts and dedupes stay correct). Exporters consume the batches as they
  come (see :mod:`th2etl.blocs.base` for the two class attributes).
* **A bloc's input**: the rows of its ``source_bloc`` (several in the order given), or else of
  every bloc of the previous stage, in stage order.
* **Stages.** A bloc starts when every bloc of the earlier stages has finished and succeeded,
  unless its type ``streams_safely`` and it reads exactly one bloc: it then starts together
  with that bloc and takes its batches through a bounded queue (two batches deep) as they are
  produced, so the producer waits when the consumer lags (back-pressure). Such a chain of blocs
  is a *stream*; a run's memory is then about ``batch_size`` x its blocs, whatever the rows.
  A bloc that starts later (it does not stream safely, or reads several blocs, as the ``agg`` of
  ``[[load], [a, b], [agg]]`` does) reads its input from the batches its sources spilled to a
  temporary file (small outputs stay in memory), so no queue can deadlock.
* **Nothing becomes visible early.** The input of every bloc ends only once every earlier
  stage has finished; if one failed, or the run was cancelled, the input raises instead, so an
  exporter that commits at the end (``postgres_exporter``, ``csv_exporter``) rolls back and its
  target stays as it was. A bloc that ``streams_safely`` therefore changes nothing outside the
  run before its earlier stages succeeded, and a bloc that does not waits for them.
* **Failure.** When a bloc fails for good, the run is ``failed``: the blocs of its stage and of
  earlier stages still finish (with their retries), the blocs of its stream stop
  (``cancelled``, naming it), later blocs that already stream stop before committing and, like
  those that never started, are ``skipped``.
* **Retries.** A failed attempt is tried again after ``retry_delay`` seconds, doubling each
  time. In a stream, the retry restarts the stream from its first bloc (charged to the bloc
  that failed; blocs of the stream that already finished run again only to feed it, their
  results and spilled outputs unchanged), and its exporters start their staging again, so rows
  are never written twice.
* **Attempts never overlap.** An attempt that runs past its bloc's ``timeout`` (seconds, for
  the whole bloc, reading included) fails with :class:`BlocTimeoutError`, and every attempt of
  its stream is told to stop: its context's ``cancel_requested`` turns true, its cancel hooks
  run (the PostgreSQL blocs cancel their statement on the server), and its queues raise. The
  retry starts only once they all ended. An attempt that has not ended ``stop_grace`` seconds
  later fails the run with a message naming the bloc (Python cannot kill a thread).
* **Cancellation** (:meth:`CancelToken.cancel`, from any thread): blocs and retries not yet
  started never start; running blocs are told to stop as above and awaited (up to
  ``stop_grace``); nothing is committed by a bloc whose input had not ended; the run ends
  ``cancelled``.
* **Outputs.** ``RunResult.outputs`` keeps each bloc's rows while they number at most
  :data:`KEEP_OUTPUT_ROWS` (``keep_outputs=True``: all of them; ``False``: none, as every run
  started by the scheduler, the API, ``th2etl run`` or ``storage.run_pipeline()`` does: their
  rows are in what their exporters wrote). Reading the rows of a bloc that were not kept raises a
  ``KeyError`` saying why and how to keep them. ``RunResult`` reports rows and batches in and
  out per bloc, and listeners receive ``bloc_progress`` about once a second while rows flow.

* **Fusion.** When a bloc streams from a source that feeds nothing else, no bloc of a stage
  between them waits, the run keeps no rows (``keep_outputs=False``), and the reader's type
  ``fuses`` the source (``postgres_exporter`` a ``csv_loader``), the source runs inside the
  reader, which may read the source's data itself (the file straight into COPY) or iterate its
  batches as usual; the source's result follows the reader's, and its own failure is its own.

A run given an ``executor=`` (any :class:`concurrent.futures.Executor`) does not stream between
blocs, since the engine cannot know how many blocs that executor runs at once: every bloc
starts with its stage and reads spilled input; rows still travel in batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime
from pathlib import Path
from typing import Any

from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import BlocError, BlocTimeoutError, ValidationError
from th2etl.logical_time import LogicalTime
from th2etl.pipelines._graph import (
    Group,
    Node,
    SourceFailed,
    State,
    attempt,
    fused_stream,
    nothing_before,
    plan,
)
from th2etl.pipelines._threads import Pool, Ticket, submit_to
from th2etl.pipelines.cancel import CancelToken
from th2etl.pipelines.context import RunContext
from th2etl.pipelines.listener import RunListener, notify
from th2etl.pipelines.pipeline import Pipeline
from th2etl.pipelines.result import BlocResult, BlocStatus, Outputs, RunResult, RunStatus
from th2etl.pipelines.streams import Input, Output, Pipe, SpillFolder, Stopped

__all__ = ["KEEP_OUTPUT_ROWS", "STOP_GRACE", "CancelToken", "RunListener", "run_pipeline"]

logger = logging.getLogger(__name__)
_SYSTEM_CLOCK = SystemClock()

KEEP_OUTPUT_ROWS = 10_000
"""Rows of each bloc a run keeps for ``RunResult.outputs`` unless told otherwise."""
STOP_GRACE = 30.0
"""Seconds an attempt told to stop may take to end before the run fails naming it."""
_PIPE_DEPTH = 2
_PROGRESS_EVERY = 1.0


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        context: RunContext,
        executor: Executor | None,
        listeners: Sequence[RunListener],
        cancel_token: CancelToken,
        clock: Clock,
        keep_outputs: bool | None,
        stop_grace: float,
        thread_name_prefix: str | None,
    ) -> None:
        self.pipeline = pipeline
        self.context = context
        self.listeners = listeners
        self.cancel = cancel_token
        self.clock = clock
        self.stop_grace = stop_grace
        self.keep: int | None = {True: None, False: 0, None: KEEP_OUTPUT_ROWS}[keep_outputs]
        self.keep_limit = KEEP_OUTPUT_ROWS if keep_outputs is None else 0
        self.streaming = executor is None
        self.executor = executor
        self.pool = (
            Pool(min(len(pipeline.blocs), 256), thread_name_prefix or f"th2etl-{pipeline.name}")
            if executor is None
            else None
        )
        self.wakeup: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.folder = SpillFolder()
        self.cancel_seen = False
        self.failed_stage: int | None = None
        self.dropped: dict[str, int] = {}
        self.finals = threading.Condition()
        if context.logical_time is None:  # a manual run is for the moment it starts
            context.logical_time = LogicalTime.at(context.scheduled_time or clock.now())
        self.nodes = self._plan()
        self.groups = [node.group for node in self.nodes.values() if node.group.root is node]
        self.waiting = list(self.groups)  # in stage order
        self.groups_started: list[Group] = []
        # Blocs not final yet, per stage, and the first stage where one ended otherwise than
        # succeeded: "have the earlier stages finished, and well?" in O(stages).
        self.open = [0] * (len(pipeline.stages) + 2)
        for node in self.nodes.values():
            self.open[node.stage] += 1
        self.bad_stage = len(pipeline.stages) + 1
        self.first_open = 1  # the first stage with a bloc not final: the stages before it are
        self.finals_waiting = 0  # threads waiting on `finals`

    # --- plan -----------------------------------------------------------------------------

    def _plan(self) -> dict[str, Node]:
        nodes = plan(
            self.pipeline,
            self.context,
            streaming=self.streaming,
            keeps_rows=self.keep != 0,
            folder=self.folder,
            wakeup=self.wakeup,
        )
        for node in nodes.values():
            node.at_end = self._at_end(node)
            if node.parent is None:
                spills = [nodes[name].spill for name in node.sources]
                node.reads = [spill.read for spill in spills if spill is not None]
        return nodes

    # --- the coordinating loop ------------------------------------------------------------

    def notify(self, event: str, *args: Any) -> None:
        notify(self.listeners, self.context, event, *args)

    def execute(self) -> RunResult:
        started = self.clock.now()
        self.notify("run_started", self.pipeline)
        self.cancel._subscribe(self.wakeup)
        try:
            self._loop()
        finally:
            self.cancel._unsubscribe(self.wakeup)
            if self.pool is not None:
                self.pool.shutdown()
            self.folder.cleanup()
            self._release()
        failed = [n.result for n in self.nodes.values() if n.result.status is BlocStatus.FAILED]
        status, error = RunStatus.SUCCEEDED, None
        if failed:
            first = failed[0]
            status = RunStatus.FAILED
            error = f"bloc {first.name!r} failed: {first.error_type}: {first.error_message}"
        elif self.cancel.cancelled:
            status, error = RunStatus.CANCELLED, "the run was cancelled"
        result = RunResult(
            run_id=self.context.run_id,
            pipeline_name=self.pipeline.name,
            status=status,
            started_at=started,
            finished_at=self.clock.now(),
            blocs={name: node.result for name, node in self.nodes.items()},
            error=error,
            scheduler_name=self.context.scheduler_name,
            scheduled_time=self.context.scheduled_time,
            variables=self.context.variables,
            outputs=Outputs(self.context.outputs, self.dropped, self.keep_limit),
        )
        level = logging.INFO if result.succeeded else logging.WARNING
        logger.log(
            level,
            "run %s of pipeline %r %s in %.3fs",
            result.run_id,
            result.pipeline_name,
            status.value,
            result.duration,
        )
        self.notify("run_finished", result)
        return result

    def _release(self) -> None:
        """Break the run's reference cycles (a node and its stream, its input's end and the
        run), so that its objects are freed now: left to the garbage collector, a run of 100
        blocs leaves some 2,000 objects whose collection every later run pays a share of."""
        for node in self.nodes.values():
            del node.at_end, node.group
            node.reads, node.children = [], []
            node.parent = node.fused = node.fused_into = node.ticket = None
            node.context = node.input = node.output = node.in_pipe = None
        for group in self.groups:
            group.nodes, group.running = [], []
        while not self.wakeup.empty():
            self.wakeup.get()

    def _loop(self) -> None:
        next_progress = time.perf_counter() + _PROGRESS_EVERY
        while True:
            if not self.cancel_seen and self.cancel._cancelled:
                self.cancel_seen = True
                self.context._request_cancel()
                for group in self.groups:
                    if group.state is State.RUNNING:
                        self._stop(group, None, None)
            self._start_ready()
            # The streams started and not done (what each wakeup looks at).
            active = [group for group in self.groups_started if group.state is not State.DONE]
            self.groups_started = active
            if not active and not self.waiting:
                return
            due = next_progress
            for group in active:
                if group.state is State.RETRY:
                    due = min(due, group.retry_at)
                elif group.state is State.STOPPING:
                    due = min(due, group.stop_deadline)
                elif group.state is State.RUNNING:
                    for node in group.running:
                        if node.deadline is not None:
                            due = min(due, node.deadline)
            # A stream posts itself here when one of its attempts ended, the cancel token too.
            woken: set[object] = set()
            wakeup = self.wakeup
            try:  # noqa: SIM105 (contextlib.suppress costs three calls, once per bloc)
                woken.add(wakeup.get(timeout=max(0.0, due - time.perf_counter())))
            except queue.Empty:
                pass
            while not wakeup.empty():
                woken.add(wakeup.get())
            now = time.perf_counter()
            if now < due and self.cancel not in woken:
                # Only attempts ended: look at their streams alone (a run of many blocs would
                # otherwise look at every running stream once per bloc).
                active = [group for group in active if group in woken]
            for group in active:
                self._advance(group, now)
            if now >= next_progress:
                next_progress = now + _PROGRESS_EVERY
                self._progress()

    def _settled(self, stage: int, fused: Node | None = None) -> bool:
        """Whether every bloc of the stages before ``stage`` is final (but ``fused``, which
        ends with the bloc it runs in)."""
        if fused is None or fused.final or fused.stage >= stage:
            return self.first_open >= stage
        return sum(self.open[1:stage]) == 1

    def _start_ready(self) -> None:
        while self.waiting:
            group = self.waiting[0]
            if group.state is not State.WAITING:
                self.waiting.pop(0)
                continue
            stage = group.root.stage
            if self.first_open < stage:  # an earlier stage has not finished
                return
            self.waiting.pop(0)
            if self.cancel._cancelled:
                self._close_group(group, BlocStatus.CANCELLED, None)
            elif self.bad_stage >= stage:
                self._launch(group)
            else:
                self._close_group(group, BlocStatus.SKIPPED, None)

    # --- attempts -------------------------------------------------------------------------

    def _launch(self, group: Group) -> None:
        if group.state is State.WAITING:
            self.groups_started.append(group)
        if self.failed_stage is not None:
            for node in group.nodes:
                if not node.final and node.stage > self.failed_stage:
                    self._finish(node, BlocStatus.SKIPPED)
        if len(group.nodes) == 1:  # most blocs: spare the stream bookkeeping below
            active = set() if group.root.final else {group.root.bloc.name}
            nodes = [] if group.root.final else [group.root]
        else:
            active = {n.bloc.name for n in group.nodes if not n.final}
            for node in reversed(group.nodes):  # a finished bloc runs again to feed its stream
                if any(child.bloc.name in active for child in node.children):
                    active.add(node.bloc.name)
            nodes = [n for n in group.nodes if n.bloc.name in active]
        if not nodes:
            group.state = State.DONE
            return
        broken = (
            (nodes[0] if nodes[0].resolve_error is not None else None)
            if len(nodes) == 1
            else next((n for n in nodes if n.resolve_error is not None), None)
        )
        if broken is not None:
            broken.result.attempts = 1
            broken.result.started_at = self.clock.now()
            assert broken.resolve_error is not None
            group.charged, group.error = broken, broken.resolve_error
            group.running = []
            self._end_group(group)
            return
        group.state = State.RUNNING
        group.charged = group.error = None
        if len(nodes) == 1:
            group.running = nodes
            self._submit(group, nodes[0], None)
            return
        for node in nodes:
            if node.fused_into is not None:  # runs inside the bloc it is fused into
                node.context = self.context._attempt(node.batch_size)
                if node.result.attempts == 0:
                    node.result.attempts = 1
                    node.result.started_at = self.clock.now()
                    node.t0 = time.perf_counter()
                    if self.listeners:
                        self.notify("bloc_started", node.bloc, 1)
        nodes = [n for n in nodes if n.fused_into is None]
        group.running = nodes
        for node in nodes:
            for child in node.children:
                if child.bloc.name in active:
                    child.in_pipe = Pipe(_PIPE_DEPTH)
        for node in nodes:
            pipes = [c.in_pipe for c in node.children if c.bloc.name in active and c.in_pipe]
            self._submit(group, node, pipes)

    def _submit(self, group: Group, node: Node, pipes: list[Pipe] | None) -> None:
        """Start an attempt of ``node``, its output going to ``pipes`` (those of its children
        that stream with it) and its spill."""
        node.feeding = feeding = node.final
        node.stop_reason = None
        node.context = context = self.context._attempt(node.batch_size)
        node.output = output = Output(
            node.where,
            node.batch_size,
            pipes or [],
            node.spill,
            0 if feeding else self.keep,
            type(node.bloc).per_batch,
        )
        reads = node.reads if node.parent is None and node.fused is None else self._sources(node)
        node.input = rows = Input(reads, node.at_end, context)
        if node.fused is not None:
            rows.fused = node.fused.resolved
        if not feeding:
            result = node.result
            if result.attempts == 0:
                result.attempts = 1
                result.started_at = self.clock.now()
                node.t0 = time.perf_counter()
            if self.listeners:
                self.notify("bloc_started", node.bloc, result.attempts)
        bloc = node.resolved
        assert bloc is not None
        node.ticket = ticket = Ticket(group.wake)
        timeout = node.timeout
        node.deadline = time.perf_counter() + timeout if timeout is not None else None
        if self.pool is not None:
            self.pool.submit(ticket, attempt, bloc, context, rows, output)
        else:
            assert self.executor is not None
            submit_to(self.executor, ticket, attempt, bloc, context, rows, output)

    def _sources(self, node: Node) -> list[Any]:
        source = node.fused
        if source is not None:
            bloc, context = source.resolved, source.context
            assert bloc is not None and context is not None
            return [lambda: fused_stream(bloc, context)]
        assert node.in_pipe is not None
        return [node.in_pipe.__iter__]

    def _at_end(self, node: Node) -> Callable[[RunContext], None]:
        """The end of ``node``'s input, given its attempt's context: waits until the earlier
        stages have finished, and raises :class:`Stopped` unless they all succeeded."""
        if node.stage == 1:
            return nothing_before

        def wait(context: RunContext) -> None:
            # Without the lock first (what it reads only moves forward, bad_stage first), but
            # for a fused source, whose end and count must be read together.
            if node.fused is not None or not self._settled(node.stage):
                with self.finals:
                    self.finals_waiting += 1
                    try:
                        while not self._settled(node.stage, node.fused):
                            if context.cancel_requested:
                                raise Stopped
                            self.finals.wait(0.1)
                    finally:
                        self.finals_waiting -= 1
            if context.cancel_requested or self.bad_stage < node.stage:
                raise Stopped

        return wait

    def _advance(self, group: Group, now: float) -> None:
        if group.state is State.RETRY:
            if self.cancel.cancelled:
                if group.charged is not None and group.error is not None:
                    # The retry it would have had never starts.
                    self._record_error(group.charged.result, group.error)
                self._close_group(group, BlocStatus.CANCELLED, None)
            elif now >= group.retry_at:
                self._launch(group)
            return
        if group.state not in (State.RUNNING, State.STOPPING):
            return
        for node in list(group.running):
            ticket = node.ticket
            assert ticket is not None
            if ticket.done:
                self._ended(group, node, ticket.error)
            elif (
                group.state is State.RUNNING
                and node.deadline is not None
                and now >= node.deadline
                and node.stop_reason is None
            ):
                self._stop(
                    group,
                    node,
                    BlocTimeoutError(
                        f"{node.where} attempt {node.result.attempts} ran longer than its "
                        f"timeout of {node.bloc.timeout:g}s"
                    ),
                )
        if group.running and group.state is State.STOPPING and now >= group.stop_deadline:
            self._give_up(group)
        elif not group.running:
            if group.state is State.STOPPING:
                self._end_group(group)
            else:
                group.state = State.DONE

    def _ended(self, group: Group, node: Node, exc: BaseException | None) -> None:
        group.running.remove(node)
        node.ticket = None
        source = node.fused
        if source is not None and not source.final:
            if isinstance(exc, SourceFailed):
                if group.state is State.RUNNING:
                    self._stop(group, source, exc.error)
                return
            if exc is None and group.state is State.RUNNING:
                assert node.input is not None
                source.result.rows_out = node.input.rows
                source.result.batches_out = node.input.batches
                self._finish(source, BlocStatus.SUCCEEDED)
                self.dropped[source.bloc.name] = node.input.rows
        if node.feeding:
            if exc is not None and not isinstance(exc, Stopped) and group.state is State.RUNNING:
                self._stop(group, node, exc)
            return
        if exc is None and group.charged is node:
            pass  # it ended after its timeout: the attempt still failed with it
        elif exc is None:
            # Finished, even if asked to stop (too late: what it did, it did).
            self._succeed(node)
        elif node.stop_reason is not None:
            status, message = node.stop_reason
            self._finish(node, status, message=message)
        elif group.state is State.RUNNING:
            if not isinstance(exc, Stopped):
                self._stop(group, node, exc)
            elif not any(not member.feeding for member in group.running):
                self._stop(group, None, None)  # nothing left to say why: settle as stopped
        # Otherwise its stream is stopping: what becomes of it is decided when all ended.

    def _stop(self, group: Group, node: Node | None, exc: BaseException | None) -> None:
        """Tell every running attempt of ``group`` to stop; ``node`` failed with ``exc``."""
        if node is not None and node.final:  # a finished bloc feeding its stream failed
            node = next((member for member in group.nodes if not member.final), None)
        if group.state is State.RUNNING:
            group.state = State.STOPPING
            group.charged, group.error = node, exc
            group.stop_deadline = time.perf_counter() + self.stop_grace
        for member in group.running:
            self._tell_stop(member)

    @staticmethod
    def _tell_stop(node: Node) -> None:
        if node.context is not None:
            node.context._request_cancel()
        if node.fused is not None and node.fused.context is not None:
            node.fused.context._request_cancel()
        if node.in_pipe is not None:
            node.in_pipe.stop()
        if node.output is not None:
            for pipe in node.output.pipes:
                pipe.stop()

    def _end_group(self, group: Group) -> None:
        """Every attempt of a stopped stream ended: retry it, or settle its blocs."""
        charged, error = group.charged, group.error
        if charged is None or error is None:  # the run was cancelled
            self._close_group(group, BlocStatus.CANCELLED, None)
            return
        result = charged.result
        retry = (
            result.attempts <= charged.bloc.retries
            and not self.cancel.cancelled
            and not isinstance(error, ValidationError)
            and (self.failed_stage is None or charged.stage <= self.failed_stage)
        )
        if retry:
            delay = charged.bloc.retry_delay * 2 ** (result.attempts - 1)
            logger.warning(
                "bloc %r attempt %d failed (%s: %s); retrying in %.3gs",
                charged.bloc.name,
                result.attempts,
                type(error).__name__,
                error,
                delay,
            )
            result.attempts += 1
            group.state = State.RETRY
            group.retry_at = time.perf_counter() + delay
            return
        if self.cancel.cancelled:
            self._record_error(result, error)
            self._close_group(group, BlocStatus.CANCELLED, None)
            return
        self._fail(charged, error)
        for node in group.nodes:  # later stages: as if never started; earlier: stopped
            if not node.final and node.stage > charged.stage:
                message = f"stopped before it finished because bloc {charged.bloc.name!r} failed"
                self._finish(node, BlocStatus.SKIPPED, message=message)
        self._close_group(
            group,
            BlocStatus.CANCELLED,
            f"stopped because bloc {charged.bloc.name!r}, which it streams with, failed",
        )

    def _give_up(self, group: Group) -> None:
        """Attempts told to stop did not end within the grace: fail the run naming them."""
        why = "the run was cancelled"
        if group.charged is not None:
            why = f"bloc {group.charged.bloc.name!r} failed"
            if isinstance(group.error, BlocTimeoutError):
                why = f"{group.charged.where} ran past its timeout"
        for node in list(group.running):
            group.running.remove(node)
            stuck = BlocError(
                f"{node.where} did not stop within {self.stop_grace:g}s after {why}; its "
                "thread is left running, and the run ends without waiting for it"
            )
            if node.feeding or node.final:
                continue
            if self.cancel.cancelled:
                self._record_error(node.result, stuck)
                self._finish(node, BlocStatus.CANCELLED)
            else:
                self._fail(node, stuck)
        charged = group.charged
        if charged is not None and group.error is not None and not charged.final:
            self._fail(charged, group.error)
        self._close_group(group, BlocStatus.CANCELLED, "stopped: its stream did not end in time")

    def _close_group(self, group: Group, status: BlocStatus, message: str | None) -> None:
        for node in group.nodes:
            if not node.final:
                self._finish(node, status, message=message)
        group.running = []
        group.state = State.DONE

    # --- results --------------------------------------------------------------------------

    def _fail(self, node: Node, exc: BaseException) -> None:
        self._record_error(node.result, exc)
        if node.result.attempts == 0:
            node.result.attempts = 1
        logger.error(
            "bloc %r of pipeline %r failed after %d attempt(s): %s: %s",
            node.bloc.name,
            self.pipeline.name,
            node.result.attempts,
            node.result.error_type,
            exc,
        )
        self._finish(node, BlocStatus.FAILED)
        if self.failed_stage is None or node.stage < self.failed_stage:
            self.failed_stage = node.stage
        # Blocs of later stages that already stream stop before they commit anything.
        message = f"stopped before it finished because bloc {node.bloc.name!r} failed"
        for group in self.groups:
            if group.state is not State.RUNNING:
                continue
            for member in group.running:
                if member.stage > node.stage and member.stop_reason is None:
                    member.stop_reason = (BlocStatus.SKIPPED, message)
                    self._tell_stop(member)

    @staticmethod
    def _record_error(result: BlocResult, exc: BaseException) -> None:
        result.error_type = type(exc).__name__
        result.error_message = str(exc)
        result.error_traceback = "".join(traceback.format_exception(exc))

    def _succeed(self, node: Node) -> None:
        output = node.output
        assert output is not None
        if output.kept is not None:
            self.context.set_output(node.bloc.name, output.kept)
        else:
            self.dropped[node.bloc.name] = output.rows
        self._finish(node, BlocStatus.SUCCEEDED)

    def _count(self, node: Node) -> None:
        if node.input is not None and node.output is not None and not node.feeding:
            result = node.result
            result.rows_in, result.batches_in = node.input.rows, node.input.batches
            result.rows_out, result.batches_out = node.output.rows, node.output.batches

    def _finish(self, node: Node, status: BlocStatus, *, message: str | None = None) -> None:
        result = node.result
        if node.input is not None and node.output is not None and not node.feeding:
            result.rows_in, result.batches_in = node.input.rows, node.input.batches
            result.rows_out, result.batches_out = node.output.rows, node.output.batches
        result.status = status
        if message is not None and result.error_message is None:
            result.error_message = message
        if result.started_at is not None:
            result.finished_at = self.clock.now()
            result.duration = time.perf_counter() - node.t0
        if status is not BlocStatus.SUCCEEDED:
            node.output = None  # its kept rows are not outputs
        with self.finals:
            # In this order: a bloc's input reads these without the lock (see _at_end).
            if status is not BlocStatus.SUCCEEDED:
                self.bad_stage = min(self.bad_stage, node.stage)
            node.final = True
            self.open[node.stage] -= 1
            last = len(self.open) - 1
            while self.first_open < last and not self.open[self.first_open]:
                self.first_open += 1
            if self.finals_waiting:
                self.finals.notify_all()
        if self.listeners:
            self.notify("bloc_finished", result)

    def _progress(self) -> None:
        for group in self.groups_started:
            if group.state is not State.RUNNING:
                continue
            for node in group.running:
                if node.feeding or node.input is None or node.output is None:
                    continue
                counts = (node.input.rows, node.output.rows)
                if counts != node.shown:
                    node.shown = counts
                    self._count(node)
                    node.result.duration = time.perf_counter() - node.t0
                    self.notify("bloc_progress", node.result)


def run_pipeline(
    pipeline: Pipeline,
    *,
    variables: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
    listeners: Sequence[RunListener] = (),
    cancel_token: CancelToken | None = None,
    run_id: str | None = None,
    scheduler_name: str | None = None,
    trigger_name: str | None = None,
    scheduled_time: datetime | None = None,
    output_dir: str | Path | None = None,
    context: RunContext | None = None,
    clock: Clock | None = None,
    logical_time: LogicalTime | None = None,
    batch_size: int | None = None,
    keep_outputs: bool | None = None,
    stop_grace: float = STOP_GRACE,
    thread_name_prefix: str | None = None,
) -> RunResult:
    """Run ``pipeline`` now, in this thread (its blocs on ``executor``), and return the result.

    A bloc that raises fails the run with its error recorded; this function itself raises only
    for programming errors. Pass ``listeners`` to observe progress (storage records runs that
    way), ``cancel_token`` to cancel from another thread, ``output_dir`` for a folder the blocs
    may write into, or a ready ``context``. ``logical_time`` is the moment and data interval the
    run is for (``${run:...}`` references); by default ``scheduled_time``, else the moment the
    run starts (see :mod:`th2etl.logical_time`). ``batch_size`` (rows per batch, for blocs that
    do not set their own), ``keep_outputs`` (``True``: every bloc's rows in ``result.outputs``;
    ``False``: none; default: up to :data:`KEEP_OUTPUT_ROWS` each) and ``stop_grace`` are
    explained in this module's docstring; ``thread_name_prefix`` names the threads of the
    engine's own pool (a log filter can pick a run's lines by it).
    """
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValidationError(
            f"batch_size must be a whole number of rows, 1 or more; got {batch_size!r}"
        )
    if context is None:
        context = RunContext(
            pipeline.name,
            run_id=run_id,
            scheduler_name=scheduler_name,
            trigger_name=trigger_name,
            scheduled_time=scheduled_time,
            variables=variables,
            output_dir=output_dir,
            logical_time=logical_time,
        )
    if batch_size is not None:
        context.batch_size = batch_size
    run = _Run(
        pipeline,
        context,
        executor,
        listeners,
        cancel_token or CancelToken(),
        clock or _SYSTEM_CLOCK,
        keep_outputs,
        stop_grace,
        thread_name_prefix,
    )
    return run.execute()
