"""The dashboard: three pages over the public API, drawn in the browser with plotly.js.

* ``/``: the studies (filters, progress, best per arm) and a form that submits a new one;
* ``/view/studies/{id}``: one study: its verdict, learning curves, tuning-budget curves, each
  arm's search (history, lr sensitivity, parallel coordinates), beta per epoch, the trials;
* ``/view/compare?ids=1,2``: several studies' arms on one plot and the performance profile of
  their times to target.

The pages are static files (``static/``) and read only the public API (the aggregates come
from ``GET /studies/{id}/curves``), so nothing is fetched from the internet. Two builds of
plotly.js 3.7.0: the pages load the basic one (scatter and bar: every plot above the fold, a
quarter of the size, so a first visit parses 1.1 MB rather than 4.9 MB), and the study page
loads the full one from the installed ``plotly`` package only when its per-arm search plots
(parallel coordinates) scroll into view. The basic build is plotly's own npm bundle
``plotly.js-basic-dist-min`` 3.7.0, kept in ``static/`` with its MIT license (the ``plotly``
wheel ships only the full build); the two must stay the same version. An API key, when the server needs one, is typed once
and kept in the browser's localStorage.
"""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
# The assets change only with a release: let the browser keep them for a day.
CACHED = {"Cache-Control": "public, max-age=86400"}


@functools.cache
def _plotly_js() -> Path:
    import plotly  # only its bundled plotly.min.js is used

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html")


@router.get("/")
def studies_page() -> FileResponse:
    return _page("studies.html")


@router.get("/view/studies/{study_id}")
def study_page(study_id: int) -> FileResponse:
    return _page("study.html")  # the script reads the id from the address


@router.get("/view/compare")
def compare_page() -> FileResponse:
    return _page("compare.html")


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(_plotly_js(), media_type="text/javascript", headers=CACHED)


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    path = STATIC / name
    if name not in {"dashboard.js", "dashboard.css", "plotly-basic.min.js"} or not path.is_file():
        raise HTTPException(404, "no such file")
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(path, media_type=media, headers=CACHED)
