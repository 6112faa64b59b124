"""Th2etlClient: the th2etl REST API from Python, one method per endpoint.

Built on the standard library (``urllib``), so it needs no extra: any Python that has th2etl
can drive a th2etl service.

>>> from th2etl.helpers.th2etl_client import Th2etlClient
>>> client = Th2etlClient()  # TH2ETL_API_URL or http://127.0.0.1:8000, TH2ETL_API_KEY
>>> client.health_check()["status"]  # doctest: +SKIP
'ok'

An answer outside 2xx raises :class:`Th2etlApiError` with the HTTP ``status`` and the API's
``detail``; a service that cannot be reached raises it with ``status`` None.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from th2etl._urls import mask_url
from th2etl.exceptions import Th2etlError
from th2etl.pipelines.result import TERMINAL_STATUSES
from th2etl.types import JSON

__all__ = ["DEFAULT_API_URL", "Th2etlApiError", "Th2etlClient"]

DEFAULT_API_URL = "http://127.0.0.1:8000"


class Th2etlApiError(Th2etlError):
    """The th2etl API answered with an error (``status``), or could not be reached (None)."""

    def __init__(self, message: str, *, status: int | None, detail: Any, method: str, url: str):
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.method = method
        self.url = url


def _quote(name: str) -> str:
    return urllib.parse.quote(str(name), safe="")


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Th2etlClient:
    """A client of one th2etl service.

    ``base_url`` defaults to ``TH2ETL_API_URL``, else ``http://127.0.0.1:8000``; ``api_key`` to
    ``TH2ETL_API_KEY`` (sent as ``Authorization: Bearer <key>``); ``timeout`` is in seconds per
    request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        url = base_url or os.environ.get("TH2ETL_API_URL", "").strip() or DEFAULT_API_URL
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Th2etlError(
                f"Th2etlClient: base_url {mask_url(url)!r} is not an http(s) URL; use e.g. "
                f"{DEFAULT_API_URL!r} or set TH2ETL_API_URL"
            )
        if "@" in parts.netloc:
            # urllib would send no credentials from it, only show them in its errors.
            raise Th2etlError(
                f"Th2etlClient: base_url {mask_url(url)!r} holds a user name or password; the "
                "th2etl API takes a key instead: drop them from the URL and pass api_key=... "
                "(or set TH2ETL_API_KEY)"
            )
        self.base_url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("TH2ETL_API_KEY", "")
        self._api_key = key or None
        self.timeout = timeout

    def __repr__(self) -> str:
        auth = ", api_key=***" if self._api_key else ""
        return f"Th2etlClient(base_url={self.base_url!r}{auth})"

    # -- transport -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: Sequence[int] = (),
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded body). Raise :class:`Th2etlApiError` for
        a status outside 2xx that is not in ``ok``."""
        url = self.base_url + path
        query = _clean(params or {})
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: v.isoformat() if isinstance(v, datetime) else v for k, v in query.items()}
            )
        headers = {"Accept": "application/json"}
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.status, self._decode(response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                body = self._decode(exc.read(), exc.headers)
            if exc.code in ok:
                return exc.code, body
            detail = body.get("detail", body) if isinstance(body, dict) else body
            raise Th2etlApiError(
                f"{method} {path} failed with HTTP {exc.code}: {_detail_text(detail)}",
                status=exc.code,
                detail=detail,
                method=method,
                url=url,
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Th2etlApiError(
                f"cannot reach the th2etl API at {self.base_url} ({method} {path}): {reason}; "
                "is the service running (th2etl --serve-api) and TH2ETL_API_URL right?",
                status=None,
                detail=str(reason),
                method=method,
                url=url,
            ) from None

    @staticmethod
    def _decode(raw: bytes, headers: Any) -> Any:
        if not raw:
            return None
        if "json" in (headers.get("Content-Type") or ""):
            try:
                return json.loads(raw)
            except ValueError:
                pass
        return raw.decode("utf-8", errors="replace")

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)[1]

    def _post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json_body=body)[1]

    def _put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json_body=body)[1]

    def _delete(self, path: str) -> None:
        self.request("DELETE", path)

    # -- health and types ------------------------------------------------------------------

    def health_check(self) -> JSON:
        """The service's health: ``status`` (``ok`` or ``unavailable``) and its components.

        A 503 answer is returned too (it is a health report, not a failure of this call).
        """
        body: JSON = self.request("GET", "/health", ok=(503,))[1]
        return body

    def bloc_types(self) -> list[JSON]:
        """Every registered bloc type with its kind, summary and config schema."""
        result: list[JSON] = self._get("/bloc-types")
        return result

    # -- blocs -----------------------------------------------------------------------------

    def create_bloc(
        self,
        name: str,
        bloc_type: str,
        config: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> JSON:
        body = {"name": name, "bloc_type": bloc_type, "config": dict(config or {})}
        if description:
            body["description"] = description
        result: JSON = self._post("/blocs", body)
        return result

    def get_bloc(self, name: str) -> JSON:
        result: JSON = self._get(f"/blocs/{_quote(name)}")
        return result

    def list_blocs(self) -> list[JSON]:
        result: list[JSON] = self._get("/blocs")
        return result

    def update_bloc(
        self,
        name: str,
        *,
        bloc_type: str | None = None,
        config: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> JSON:
        """Change the fields given (the others stay as they are)."""
        body = _clean({"bloc_type": bloc_type, "config": config, "description": description})
        result: JSON = self._put(f"/blocs/{_quote(name)}", body)
        return result

    def delete_bloc(self, name: str) -> None:
        self._delete(f"/blocs/{_quote(name)}")

    # -- pipelines -------------------------------------------------------------------------

    def create_pipeline(
        self, name: str, stages: Sequence[Sequence[str]], description: str = ""
    ) -> JSON:
        body: JSON = {"name": name, "stages": [list(stage) for stage in stages]}
        if description:
            body["description"] = description
        result: JSON = self._post("/pipelines", body)
        return result

    def get_pipeline(self, name: str) -> JSON:
        result: JSON = self._get(f"/pipelines/{_quote(name)}")
        return result

    def list_pipelines(self) -> list[JSON]:
        result: list[JSON] = self._get("/pipelines")
        return result

    def update_pipeline(
        self,
        name: str,
        *,
        stages: Sequence[Sequence[str]] | None = None,
        description: str | None = None,
    ) -> JSON:
        body = _clean(
            {
                "stages": [list(s) for s in stages] if stages is not None else None,
                "description": description,
            }
        )
        result: JSON = self._put(f"/pipelines/{_quote(name)}", body)
        return result

    def delete_pipeline(self, name: str) -> None:
        self._delete(f"/pipelines/{_quote(name)}")

    def pipeline_graph(self, name: str) -> str:
        """The pipeline as a Mermaid flowchart (``graph TD``)."""
        body = self._get(f"/pipelines/{_quote(name)}/graph")
        return str(body["mermaid"]) if isinstance(body, dict) else str(body)

    def run_pipeline(self, name: str, variables: Mapping[str, Any] | None = None) -> JSON:
        """Start a run now; returns ``{"run_id": ..., ...}`` at once (the service runs it)."""
        result: JSON = self._post(
            f"/pipelines/{_quote(name)}/run", {"variables": dict(variables or {})}
        )
        return result

    # -- triggers ---------------------------------------------------------------------------

    def create_trigger(
        self,
        name: str,
        pipeline_name: str,
        cron_expression: str,
        timezone: str = "UTC",
        **fields: Any,
    ) -> JSON:
        """Create a cron trigger; extra ``fields`` (e.g. ``description``) are sent as given."""
        body = {
            "name": name,
            "pipeline_name": pipeline_name,
            "cron_expression": cron_expression,
            "timezone": timezone,
            **fields,
        }
        result: JSON = self._post("/triggers", body)
        return result

    def get_trigger(self, name: str) -> JSON:
        result: JSON = self._get(f"/triggers/{_quote(name)}")
        return result

    def list_triggers(self) -> list[JSON]:
        result: list[JSON] = self._get("/triggers")
        return result

    def update_trigger(self, name: str, **fields: Any) -> JSON:
        """Change the fields given, e.g. ``cron_expression="0 6 * * *"``."""
        result: JSON = self._put(f"/triggers/{_quote(name)}", _clean(fields))
        return result

    def delete_trigger(self, name: str) -> None:
        self._delete(f"/triggers/{_quote(name)}")

    def preview_trigger(self, name: str, n: int = 10) -> JSON:
        """The next ``n`` fire times of a trigger, in its timezone and in UTC."""
        result: JSON = self._get(f"/triggers/{_quote(name)}/preview", n=n)
        return result

    # -- schedulers --------------------------------------------------------------------------

    def create_scheduler(
        self,
        name: str,
        pipeline_name: str,
        trigger_name: str,
        enabled: bool = True,
        **fields: Any,
    ) -> JSON:
        """Create a scheduler; extra ``fields`` (policies, ``description``) are sent as given."""
        body = {
            "name": name,
            "pipeline_name": pipeline_name,
            "trigger_name": trigger_name,
            "enabled": enabled,
            **fields,
        }
        result: JSON = self._post("/schedulers", body)
        return result

    def get_scheduler(self, name: str) -> JSON:
        result: JSON = self._get(f"/schedulers/{_quote(name)}")
        return result

    def list_schedulers(self) -> list[JSON]:
        result: list[JSON] = self._get("/schedulers")
        return result

    def update_scheduler(self, name: str, **fields: Any) -> JSON:
        """Change the fields given, e.g. ``enabled=False``."""
        result: JSON = self._put(f"/schedulers/{_quote(name)}", _clean(fields))
        return result

    def delete_scheduler(self, name: str) -> None:
        self._delete(f"/schedulers/{_quote(name)}")

    # -- runs ------------------------------------------------------------------------------

    def list_runs(
        self,
        pipeline: str | None = None,
        scheduler: str | None = None,
        status: str | None = None,
        since: datetime | str | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        """Recorded runs, newest first, filtered by the arguments given."""
        result: list[JSON] = self._get(
            "/runs", pipeline=pipeline, scheduler=scheduler, status=status, since=since, limit=limit
        )
        return result

    def get_run(self, run_id: str) -> JSON:
        """One run with its bloc runs."""
        result: JSON = self._get(f"/runs/{_quote(run_id)}")
        return result

    def get_run_log(self, run_id: str) -> str:
        """The run's log text."""
        body = self._get(f"/runs/{_quote(run_id)}/log")
        return str(body.get("log") or "") if isinstance(body, dict) else str(body or "")

    def cancel_run(self, run_id: str) -> JSON:
        """Ask a running run to stop; returns the run as the API sees it."""
        result: JSON = self._post(f"/runs/{_quote(run_id)}/cancel", {})
        return result

    def wait_for_run(self, run_id: str, timeout: float = 60.0, interval: float = 0.2) -> JSON:
        """Poll :meth:`get_run` until the run has finished (its status is terminal: a
        ``queued`` or ``running`` run has not); raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.get("status") in TERMINAL_STATUSES:  # StrEnum members equal their text
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {run_id} is still {run.get('status')!r} after {timeout:g}s; "
                    "wait longer or cancel it with cancel_run()"
                )
            time.sleep(interval)


def _detail_text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI's request validation errors
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)
