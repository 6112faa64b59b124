"""Notifications: a webhook POST or an email when a run fails (and, if asked, succeeds, misses
its tick or runs longer than expected).

* **Rules.** A rule (:class:`NotificationRule`) is stored per scheduler (its name) or as the
  global default (scope ``*``), which covers schedulers without one of their own and manual
  runs. ``on`` names the events: ``failure`` (a run ``failed`` or ``abandoned``),
  ``success``, ``missed`` (a tick recorded skipped as missed) and ``duration`` (a run still
  going after ``expected_duration`` seconds). Channels: ``webhook`` (a URL, optional
  ``headers``) and ``email`` (addresses; the SMTP server comes from ``TH2ETL_SMTP_*``).
  Secrets stay ``${env:NAME}`` references in the rule (a URL's token, a header, the SMTP
  password) and are resolved only when a delivery is made.
* **Outbox.** Each service process runs a :class:`Dispatcher` in its own thread, with its own
  storage: it reads the runs that ended since it last looked (whichever process ran them) and
  the running ones, enqueues one delivery per (run, event, channel, target) -- the outbox
  keeps it once however many processes see it -- then claims due deliveries (a claim is held
  by one process for a lease) and makes them. The scheduler never waits on any of it.
* **Delivery.** A webhook gets ``POST`` of the JSON run summary (``event``, ``run_id``,
  ``pipeline``, ``scheduler``, ``status``, ``error``, times, ``duration``); an email the same
  as text, through ``smtplib`` (STARTTLS and a login when configured). A failed attempt is
  retried with exponential backoff (``backoff`` seconds, doubled each time) up to
  ``max_attempts``; the failure is logged, kept in the outbox (``last_error``), and a delivery
  that failed for good is written to the run's log. A run's outcome never changes because of
  its notifications.
* **Time** is an input: :meth:`Dispatcher.tick` takes ``now``.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from th2etl.blocs._placeholders import check_references, resolve
from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import ConfigurationError, Th2etlError, ValidationError
from th2etl.types import JSON

__all__ = ["DEFAULT_SCOPE", "EVENTS", "Dispatcher", "NotificationRule", "SmtpSettings"]

logger = logging.getLogger("th2etl.notifications")

DEFAULT_SCOPE = "*"
EVENTS = ("failure", "success", "missed", "duration")
_RULE_KEYS = ("on", "webhook", "headers", "email", "expected_duration")


@dataclass(frozen=True)
class NotificationRule:
    """When and where to notify; :meth:`from_dict` checks a stored or given rule."""

    on: tuple[str, ...] = ("failure",)
    webhook: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    email: tuple[str, ...] = ()
    expected_duration: float | None = None

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], where: str = "notification rule"
    ) -> NotificationRule:
        unknown = sorted(set(data) - set(_RULE_KEYS))
        if unknown:
            raise ValidationError(
                f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(_RULE_KEYS)}"
            )
        on = tuple(data.get("on", ("failure",)))
        bad = [event for event in on if event not in EVENTS]
        if bad or not on:
            raise ValidationError(
                f"{where}: on {list(on)!r} names no known event; use some of {', '.join(EVENTS)}"
            )
        webhook = data.get("webhook")
        if webhook is not None and (
            not isinstance(webhook, str) or not webhook.startswith(("http://", "https://", "${"))
        ):
            raise ValidationError(
                f"{where}: webhook {webhook!r} is not an http(s) URL, e.g. "
                "https://hooks.example.com/th2etl (a token as ${env:HOOK_TOKEN})"
            )
        email = tuple(data.get("email", ()))
        if any(not isinstance(a, str) or "@" not in a for a in email):
            raise ValidationError(
                f"{where}: email {list(email)!r} must be addresses like ops@example.com"
            )
        if webhook is None and not email:
            raise ValidationError(f"{where}: give a webhook URL, email addresses, or both")
        duration = data.get("expected_duration")
        if duration is not None and (not isinstance(duration, int | float) or duration <= 0):
            raise ValidationError(
                f"{where}: expected_duration {duration!r} must be seconds above 0, e.g. 1800"
            )
        if "duration" in on and duration is None:
            raise ValidationError(
                f"{where}: on 'duration' needs expected_duration (seconds), e.g. 1800"
            )
        headers = dict(data.get("headers", {}))
        check_references([webhook, headers], where)
        return cls(on, webhook, headers, email, float(duration) if duration else None)

    def to_dict(self) -> JSON:
        data: JSON = {"on": list(self.on)}
        if self.webhook:
            data["webhook"] = self.webhook
        if self.headers:
            data["headers"] = self.headers
        if self.email:
            data["email"] = list(self.email)
        if self.expected_duration is not None:
            data["expected_duration"] = self.expected_duration
        return data

    def targets(self) -> list[tuple[str, str]]:
        """(channel, target) pairs."""
        found = [("webhook", self.webhook)] if self.webhook else []
        return found + [("email", address) for address in self.email]


@dataclass(frozen=True)
class SmtpSettings:
    """``TH2ETL_SMTP_HOST``, ``_PORT`` (587 with STARTTLS, else 25), ``_STARTTLS`` (true/false),
    ``_USER``, ``_PASSWORD`` (or a ``${env:NAME}`` reference), ``_FROM``, ``_CA_FILE``."""

    host: str | None = None
    port: int = 25
    starttls: bool = False
    user: str | None = None
    password: str | None = None
    sender: str = "th2etl@localhost"
    ca_file: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"TH2ETL_SMTP_{name}", "").strip()
            return value or None

        starttls_text = (get("STARTTLS") or "false").lower()
        if starttls_text not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigurationError(f"TH2ETL_SMTP_STARTTLS {starttls_text!r} is not true or false")
        starttls = starttls_text in ("true", "1", "yes")
        port_text = get("PORT") or ("587" if starttls else "25")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigurationError(
                f"TH2ETL_SMTP_PORT {port_text!r} is not a port; use 1 to 65535, e.g. 587"
            )
        return cls(
            get("HOST"),
            int(port_text),
            starttls,
            get("USER"),
            get("PASSWORD"),
            get("FROM") or "th2etl@localhost",
            get("CA_FILE"),
        )


def _subject(payload: JSON) -> str:
    what = {
        "failure": f"{payload['status']}",
        "success": "succeeded",
        "missed": "missed a tick",
        "duration": f"still running after {payload.get('expected_duration')}s",
    }[payload["event"]]
    return f"th2etl: pipeline {payload['pipeline']!r} {what} (run {payload['run_id']})"


class Dispatcher:
    """Finds what to notify and delivers it; see the module docstring. ``open_storage()``
    gives the dispatcher's own storage (kept open while it runs)."""

    def __init__(
        self,
        open_storage: Callable[[], Any],
        *,
        clock: Clock | None = None,
        smtp: SmtpSettings | None = None,
        interval: float = 2.0,
        max_attempts: int = 5,
        backoff: float = 2.0,
        timeout: float = 10.0,
        lease: timedelta = timedelta(minutes=2),
    ) -> None:
        self.open_storage = open_storage
        self.clock = clock or SystemClock()
        self.smtp = smtp or SmtpSettings.from_env()
        self.interval = interval
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.lease = lease
        self.owner = f"notifier-{uuid.uuid4().hex[:12]}"
        self._storage: Any = None
        self._since = self.clock.now() - timedelta(minutes=1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def storage(self) -> Any:
        if self._storage is None:
            self._storage = self.open_storage()
        return self._storage

    # -- one pass ---------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """Enqueue what is due to be notified and make the due deliveries; return how many
        deliveries were attempted."""
        now = now or self.clock.now()
        storage = self.storage
        rules = {
            scope: NotificationRule.from_dict(rule, f"notification rule {scope!r}")
            for scope, rule in storage.notification_rules().items()
        }
        if rules:
            self._enqueue_ended(storage, rules, now)
            self._enqueue_long(storage, rules, now)
        entries = storage.claim_notifications(self.owner, now, self.lease)
        for entry in entries:
            self._deliver(storage, entry, now)
        return len(entries)

    @staticmethod
    def _rule(rules: dict[str, NotificationRule], scheduler: str | None) -> NotificationRule | None:
        return rules.get(scheduler or DEFAULT_SCOPE) or rules.get(DEFAULT_SCOPE)

    def _enqueue_ended(
        self, storage: Any, rules: dict[str, NotificationRule], now: datetime
    ) -> None:
        for summary in storage.ended_runs(self._since):
            status, error = summary["status"], summary.get("error") or ""
            event = {"failed": "failure", "abandoned": "failure", "succeeded": "success"}.get(
                status
            )
            if status == "skipped" and error.startswith("missed"):
                event = "missed"
            rule = self._rule(rules, summary["scheduler"])
            if event is not None and rule is not None and event in rule.on:
                self._enqueue(storage, rule, event, summary, now)
            self._since = max(self._since, datetime.fromisoformat(summary["finished_at"]))

    def _enqueue_long(
        self, storage: Any, rules: dict[str, NotificationRule], now: datetime
    ) -> None:
        for run in storage.active_runs():
            rule = self._rule(rules, run.scheduler_name)
            if rule is None or "duration" not in rule.on or rule.expected_duration is None:
                continue
            if (
                run.status.value == "running"
                and (now - run.started_at).total_seconds() > rule.expected_duration
            ):
                summary = {
                    "run_id": run.run_id,
                    "pipeline": run.pipeline_name,
                    "scheduler": run.scheduler_name,
                    "status": run.status.value,
                    "error": None,
                    "started_at": run.started_at.isoformat(),
                    "finished_at": None,
                    "scheduled_time": run.scheduled_time.isoformat()
                    if run.scheduled_time
                    else None,
                    "duration": (now - run.started_at).total_seconds(),
                    "expected_duration": rule.expected_duration,
                }
                self._enqueue(storage, rule, "duration", summary, now)

    def _enqueue(
        self, storage: Any, rule: NotificationRule, event: str, summary: JSON, now: datetime
    ) -> None:
        payload = {"event": event, **summary}
        for channel, target in rule.targets():
            if storage.enqueue_notification(
                summary["run_id"], event, channel, target, payload, now
            ):
                logger.info(
                    "notification: %s of run %s to %s %s",
                    event,
                    summary["run_id"],
                    channel,
                    _shown(target),
                )

    # -- delivery ---------------------------------------------------------------------------

    def _deliver(self, storage: Any, entry: JSON, now: datetime) -> None:
        attempt = entry["attempts"] + 1
        try:
            if entry["channel"] == "webhook":
                self._post(entry)
            else:
                self._mail(entry)
        except Exception as exc:  # every failure of a delivery is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "notification %s of run %s to %s failed (attempt %d of %d): %s; "
                    "retrying in %.1fs",
                    entry["event"],
                    entry["run_id"],
                    entry["target"],
                    attempt,
                    self.max_attempts,
                    error,
                    delay,
                )
                storage.finish_notification(
                    entry["id"],
                    sent=False,
                    now=now,
                    error=error,
                    retry_at=now + timedelta(seconds=delay),
                )
                return
            logger.error(
                "notification %s of run %s to %s failed for good after %d attempts: %s",
                entry["event"],
                entry["run_id"],
                entry["target"],
                attempt,
                error,
            )
            storage.finish_notification(entry["id"], sent=False, now=now, error=error)
            try:
                storage.append_run_log(
                    entry["run_id"],
                    f"{now.astimezone(UTC).isoformat(timespec='milliseconds')} notification "
                    f"{entry['event']} to {entry['channel']} {_shown(entry['target'])} failed "
                    f"after {attempt} attempt(s): {error}\n",
                )
            except Th2etlError:
                logger.exception(
                    "could not record the failed notification on run %s", entry["run_id"]
                )
            return
        storage.finish_notification(entry["id"], sent=True, now=now)

    def _post(self, entry: JSON) -> None:
        where = f"notification webhook of run {entry['run_id']}"
        url = resolve(entry["target"], {}, where)
        headers = {"Content-Type": "application/json", "User-Agent": "th2etl"}
        rules = self.storage.notification_rules()
        scope = entry["payload"].get("scheduler") or DEFAULT_SCOPE
        rule = rules.get(scope) or rules.get(DEFAULT_SCOPE) or {}
        headers.update(resolve(rule.get("headers", {}), {}, where))
        body = json.dumps(entry["payload"]).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"HTTP {response.status}")

    def _mail(self, entry: JSON) -> None:
        smtp = self.smtp
        if smtp.host is None:
            raise ConfigurationError(
                "no SMTP server: set TH2ETL_SMTP_HOST (and TH2ETL_SMTP_PORT, _STARTTLS, _USER, "
                "_PASSWORD, _FROM as needed)"
            )
        payload = entry["payload"]
        message = EmailMessage()
        message["Subject"] = _subject(payload)
        message["From"] = smtp.sender
        message["To"] = entry["target"]
        message.set_content(
            "\n".join(f"{key}: {value}" for key, value in payload.items())
            + "\n\n"
            + json.dumps(payload, indent=2)
            + "\n"
        )
        with smtplib.SMTP(smtp.host, smtp.port, timeout=self.timeout) as client:
            if smtp.starttls:
                context = ssl.create_default_context(cafile=smtp.ca_file)
                client.starttls(context=context)
            if smtp.user:
                password = resolve(smtp.password or "", {}, "TH2ETL_SMTP_PASSWORD")
                client.login(smtp.user, password)
            client.send_message(message)

    # -- the thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Th2etlError as exc:
                logger.warning("notifications: %s; trying again in %.0fs", exc, self.interval)
            except Exception:
                logger.exception("notifications: unexpected error; trying again")
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="th2etl-notifications", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._storage is not None:
            self._storage.close()


def _shown(target: str) -> str:
    """A target fit for a log: a URL without its query (tokens live there)."""
    return target.split("?", 1)[0]
