"""A bloc type for the lease tests, in a module of its own: worker processes import it here."""

from __future__ import annotations

import os
import time
from pathlib import Path

from th2etl import ConfigField, RunContext, TransformerBloc, register_bloc
from th2etl.types import Rows


@register_bloc
class LeaseHold(TransformerBloc):
    """Writes its pid to ``pid_file``, then waits until ``release_file`` exists; when its run
    is cancelled first, it writes ``stopped_file`` and stops."""

    bloc_type = "test_lease_hold"
    config_fields = (
        ConfigField("pid_file", "str", required=True, help="where to write the pid"),
        ConfigField("release_file", "str", required=True, help="what to wait for"),
        ConfigField("stopped_file", "str", required=True, help="written when it stops early"),
    )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        # Written whole, then renamed: a test waiting for the file never reads it half-written.
        pid_file = Path(self.config["pid_file"])
        partial = pid_file.with_name(f"{pid_file.name}.partial")
        partial.write_text(str(os.getpid()), encoding="utf-8")
        partial.replace(pid_file)
        release = Path(self.config["release_file"])
        while not release.exists():
            if context.cancel_requested:
                Path(self.config["stopped_file"]).touch()
                return []
            time.sleep(0.02)
        return [{"released": True}]
