"""The dashboard's pages and its login (what each page shows: th2etl/api/ui/__init__.py)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from th2etl.api.deps import ApiState, state_of
from th2etl.api.ui.charts import pipeline_graph, run_timeline
from th2etl.api.ui.html import badge, config_view, h, moment, page, table
from th2etl.api.ui.session import clear_session, has_session, start_session
from th2etl.exceptions import NotFoundError, Th2etlError
from th2etl.pipelines.result import RunStatus
from th2etl.storage.records import RunRecord

__all__ = ["PAGE_SIZE", "router"]

PAGE_SIZE = 20
"""Runs per page of a pipeline's history."""

router = APIRouter(prefix="/ui", include_in_schema=False)


def _signed_in(request: Request, state: ApiState) -> bool:
    if state.api_key is None:
        return True
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(
        header[7:].encode(), state.api_key.encode()
    ):
        return True
    return has_session(request, state.api_key)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def _guarded(request: Request) -> ApiState | Response:
    state = state_of(request)
    return state if _signed_in(request, state) else _to_login(request)


def _run_link(run: RunRecord) -> str:
    return f'<a href="/ui/runs/{h(run.run_id)}"><code>{h(run.run_id[:12])}</code></a>'


def _run_rows(runs: list[RunRecord], *, pipeline: bool = True) -> list[list[str]]:
    rows = []
    for run in runs:
        took = f"{run.duration:.1f} s" if run.duration is not None else ""
        cells = [_run_link(run)]
        if pipeline:
            cells.append(
                f'<a href="/ui/pipelines/{h(run.pipeline_name)}">{h(run.pipeline_name)}</a>'
            )
        cells += [badge(run.status), moment(run.started_at), h(took), h(run.scheduler_name or "")]
        rows.append(cells)
    return rows


_RUN_HEADERS = ["run", "pipeline", "status", "started", "took", "scheduler"]


def _not_found(exc: NotFoundError, active: str, logout: bool) -> Response:
    return page(
        "Not found", f'<p class="error">{h(exc)}</p>', active=active, status=404, logout=logout
    )


# -- overview -------------------------------------------------------------------------------------


@router.get("")
def overview(request: Request) -> Response:
    state = _guarded(request)
    if isinstance(state, Response):
        return state
    storage = state.storage
    now = state.clock.now()
    probe = state.health.latest() or state.health.check_now()
    scheduler_state = state.scheduler.state if state.scheduler is not None else "disabled"
    health = (
        '<dl class="health">'
        f"<dt>database</dt><dd>{badge('up' if probe.up else 'down')} {h(probe.error or '')}</dd>"
        f"<dt>scheduler</dt><dd>{badge(scheduler_state)}</dd>"
        f"<dt>manual runs now</dt><dd>{state.runs.active}</dd>"
        f"<dt>storage</dt><dd>{h(storage.describe())}</dd></dl>"
    )
    triggers = {trigger.name: trigger for trigger in storage.list_triggers()}
    schedule_rows = []
    for scheduler in storage.list_schedulers():
        trigger = triggers.get(scheduler.trigger_name or "")
        upcoming = _next_fire_times(trigger, now, 1) if trigger is not None else []
        schedule_rows.append(
            [
                f'<a href="/ui/schedulers#s-{h(scheduler.name)}">{h(scheduler.name)}</a>',
                f'<a href="/ui/pipelines/{h(scheduler.pipeline_name)}">'
                f"{h(scheduler.pipeline_name)}</a>",
                badge("enabled" if scheduler.enabled else "disabled"),
                f"<code>{h(trigger.cron_expression)}</code> {h(trigger.timezone)}"
                if trigger is not None
                else '<span class="error">no trigger</span>',
                moment(upcoming[0][0], zone=True)
                if upcoming and scheduler.enabled
                else '<span class="muted">\u2014</span>',
            ]
        )
    last_rows = []
    for pipeline in storage.list_pipelines():
        last = storage.list_runs(pipeline_name=pipeline.name, limit=1)
        run_cells = _run_rows(last, pipeline=False)[0][:4] if last else ["never run", "", "", ""]
        last_rows.append(
            [f'<a href="/ui/pipelines/{h(pipeline.name)}">{h(pipeline.name)}</a>', *run_cells]
        )
    day_ago = now - timedelta(hours=24)
    failures = sorted(
        (
            run
            for status in (RunStatus.FAILED, RunStatus.ABANDONED)
            for run in storage.list_runs(status=status, since=day_ago, limit=50)
        ),
        key=lambda run: run.started_at,
        reverse=True,
    )[:50]
    body = (
        f"<section><h2>Health</h2>{health}</section>"
        "<section><h2>Schedulers</h2>"
        + table(
            ["scheduler", "pipeline", "state", "trigger", "next fire time (its zone)"],
            schedule_rows,
            empty="No scheduler yet.",
        )
        + "</section><section><h2>Pipelines and their last run</h2>"
        + table(
            ["pipeline", "last run", "status", "started", "took"],
            last_rows,
            empty="No pipeline yet: create one with th2etl apply or POST /pipelines.",
        )
        + "</section><section><h2>Failures in the last 24 hours</h2>"
        + table(_RUN_HEADERS, _run_rows(failures), empty="No failed run in the last 24 hours.")
        + "</section>"
    )
    return page("Overview", body, active="/ui", logout=state.api_key is not None)


def _next_fire_times(trigger: Any, now: datetime, n: int) -> list[tuple[datetime, str | None]]:
    """The next ``n`` fire times of a stored trigger, in its zone, with DST notes."""
    from th2etl.scheduler.preview import fire_times
    from th2etl.scheduler.triggers import CronTrigger

    try:
        cron = CronTrigger(trigger.cron_expression, trigger.timezone)
    except Th2etlError:
        return []
    return [(f.at.astimezone(cron.timezone), f.note) for f in fire_times(cron, now, n)]


# -- a pipeline -----------------------------------------------------------------------------------


@router.get("/pipelines/{name}")
def pipeline_page(
    name: str,
    request: Request,
    before: Annotated[str | None, Query()] = None,
) -> Response:
    state = _guarded(request)
    if isinstance(state, Response):
        return state
    logout = state.api_key is not None
    try:
        record, blocs = state.storage.get_pipeline_definition(name)
    except NotFoundError as exc:
        return _not_found(exc, "", logout)
    until = None
    if before:
        try:
            until = datetime.fromisoformat(before)
        except ValueError:
            until = None
        if until is not None and until.utcoffset() is None:
            until = until.replace(tzinfo=UTC)
    runs = state.storage.list_runs(pipeline_name=name, until=until, limit=PAGE_SIZE + 1)
    older = runs[PAGE_SIZE].started_at if len(runs) > PAGE_SIZE else None
    runs = runs[:PAGE_SIZE]
    sources = {bloc.name: bloc.source_blocs for bloc in blocs}
    bloc_rows = [
        [
            f"<strong>{h(bloc.name)}</strong>",
            f"<code>{h(bloc.bloc_type)}</code>",
            h(bloc.description),
            config_view(bloc.config),
        ]
        for bloc in sorted(blocs, key=lambda b: _stage_of(record.stages, b.name))
    ]
    pager = ""
    if before:
        pager += f'<a class="button" href="/ui/pipelines/{h(name)}">newest</a> '
    if older is not None:
        pager += (
            f'<a class="button" rel="next" href="/ui/pipelines/{h(name)}?before='
            f'{quote(runs[-1].started_at.isoformat(), safe="")}">older runs</a>'
        )
    body = (
        f'<p class="muted">{h(record.description)}</p>'
        f'<section><h2>Stages</h2><div class="scroll">'
        f"{pipeline_graph(record.stages, sources)}</div></section>"
        '<section><h2>Run it now</h2><form class="run" data-action="run" '
        f'data-pipeline="{h(name)}"><label for="variables">variables, one '
        "<code>name=value</code> a line (read as <code>${var:name}</code>)</label>"
        '<textarea id="variables" name="variables" rows="3" placeholder="day=2026-11-25">'
        '</textarea><button type="submit" class="primary">Run</button></form></section>'
        "<section><h2>Blocs</h2>"
        + table(["bloc", "type", "description", "config"], bloc_rows, empty="No bloc.")
        + "</section><section><h2>Runs</h2>"
        + table(
            [h for h in _RUN_HEADERS if h != "pipeline"],
            _run_rows(runs, pipeline=False),
            empty="No run yet.",
        )
        + f'<p class="pager">{pager}</p></section>'
    )
    return page(f"Pipeline {name}", body, logout=logout)


def _stage_of(stages: list[list[str]], bloc: str) -> int:
    return next((number for number, stage in enumerate(stages) if bloc in stage), len(stages))


# -- a run ----------------------------------------------------------------------------------------


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request) -> Response:
    state = _guarded(request)
    if isinstance(state, Response):
        return state
    logout = state.api_key is not None
    try:
        run = state.storage.get_run(run_id)
    except NotFoundError as exc:
        return _not_found(exc, "", logout)
    finished = run.status.finished
    end = run.finished_at or max(
        [state.clock.now(), *(b.finished_at for b in run.blocs if b.finished_at)]
    )
    bloc_rows = [
        [
            f"{bloc.stage}",
            h(bloc.bloc_name),
            badge(bloc.status),
            str(bloc.rows_in),
            str(bloc.rows_out),
            f"{bloc.duration:.3f} s",
            str(bloc.attempts),
            f'<span class="error">{h(bloc.error_type)}: {h(bloc.error_message)}</span>'
            if bloc.error_message
            else "",
        ]
        for bloc in sorted(run.blocs, key=lambda b: (b.stage, b.bloc_name))
    ]
    log = run.log or ""
    cancel = (
        ""
        if finished
        else f'<button class="danger" data-action="cancel" data-run="{h(run.run_id)}">'
        "Cancel run</button>"
    )
    variables = ", ".join(f"{h(k)}={h(v)}" for k, v in run.variables.items()) or "none"
    body = (
        f'<div class="run-head" data-run="{h(run.run_id)}" '
        f'data-finished="{"true" if finished else "false"}">'
        f'<p>status {badge(run.status)} pipeline <a href="/ui/pipelines/{h(run.pipeline_name)}">'
        f"{h(run.pipeline_name)}</a> {cancel}</p>"
        '<dl class="facts">'
        f"<dt>run</dt><dd><code>{h(run.run_id)}</code></dd>"
        f"<dt>started</dt><dd>{moment(run.started_at)}</dd>"
        f"<dt>finished</dt><dd>{moment(run.finished_at)}</dd>"
        f"<dt>scheduler</dt><dd>{h(run.scheduler_name or 'manual')}</dd>"
        f"<dt>variables</dt><dd>{variables}</dd></dl></div>"
        + (f'<p class="error">{h(run.error)}</p>' if run.error else "")
        + '<section><h2>Timeline</h2><div class="scroll">'
        + run_timeline(run.blocs, run.started_at, end)
        + "</div></section><section><h2>Blocs</h2>"
        + table(
            ["stage", "bloc", "status", "rows in", "rows out", "took", "attempts", "error"],
            bloc_rows,
            empty="No bloc has started yet.",
        )
        + '</section><section><h2>Log <span class="muted" id="follow"></span></h2>'
        f'<pre id="log" class="log">{h(log)}</pre></section>'
    )
    return page(f"Run of {run.pipeline_name}", body, logout=logout)


# -- schedulers -----------------------------------------------------------------------------------


@router.get("/schedulers")
def schedulers_page(request: Request) -> Response:
    state = _guarded(request)
    if isinstance(state, Response):
        return state
    now = state.clock.now()
    triggers = {trigger.name: trigger for trigger in state.storage.list_triggers()}
    sections = []
    for scheduler in state.storage.list_schedulers():
        trigger = triggers.get(scheduler.trigger_name or "")
        toggle = (
            f'<button data-action="enable" data-scheduler="{h(scheduler.name)}" '
            f'data-enabled="{"false" if scheduler.enabled else "true"}">'
            f"{'Disable' if scheduler.enabled else 'Enable'}</button>"
        )
        if scheduler.after_pipelines:
            after = ", ".join(
                f'<a href="/ui/pipelines/{h(p)}">{h(p)}</a>' for p in scheduler.after_pipelines
            )
            times = (
                f"<p>runs after {after} succeeded for the same logical time (no fire times of "
                "its own)</p>"
            )
        elif trigger is None:
            times = '<p class="error">its trigger is missing</p>'
        else:
            upcoming = _next_fire_times(trigger, now, 10)
            items = "".join(
                f"<li>{moment(at, zone=True)}"
                + (f' <span class="note">{h(note)}</span>' if note else "")
                + "</li>"
                for at, note in upcoming
            )
            times = (
                f"<p>trigger <strong>{h(trigger.name)}</strong>: "
                f"<code>{h(trigger.cron_expression)}</code> in {h(trigger.timezone)}</p>"
                f'<ol class="fire-times">{items}</ol>'
            )
        sections.append(
            f'<section class="scheduler" id="s-{h(scheduler.name)}">'
            f"<h2>{h(scheduler.name)} {badge('enabled' if scheduler.enabled else 'disabled')}"
            f'</h2><p>runs pipeline <a href="/ui/pipelines/{h(scheduler.pipeline_name)}">'
            f"{h(scheduler.pipeline_name)}</a> {toggle}</p>"
            f"<h3>Next 10 fire times</h3>{times}"
            + (_backfill_form(scheduler.name, trigger.timezone, now) if trigger else "")
            + "</section>"
        )
    body = "".join(sections) or '<p class="muted">No scheduler yet.</p>'
    return page("Schedulers", body, active="/ui/schedulers", logout=state.api_key is not None)


def _backfill_form(scheduler: str, zone: str, now: datetime) -> str:
    """Backfill (th2etl.scheduler.backfill) of the last week by default, in the trigger's zone:
    "Preview" is a dry run listing the fire times, "Backfill" starts it in the service."""
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(zone)).replace(minute=0, second=0, microsecond=0)
    start = (local - timedelta(days=7)).replace(hour=0).isoformat()
    return (
        f'<details><summary>Backfill past fire times</summary><form class="run backfill" '
        f'data-action="backfill" data-scheduler="{h(scheduler)}">'
        f'<label>from (inclusive, ISO 8601 with offset)<input name="from" value="{h(start)}" '
        "required></label>"
        f'<label>to (inclusive)<input name="to" value="{h(local.isoformat())}" required></label>'
        '<label>runs at once <input name="max_active" type="number" min="1" max="1000" '
        'value="1"></label>'
        '<label><input name="rerun_failed" type="checkbox"> rerun failed, abandoned and '
        "cancelled ticks</label>"
        '<div><button type="submit" name="dry_run" value="true">Preview</button> '
        '<button type="submit" class="primary" name="dry_run" value="false">Backfill</button>'
        '</div><pre class="backfill-result" hidden></pre></form></details>'
    )


# -- login ----------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path of this dashboard (never another site: no open redirect)."""
    if target and target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui"


def _login_form(target: str, message: str = "") -> str:
    error = f'<p class="error" role="alert">{h(message)}</p>' if message else ""
    return (
        f"{error}<form method=post action=/ui/login class=login>"
        f'<input type=hidden name=next value="{h(target)}">'
        "<label for=key>API key (the service's TH2ETL_API_KEY)</label>"
        "<input id=key name=key type=password autocomplete=current-password required autofocus>"
        '<button type=submit class="primary">Sign in</button></form>'
        '<p class="muted">The key is asked once; a session cookie keeps you signed in for '
        "12 hours.</p>"
    )


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    state = state_of(request)
    target = _safe_next(next)
    if state.api_key is None or _signed_in(request, state):
        return RedirectResponse(target, status_code=303)
    return page("Sign in", _login_form(target))


@router.post("/login")
async def login(request: Request) -> Response:
    # The form is read here: FastAPI's Form() would need python-multipart for a two-field form.
    fields = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    key = fields.get("key", [""])[0]
    state = state_of(request)
    target = _safe_next(fields.get("next", ["/ui"])[0])
    if state.api_key is None:
        return RedirectResponse(target, status_code=303)
    if not hmac.compare_digest(key.strip().encode(), state.api_key.encode()):
        return page("Sign in", _login_form(target, "That is not the service's key."), status=401)
    response = RedirectResponse(target, status_code=303)
    start_session(response, request, state.api_key)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session(response, request)
    return response
