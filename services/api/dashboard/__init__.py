"""The web dashboard at ``/``: static pages whose scripts call the public read API.

The dashboard is a client of the API (STYLE.md): the server only hands out HTML, CSS, the
page scripts and plotly.js; every number on a page comes from the same ``/v1`` endpoints a
user's script calls, with the key the user entered (kept in the browser, never sent here).
So these routes need no key, read no database and are left out of the OpenAPI document.

Decisions:
- One page per read report that exists: compare models (``/``), ROI, deal explorer, funnel
  and SLA, leads (definition, scores and grades, MQLs), influence, reconciliation; the
  navigation lists exactly these (``PAGES``).
- Pages are ``templates/base.html`` around ``templates/<page>.html``, filled in with
  ``string.Template`` from fixed text (nothing from the request is ever substituted).
- plotly.js is the bundle the ``plotly`` wheel ships (``plotly/package_data/plotly.min.js``),
  served from here: no CDN, the dashboard works offline.
- A strict Content-Security-Policy: scripts only from this origin (no inline script), data
  only from this origin; inline styles are allowed because plotly.js sets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.core.http import Problem

router = APIRouter(include_in_schema=False)

_HERE = resources.files(__name__)
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Page:
    """A dashboard page: its path, template / script name and navigation title."""

    path: str
    name: str
    title: str


PAGES = (
    Page("/", "compare", "Compare models"),
    Page("/roi", "roi", "ROI"),
    Page("/deals", "deals", "Deal explorer"),
    Page("/funnel", "funnel", "Funnel and SLA"),
    Page("/leads", "leads", "Leads"),
    Page("/influence", "influence", "Influence"),
    Page("/reconciliation", "reconciliation", "Reconciliation"),
)


def _nav(current: Page) -> str:
    links = []
    for page in PAGES:
        mark = ' aria-current="page"' if page == current else ""
        links.append(f'<li><a href="{page.path}"{mark}>{page.title}</a></li>')
    return "\n".join(links)


@cache
def render_page(page: Page) -> str:
    """Return the HTML of ``page``: the shared layout around the page's own template."""
    base = Template((_HERE / "templates" / "base.html").read_text(encoding="utf-8"))
    main = (_HERE / "templates" / f"{page.name}.html").read_text(encoding="utf-8")
    return base.substitute(title=page.title, nav=_nav(page), main=main, script=page.name)


def _page_route(page: Page) -> None:
    async def serve() -> HTMLResponse:
        return HTMLResponse(render_page(page), headers=_HEADERS)

    router.add_api_route(page.path, serve, methods=["GET", "HEAD"], name=f"dashboard_{page.name}")


for _page in PAGES:
    _page_route(_page)


@cache
def _plotly() -> bytes:
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()


@cache
def _static_files() -> dict[str, bytes]:
    folder = _HERE / "static"
    files = {f.name: f.read_bytes() for f in folder.iterdir() if f.name[-3:] in (".js", "css")}
    return files


@router.get("/dashboard/static/{name}")
async def static(name: str) -> Response:
    """Serve one of the dashboard's own scripts or styles, or plotly.js."""
    if name == "plotly.min.js":
        body, cache_control = _plotly(), "public, max-age=86400"
    elif name in _static_files():
        body, cache_control = _static_files()[name], "no-cache"
    else:
        raise Problem(404, "Not Found", f"no dashboard file {name!r}")
    suffix = name[name.rfind(".") :]
    headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=_MEDIA[suffix], headers=headers)
