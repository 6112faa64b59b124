"""The dashboard at ``/ui``: server-rendered HTML, a little JavaScript, no CDN, no build step.

Pages (th2etl/api/ui/pages.py):

* ``/ui``: health; schedulers with their next fire time in their own zone; the last run of
  each pipeline; the failed runs of the last 24 hours.
* ``/ui/pipelines/{name}``: the stages drawn as an SVG graph, each bloc's stored config (``${env:}``
  references as written; a literal value under a secret-looking key is masked), a run button
  with variables, and the run history, newest first, 20 to a page (``?before=`` cursor).
* ``/ui/runs/{run_id}``: a timeline (one bar per bloc on the run's time axis, in stage order),
  rows in and out, errors, and the log, followed live by polling while the run is active; a
  cancel button.
* ``/ui/schedulers``: enable and disable; the next 10 fire times of each, with DST notes (a
  scheduler that runs after other pipelines names them); a backfill form (a preview of the
  fire times, then the backfill itself: ``POST /schedulers/{name}/backfill``).

Every asset (``static/ui.css``, ``static/ui.js``, the favicon) ships in the wheel and pages
allow only this origin (Content-Security-Policy), so the dashboard works offline. The pages
read storage directly; the buttons call the JSON API with ``fetch``, so a write from the UI is
the same request a script makes, under the same checks.

With ``TH2ETL_API_KEY`` set, ``/ui/login`` asks for the key once and keeps a session cookie
(:mod:`th2etl.api.ui.session`); without a key (loopback only) the pages open directly.
"""

from __future__ import annotations
