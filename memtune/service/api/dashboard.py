"""A first dashboard: the studies and their progress, refreshed every two seconds.

One static page over the public API (the dashboard issue grows it); an API key, if the
server needs one, is kept in the browser's localStorage.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>memtune</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 2rem; color: #222; }
 table { border-collapse: collapse; width: 100%; } td, th { padding: .35rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }
 .bar { background: #eee; width: 160px; height: 10px; display: inline-block; } .bar > span { background: #3b7; height: 10px; display: block; }
 .status-failed { color: #b22; } .status-completed { color: #272; } small { color: #777; }
</style></head>
<body>
<h1>memtune</h1>
<p><small>Studies of memory-based optimizers against tuned baselines. API: <a href="/docs">/docs</a>.
 API key: <input id="key" size="30" placeholder="none needed in open mode"></small></p>
<table><thead><tr><th>id</th><th>name</th><th>task</th><th>status</th><th>progress</th><th>best so far per arm</th></tr></thead>
<tbody id="studies"><tr><td colspan="6">loading...</td></tr></tbody></table>
<p id="error" class="status-failed"></p>
<script>
const keyInput = document.getElementById("key");
keyInput.value = localStorage.getItem("memtune-key") || "";
keyInput.onchange = () => { localStorage.setItem("memtune-key", keyInput.value); refresh(); };
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
async function refresh() {
  const headers = keyInput.value ? {"X-API-Key": keyInput.value} : {};
  try {
    const response = await fetch("/studies?limit=50", {headers});
    if (!response.ok) { document.getElementById("error").textContent = (await response.json()).detail[0].msg; return; }
    document.getElementById("error").textContent = "";
    const body = document.getElementById("studies"); body.replaceChildren();
    for (const study of (await response.json()).data) {
      const row = document.createElement("tr");
      row.append(cell(study.id), cell(study.name), cell(study.task));
      const status = cell(study.status); status.className = "status-" + study.status; row.append(status);
      const progress = document.createElement("td"); const bar = document.createElement("span"); bar.className = "bar";
      const fill = document.createElement("span"); fill.style.width = (100 * study.trials_done / Math.max(study.trials_total, 1)) + "%";
      bar.append(fill); progress.append(bar, " " + study.trials_done + " / " + study.trials_total); row.append(progress);
      row.append(cell(study.progress.map(a => a.arm + (a.baseline ? "*" : "") + " " + (a.best === null ? "-" : Number(a.best).toPrecision(4))).join(", ")));
      body.append(row);
    }
    if (!body.children.length) body.innerHTML = "<tr><td colspan=6>no studies yet: POST /studies or memtune demo</td></tr>";
  } catch (e) { document.getElementById("error").textContent = "server unreachable"; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


@router.get("/", response_class=HTMLResponse)
def dashboard() -> str:
    return PAGE
