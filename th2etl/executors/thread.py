"""ThreadExecutor: each run in a thread of this process (``TH2ETL_EXECUTOR=thread``).

For embedded use (``Pipeline.run()``, ``load_scheduler_manager()`` in a script, tests on a
fake clock): no process to start, any bloc type works, even one defined in ``__main__``. The
price: a run shares the process's memory and crashes, and a thread cannot be killed, so a run
past its timeout or its cancel's grace is recorded and then left to finish on its own (its
outcome ignored). The contract is in :mod:`th2etl.executors.base`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from th2etl.executors._execute import execute
from th2etl.executors.base import DEFAULT_GRACE, Executor, RunHandle, RunJob
from th2etl.pipelines.cancel import CancelToken
from th2etl.pipelines.result import RunStatus

if TYPE_CHECKING:
    from th2etl.clock import Clock
    from th2etl.pipelines.listener import RunListener
    from th2etl.storage.run_history import RunHistory

__all__ = ["ThreadExecutor"]


class _ThreadHandle(RunHandle):
    def __init__(self, job: RunJob, executor: ThreadExecutor) -> None:
        super().__init__(job, storage=executor.storage, grace=executor.grace, clock=executor.clock)
        self.token = CancelToken()
        self.abandoned = threading.Event()
        self._timers: list[threading.Timer] = []
        self._cancel_sent = False

    def cancel(self) -> None:
        if self._cancel_sent or self.done():
            return
        self._cancel_sent = True
        self.token.cancel()
        self._after(self.grace, self._cancel_expired)

    def _after(self, seconds: float, action: object) -> None:
        timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
        timer.daemon = True
        timer.name = f"th2etl-supervise-{self.run_id[:12]}"
        self._timers.append(timer)
        timer.start()

    def _cancel_expired(self) -> None:
        self.abandoned.set()
        self._end_without_outcome(
            RunStatus.CANCELLED,
            f"the run did not stop within {self.grace:g}s of its cancel; its thread "
            f"{self.worker} is left to finish on its own (a thread cannot be killed)",
        )

    def _timed_out(self) -> None:
        self.abandoned.set()
        self.token.cancel()
        self._end_without_outcome(
            RunStatus.FAILED,
            self._timeout_reason(
                f"it was cancelled and its thread {self.worker} is left to finish on its own "
                "(a thread cannot be killed)"
            ),
        )

    def _finished(self) -> None:
        for timer in self._timers:
            timer.cancel()


class ThreadExecutor(Executor):
    """Runs each job in a new thread of this process (see the module docstring).

    ``inline=True`` runs the job inside :meth:`submit`, in the caller's thread, its blocs one
    after another (a scheduler on a :class:`~th2etl.clock.FakeClock` does this); pipeline
    timeouts are not enforced then.

    >>> from th2etl.pipelines import build_example_pipeline
    >>> handle = ThreadExecutor(None).submit(RunJob("r1", build_example_pipeline()))
    >>> handle.wait().status  # doctest: +SKIP
    <RunStatus.SUCCEEDED: 'succeeded'>
    """

    kind = "thread"

    def __init__(
        self,
        storage: RunHistory | None,
        *,
        grace: float = DEFAULT_GRACE,
        clock: Clock | None = None,
        inline: bool = False,
    ) -> None:
        super().__init__(storage, grace=grace, clock=clock)
        self.inline = inline

    def submit(self, job: RunJob, *, listeners: Sequence[RunListener] = ()) -> RunHandle:
        handle = _ThreadHandle(job, self)

        def work() -> None:
            try:
                result, recorded = execute(
                    job,
                    storage=self.storage,
                    listeners=listeners,
                    cancel_token=handle.token,
                    clock=self.clock,
                    inline=self.inline,
                    abandoned=handle.abandoned,
                    lost=lambda: handle.lost,
                )
                handle._settle(result, recorded)
            except BaseException as exc:  # the engine raises only for programming errors
                handle._end_without_outcome(
                    RunStatus.FAILED,
                    f"the run ended abnormally in thread {handle.worker}: "
                    f"{type(exc).__name__}: {exc}",
                )
                if not isinstance(exc, Exception):
                    raise
            finally:
                handle._finished()

        if self.inline:
            handle.worker = threading.current_thread().name
            work()
            return handle
        thread = threading.Thread(target=work, name=f"th2etl-run-{job.run_id[:12]}", daemon=True)
        handle.worker = thread.name
        if job.pipeline.timeout is not None:
            handle._after(job.pipeline.timeout, handle._timed_out)
        thread.start()
        return handle
