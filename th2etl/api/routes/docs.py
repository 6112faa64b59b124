"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from assets shipped in the wheel: no CDN.

The assets are copies of the npm packages ``swagger-ui-dist`` (Apache-2.0) and ``redoc`` (MIT),
with their licences, under ``th2etl/api/ui/static/vendor/``; the service serves them at
``/ui/static/vendor/``. The pages' Content-Security-Policy allows this origin only, so they
work offline and nothing they ask for leaves the machine (ReDoc's sidebar always asks for
Redocly's logo from a CDN: the policy refuses it, and the page does without).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_URL", "router"]

STATIC_URL = "/ui/static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
_VENDOR = f"{STATIC_URL}/vendor"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="th2etl API",
        swagger_js_url=f"{_VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{_VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_URL}/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )
    page.headers.update(_HEADERS)
    return page


@router.get("/redoc")
def redoc() -> HTMLResponse:
    page = get_redoc_html(
        openapi_url="/openapi.json",
        title="th2etl API",
        redoc_js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC_URL}/favicon.svg",
        with_google_fonts=False,
    )
    page.headers.update(_HEADERS)
    return page
