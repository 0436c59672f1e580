// memtune's dashboard: three pages over the public API (see memtune/service/api/dashboard.py).
// Plain JavaScript, no build step; plots through plotly.js, served by the API itself.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "memtune-key";
const ENDED = ["completed", "failed", "cancelled"];
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const LAYOUT = {
  margin: { l: 58, r: 16, t: 28, b: 46 },
  font: { family: "system-ui, sans-serif", size: 12 },
  legend: { orientation: "h", y: 1.12 },
  paper_bgcolor: "#fff",
  plot_bgcolor: "#fff",
  xaxis: { gridcolor: "#eceef1", zeroline: false },
  yaxis: { gridcolor: "#eceef1", zeroline: false },
};
const CONFIG = { displaylogo: false, responsive: true };
// Small panels put their legend under the axis title, where it covers no curve.
const LEGEND_BELOW = { legend: { orientation: "h", x: 0, y: -0.28, yanchor: "top" }, margin: { l: 58, r: 16, t: 16, b: 96 } };

// ---- talking to the API ---------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail ? body.detail : [];
    super(detail.length ? detail.map((d) => d.msg).join("; ") : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

async function api(path, options = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  const headers = { ...(options.headers || {}), ...(key ? { "X-API-Key": key } : {}) };
  const response = await fetch(path, { ...options, headers });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401) {
    notice(key ? `The API key was refused: ${new ApiError(401, body).message}.`
               : "This server needs an API key: type it at the top right (memtune apikey create).");
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function notice(text) { $("notice").textContent = text || ""; }

function setUpKey(onChange) {
  const input = $("api-key");
  input.value = localStorage.getItem(KEY_STORAGE) || "";
  input.addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, input.value.trim());
    notice("");
    onChange();
  });
}

// ---- numbers and small DOM helpers ----------------------------------------------------------

// The API writes non-finite numbers as the strings "nan", "inf", "-inf".
function num(value) {
  if (value === "nan") return NaN;
  if (value === "inf") return Infinity;
  if (value === "-inf") return -Infinity;
  return value;
}

function fmt(value, digits = 4) {
  value = num(value);
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "−∞";
  return Number(value.toPrecision(digits)).toString();
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// A timestamp in the browser's time zone, as "2026-11-23 19:24". Not toLocaleString: its first
// call loads the locale's data (measured: 45 ms of the study page's first render).
function when(iso) {
  const d = new Date(iso), two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

function cell(text, className = "") { return el("td", { class: className, text: String(text) }); }

function colorOf(arms, arm) { return COLORS[arms.indexOf(arm) % COLORS.length]; }

function armName(arm) { return arm.baseline ? `${arm.arm} (baseline)` : arm.arm; }

// plotly.js (its basic build) loads async, beside the page's first API reads: drawing waits
// for it, fetching does not (bench/dashboard_load.py: its parse and the server's first
// answers overlap instead of adding up).
const plotlyReady = new Promise((resolve, reject) => {
  const tag = document.getElementById("plotly");
  if (window.Plotly || !tag) { resolve(); return; } // loaded already, or a page without plots
  tag.addEventListener("load", () => resolve());
  tag.addEventListener("error", () => reject(new Error("plotly.js did not load")));
});

// Named moments of a page's first render, read by bench/dashboard_load.py (the breakdown of
// where the time goes) and visible in the browser's performance panel.
function mark(name) { if (!document.body.dataset.rendered) performance.mark(`memtune: ${name}`); }
const marked = (name) => (value) => { mark(name); return value; };

function plot(id, traces, layout = {}, config = {}) {
  const merged = { ...LAYOUT, ...layout, xaxis: { ...LAYOUT.xaxis, ...(layout.xaxis || {}) }, yaxis: { ...LAYOUT.yaxis, ...(layout.yaxis || {}) } };
  return Plotly.react(id, traces, merged, { ...CONFIG, ...config });
}

async function download(path, filename) {
  const key = localStorage.getItem(KEY_STORAGE);
  const response = await fetch(path, { headers: key ? { "X-API-Key": key } : {} });
  if (!response.ok) { notice(`export failed: HTTP ${response.status}`); return; }
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
}

// ---- studies page ---------------------------------------------------------------------------

async function studiesPage() {
  const refresh = () => listStudies().catch((e) => notice(e.message));
  setUpKey(() => { refresh(); loadCatalogue(); });
  $("filter-status").addEventListener("change", refresh);
  $("filter-task").addEventListener("change", refresh);
  $("compare-button").addEventListener("click", () => {
    const ids = [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
    if (ids.length < 2) { notice("Pick two or more studies to compare."); return; }
    location.href = `/view/compare?ids=${ids.join(",")}`;
  });
  $("new-study").addEventListener("submit", submitStudy);
  $("f-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) $("f-json").value = await file.text();
  });
  await loadCatalogue();
  await refresh();
  setInterval(refresh, 2000);
}

async function loadCatalogue() {
  try {
    const [tasks, optimizers] = await Promise.all([api("/tasks"), api("/optimizers")]);
    const taskSelect = $("f-task"), filter = $("filter-task");
    taskSelect.replaceChildren(...tasks.data.map((t) => el("option", { value: t.name, text: t.name })));
    taskSelect.value = "digits_mlp";
    filter.replaceChildren(el("option", { value: "", text: "any" }), ...tasks.data.map((t) => el("option", { value: t.name, text: t.name })));
    $("f-arms").replaceChildren(...optimizers.data.map((o, i) => el("span", {},
      el("input", { type: "checkbox", class: "arm", value: o.name, id: `arm-${o.name}`, ...(["sgd", "am_sgd"].includes(o.name) ? { checked: "" } : {}) }),
      el("label", { for: `arm-${o.name}`, style: "display:inline;font-weight:400" }, ` ${o.name} `),
      el("input", { type: "radio", name: "baseline", value: o.name, title: "the baseline", ...(o.name === "sgd" ? { checked: "" } : {}) }),
      el("small", { class: "muted", text: " baseline" }))));
  } catch (error) { notice(error.message); }
}

async function listStudies() {
  const query = new URLSearchParams({ limit: "100" });
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  if ($("filter-task").value) query.set("task", $("filter-task").value);
  const page = await api(`/studies?${query}`);
  const picked = new Set([...document.querySelectorAll("input.pick:checked")].map((box) => box.value));
  const rows = page.data.map((study) => {
    const box = el("input", { type: "checkbox", class: "pick", value: String(study.id) });
    box.checked = picked.has(String(study.id));
    const bar = el("span", { class: "bar" }, el("span", { style: `width:${(100 * study.trials_done) / Math.max(study.trials_total, 1)}%` }));
    const best = study.progress.map((a) => `${a.arm}${a.baseline ? "*" : ""} ${fmt(a.best)}`).join(", ");
    return el("tr", {}, el("td", {}, box), cell(study.id),
      el("td", {}, el("a", { href: `/view/studies/${study.id}`, text: study.name })), cell(study.task),
      el("td", { class: `status status-${study.status}`, text: study.status }),
      el("td", {}, bar, ` ${study.trials_done} / ${study.trials_total}`), cell(best),
      cell(when(study.created_at), "muted"));
  });
  $("studies").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "8", text: "no studies yet: submit one below, or run `memtune demo`" }))]));
  $("count").textContent = `${page.count} studies`;
}

function specFromForm() {
  const json = $("f-json").value.trim();
  if (json) return JSON.parse(json);
  const baseline = (document.querySelector("input[name=baseline]:checked") || {}).value;
  return {
    name: $("f-name").value,
    task: $("f-task").value,
    arms: [...document.querySelectorAll("input.arm:checked")].map((box) => ({ optimizer: box.value, baseline: box.value === baseline })),
    budget: { searches: Number($("f-searches").value), trials_per_search: Number($("f-trials").value), epochs: Number($("f-epochs").value) },
  };
}

// A 422's loc (["body", "arms", "1", "optimizer"]) names the field: its message goes next to
// the form control with the longest matching data-loc, and every message into the list.
function showFieldErrors(detail) {
  document.querySelectorAll(".field-error").forEach((node) => node.remove());
  $("f-errors").replaceChildren(...detail.map((d) => el("li", { text: `${d.loc.join(".")}: ${d.msg}` })));
  for (const d of detail) {
    const path = d.loc[0] === "body" ? d.loc.slice(1) : d.loc;
    for (let n = path.length; n >= 0; n--) {
      const target = document.querySelector(`[data-loc="${n ? path.slice(0, n).join(".") : "body"}"]`);
      if (target) { target.after(el("span", { class: "field-error", text: d.msg })); break; }
    }
  }
}

async function submitStudy(event) {
  event.preventDefault();
  $("f-result").textContent = "";
  let spec;
  try { spec = specFromForm(); } catch (error) { showFieldErrors([{ loc: ["body"], msg: `not JSON: ${error.message}` }]); return; }
  try {
    const study = await api("/studies", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(spec) });
    showFieldErrors([]);
    $("f-result").replaceChildren("queued as ", el("a", { href: `/view/studies/${study.id}`, text: `study ${study.id}` }));
    listStudies();
  } catch (error) {
    showFieldErrors(error.detail && error.detail.length ? error.detail : [{ loc: ["body"], msg: error.message }]);
  }
}

// ---- one study ------------------------------------------------------------------------------

async function studyPage() {
  const id = Number(location.pathname.split("/").pop());
  const state = { study: null, curves: null, verdict: null, trials: [], done: -1, x: "epoch", sort: ["id", 1], page: 0, count: 0, whole: false };
  const refresh = async () => {
    try {
      await updateStudy(id, state);
      notice("");
      if (!document.body.dataset.rendered) { // every part drawn once (bench/dashboard_load.py)
        // after the browser's next frame, so the page's layout and paint are counted too
        await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));
        document.body.dataset.rendered = String(Math.round(performance.now())); // ms since navigation
      }
    } catch (error) { notice(error.message); }
    if (!state.study || !ENDED.includes(state.study.status)) setTimeout(refresh, 2000);
  };
  setUpKey(refresh);
  document.querySelectorAll("input[name=x-axis]").forEach((radio) => radio.addEventListener("change", () => {
    state.x = radio.value;
    drawCurves(state);
  }));
  document.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () => {
    state.sort = [th.dataset.key, state.sort[0] === th.dataset.key ? -state.sort[1] : 1];
    state.page = 0;
    turnTrials(id, state);
  }));
  $("trials-prev").addEventListener("click", () => { state.page -= 1; turnTrials(id, state); });
  $("trials-next").addEventListener("click", () => { state.page += 1; turnTrials(id, state); });
  $("export-csv").addEventListener("click", () => download(`/studies/${id}/export?format=csv`, `study-${id}.csv`));
  $("export-json").addEventListener("click", () => download(`/studies/${id}/export?format=json`, `study-${id}.json`));
  $("cancel").addEventListener("click", async () => {
    try { await api(`/studies/${id}/cancel`, { method: "POST" }); } catch (error) { notice(error.message); }
  });
  await refresh();
}

// Polls the study (one small cached answer); curves and trials are fetched again only when a
// trial ended since the last look, the verdict once the study completed. The reads run at
// once, and each part is drawn as soon as its own data (and plotly.js) is in.
async function updateStudy(id, state) {
  plotlyReady.then(marked("plotly.js ready"));
  // On the first look the curves and the trials are due whatever the summary says: they are
  // asked for beside it, so the server answers while the browser is still compiling plotly.js
  const early = state.done === -1 ? { curves: api(`/studies/${id}/curves`), trials: readTrials(id, state) } : {};
  const study = await api(`/studies/${id}`);
  state.study = study;
  drawSummary(study);
  mark("summary");
  const changed = study.trials_done !== state.done;
  const verdictDue = study.status === "completed" && !state.verdict;
  const curvesRead = changed ? (early.curves || api(`/studies/${id}/curves`)).then(marked("curves read")) : null;
  const curvesDrawn = changed && Promise.all([curvesRead, plotlyReady]).then(([curves]) => {
    state.curves = curves;
    drawCurves(state);
    drawMemory(curves);
    mark("curves drawn");
  });
  const trialsDrawn = changed && (early.trials || readTrials(id, state)).then(() => {
    mark("trials read");
    drawTrials(state);
    mark("trials drawn");
  });
  const verdictDrawn = verdictDue && Promise.all([api(`/studies/${id}/verdict`), plotlyReady]).then(([verdict]) => {
    state.verdict = verdict;
    drawVerdict(verdict, study);
    drawTuning(verdict);
    mark("verdict drawn");
  });
  await Promise.all([curvesDrawn, trialsDrawn, verdictDrawn]);
  if (changed) {
    state.done = study.trials_done;
    drawWhenVisible("search", () => drawSearch(state.curves));
  }
}

// The per-arm search plots (3 per arm, parallel coordinates among them) sit below the fold:
// they are drawn when they scroll into view (measured: they cost most of a large study's
// render, and nobody sees them first).
function drawWhenVisible(id, draw) {
  const target = $(id);
  if (target._observer) target._observer.disconnect();
  target._observer = new IntersectionObserver((entries, observer) => {
    if (entries.some((entry) => entry.isIntersecting)) {
      observer.disconnect();
      fullPlotly().then(() => {
        draw();
        target.dataset.drawn = "1";
      }, (error) => notice(`could not load plotly.js: ${error}`));
    }
  }, { rootMargin: "200px" });
  target._observer.observe(target);
}

// The pages load plotly.js's basic build (scatter, bar); parallel coordinates need the full
// build, loaded once, when the first plot that needs it is about to be drawn. Both are
// plotly.js 3.7.0, so plots drawn by the first are updated by the second.
let fullPlotlyLoading = null;
function fullPlotly() {
  if (!fullPlotlyLoading) { // after the basic build, which would otherwise replace it
    fullPlotlyLoading = plotlyReady.then(() => new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/static/plotly.min.js";
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("/static/plotly.min.js did not load"));
      document.head.append(script);
    }));
  }
  return fullPlotlyLoading;
}

// Every trial, a page of 1,000 at a time; the pages the study's total says it has are read
// at once.
async function allTrials(id, expected) {
  const page = (offset) => api(`/studies/${id}/trials?limit=1000&offset=${offset}`);
  const offsets = Array.from({ length: Math.max(1, Math.ceil(expected / 1000)) }, (_, i) => i * 1000);
  const pages = await Promise.all(offsets.map(page));
  const trials = pages.flatMap((p) => p.data);
  // more trials than the plan (retries) are read one page after another
  for (let offset = offsets.length * 1000; trials.length < pages[0].count && offset < 10000; offset += 1000) {
    const more = await page(offset);
    if (!more.data.length) break;
    trials.push(...more.data);
  }
  return trials;
}

function drawSummary(study) {
  document.title = `memtune: ${study.name}`;
  $("title").textContent = `${study.name} · ${study.task}`;
  const bar = el("span", { class: "bar" }, el("span", { style: `width:${(100 * study.trials_done) / Math.max(study.trials_total, 1)}%` }));
  $("summary").replaceChildren(
    el("span", { class: `status status-${study.status}`, text: study.status }), bar,
    el("span", { text: `${study.trials_done} / ${study.trials_total} trials` }),
    el("span", { class: "muted", text: `selected on ${study.metric} (${study.mode}) · created ${when(study.created_at)}` }),
    ...(study.error ? [el("span", { class: "error", text: study.error })] : []));
  $("cancel").hidden = ENDED.includes(study.status);
  const warnings = [...study.warnings];
  $("warnings").replaceChildren(...warnings.map((w) => el("li", { text: w })));
}

function drawVerdict(verdict, study) {
  const comparisons = Object.fromEntries(verdict.comparisons.map((c) => [c.arm, c]));
  const metric = verdict.headline_metric || verdict.metric;
  const over = verdict.scope === "optimizer" ? "over searches" : "over seeds";
  const head = ["arm", `${metric} mean [95% CI ${over}]`, "Δ vs baseline [95% CI]", "p", "p (Holm)", "verdict",
    "time to target (s)", "step (ms)", "state (MB)", "grad evals / step", "diverged"];
  const rows = verdict.arms.map((arm) => {
    const c = comparisons[arm.arm];
    const interval = arm.ci_low === null ? "" : ` [${fmt(arm.ci_low)}, ${fmt(arm.ci_high)}]`;
    const difference = c ? `${fmt(c.difference, 3)}${c.ci_low === null ? "" : ` [${fmt(c.ci_low, 3)}, ${fmt(c.ci_high, 3)}]`}` : "baseline";
    const label = c ? el("td", { class: `label-${c.outcome.replaceAll(" ", "-")}`, text: c.outcome, title: [c.statement, c.reason].filter(Boolean).join("\n") }) : cell("–");
    return el("tr", { "data-arm": arm.arm },
      cell(arm.baseline ? `${arm.arm} (baseline)` : arm.arm), cell(`${fmt(arm.mean)}${interval}`), cell(difference),
      cell(c ? fmt(c.p_value, 3) : "–", "num"), cell(c ? fmt(c.p_adjusted, 3) : "–", "num"), label,
      cell(fmt(arm.time_to_target_s, 3), "num"),
      cell(arm.mean_step_time_s === null ? "–" : `${fmt(num(arm.mean_step_time_s) * 1e3, 3)} ${arm.step_impl || ""}`, "num"),
      cell(arm.state_bytes === null ? "–" : fmt(num(arm.state_bytes) / 2 ** 20, 3), "num"),
      cell(fmt(arm.gradient_evaluations_per_step, 3), "num"),
      cell(`${arm.search_diverged} search, ${arm.seeds_diverged} seeds`, "num"));
  });
  const statements = verdict.comparisons.map((c) => el("li", { text: c.reason ? `${c.statement} (${c.reason})` : c.statement || `${c.arm}: ${c.outcome}` }));
  $("verdict").replaceChildren(
    el("p", { id: "budget", text: `Budget: ${verdict.budget || "–"}. ${verdict.scope === "optimizer" ? "Each arm's interval and test are over its search scores (each point below is one search: its config's mean over the seeds)." : "One search per arm: the configs are compared over seeds, not the optimizers."}` }),
    el("table", { id: "verdict-table" },
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))), el("tbody", {}, ...rows)),
    el("ul", { id: "statements" }, ...statements),
    el("p", { class: "muted", text: `${verdict.held_out ? "held-out test split" : "validation split"}; seeds ${(verdict.seeds || []).join(", ") || "–"} re-run after each search; target ${fmt(verdict.target)} (${verdict.target_source || "–"})` }),
    el("div", { id: "scores", class: "plot small" }));
  $("rules").replaceChildren(...verdict.rules.map((rule) => el("li", { text: rule })));
  $("warnings").replaceChildren(...[...study.warnings, ...verdict.warnings].map((w) => el("li", { text: w })));
  drawScores(verdict);
}

// Each arm's search scores as points beside its mean and interval: the evidence the verdict's
// test reads. A search that diverged (scored the worst value) is an ✕ at the plot's left edge.
function drawScores(verdict) {
  const labels = verdict.arms.map((a) => a.arm);
  const finite = verdict.arms.flatMap((a) => a.searches.map((s) => num(s.score))).filter(Number.isFinite);
  const low = finite.length ? Math.min(...finite) : 0, high = finite.length ? Math.max(...finite) : 1;
  const edge = low - 0.08 * Math.max(high - low, 1e-9);
  const traces = [];
  for (const arm of [...verdict.arms].reverse()) {
    const color = colorOf(labels, arm.arm);
    const counted = arm.searches.filter((s) => !s.set_aside && s.score !== null);
    const scores = counted.map((s) => num(s.score));
    const ok = scores.filter(Number.isFinite), bad = scores.filter((v) => !Number.isFinite(v));
    traces.push({ x: ok, y: ok.map(() => armName(arm)), mode: "markers", type: "scatter", name: armName(arm), meta: "search",
      marker: { color, size: 9, opacity: 0.75 }, hovertemplate: "%{x:.4g}<extra>one search</extra>" });
    if (bad.length) traces.push({ x: bad.map(() => edge), y: bad.map(() => armName(arm)), mode: "markers", name: `${arm.arm} diverged`, meta: "diverged",
      marker: { color: "#cf222e", symbol: "x", size: 10 }, hovertemplate: "diverged<extra></extra>" });
    if (arm.mean !== null && arm.ci_low !== null) {
      const mean = num(arm.mean);
      traces.push({ x: [mean], y: [armName(arm)], mode: "markers", name: `${arm.arm} mean`, meta: "interval",
        marker: { color: "#57606a", symbol: "line-ns-open", size: 18 },
        error_x: { type: "data", symmetric: false, array: [num(arm.ci_high) - mean], arrayminus: [mean - num(arm.ci_low)], color: "#8c959f", thickness: 1, width: 6 },
        hovertemplate: "mean %{x:.4g}<extra>95% interval</extra>" });
    }
  }
  plot("scores", traces, {
    title: { text: "where did each arm's searches land? (one point per search; in grey the mean and its 95% interval)", font: { size: 12 }, x: 0, xanchor: "left" },
    showlegend: false, margin: { l: 130, r: 16, t: 34, b: 46 },
    xaxis: { title: { text: `${verdict.headline_metric || verdict.metric}: a search's config, mean over seeds` } },
  });
}

function drawCurves(state) {
  const curves = state.curves;
  if (!curves) return;
  const labels = curves.arms.map((a) => a.arm);
  const onTime = state.x === "time";
  const traces = [];
  // An arm's sampled search curves are one trace, broken by nulls between trials: plotly's
  // cost grows with the number of traces far more than with their points.
  for (const arm of curves.arms) {
    if (!arm.search_curves.length) continue;
    const x = [], y = [];
    for (const trial of arm.search_curves) {
      x.push(...(onTime ? trial.time_s.map(num) : trial.values.map((_, e) => e + 1)), null);
      y.push(...trial.values.map(num), null);
    }
    traces.push({ x, y, mode: "lines", connectgaps: false, line: { color: colorOf(labels, arm.arm), width: 1 },
      opacity: 0.18, hoverinfo: "skip", name: `${arm.arm} search (${arm.search_curves.length} trials)`,
      legendgroup: arm.arm, showlegend: false, meta: "search" });
  }
  for (const arm of curves.arms) {
    if (!arm.epochs.length) continue;
    const color = colorOf(labels, arm.arm);
    const x = onTime ? arm.time_s.map(num) : arm.epochs;
    const low = arm.ci_low.map(num), high = arm.ci_high.map(num);
    if (low.some((v) => v !== null)) {
      traces.push({ x: [...x, ...[...x].reverse()], y: [...high, ...[...low].reverse()], fill: "toself",
        fillcolor: color, opacity: 0.2, line: { width: 0 }, hoverinfo: "skip", legendgroup: arm.arm,
        showlegend: false, name: `${arm.arm} 95% CI`, meta: "band" });
    }
    traces.push({ x, y: arm.mean.map(num), mode: "lines", name: `${armName(arm)} · ${arm.seed_runs} seeds`,
      line: { color, width: 2.5, dash: arm.baseline ? "dash" : "solid" }, marker: { size: 5 },
      legendgroup: arm.arm, meta: "mean" });
  }
  plot("curves", traces, { xaxis: { title: { text: onTime ? "training time (s)" : "epoch" } }, yaxis: { title: { text: curves.metric } } });
}

function drawTuning(verdict) {
  const labels = verdict.arms.map((a) => a.arm);
  const traces = verdict.arms.filter((a) => a.tuning_curve.length).map((arm) => ({
    x: arm.tuning_curve.map((_, i) => i + 1), y: arm.tuning_curve.map(num), mode: "lines",
    name: `${armName(arm)} · ${arm.n_hyperparameters} hyperparameters`,
    line: { color: colorOf(labels, arm.arm), width: 2.5, dash: arm.baseline ? "dash" : "solid" },
  }));
  plot("tuning", traces, { ...LEGEND_BELOW, xaxis: { title: { text: "search trials (all of an arm's searches)" } }, yaxis: { title: { text: `expected best ${verdict.metric}` } } });
}

function drawMemory(curves) {
  const labels = curves.arms.map((a) => a.arm);
  const traces = curves.arms.filter((a) => a.mean_beta).map((arm) => ({
    x: arm.epochs, y: arm.mean_beta.map(num), mode: "lines+markers", name: `${arm.arm}: mean beta`,
    line: { color: colorOf(labels, arm.arm), width: 2.5 },
  }));
  for (const arm of curves.arms) {
    const sized = arm.search.filter((t) => t.config.topc !== undefined);
    if (!sized.length) continue;
    traces.push({ x: sized.map((t) => t.config.topc), y: sized.map((t) => num(t.final)), mode: "markers",
      name: `${arm.arm}: final vs buffer size C`, xaxis: "x2", yaxis: "y2",
      marker: { color: colorOf(labels, arm.arm), size: 8, symbol: "diamond" } });
  }
  const both = traces.some((t) => t.xaxis === "x2") && traces.some((t) => t.xaxis !== "x2");
  plot("memory", traces, {
    ...LEGEND_BELOW,
    grid: both ? { rows: 1, columns: 2, pattern: "independent" } : undefined,
    xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: "beta" } },
    xaxis2: { title: { text: "buffer size C" }, gridcolor: "#eceef1" }, yaxis2: { title: { text: curves.metric }, gridcolor: "#eceef1" },
  });
}

function drawSearch(curves) {
  const container = $("search");
  const labels = curves.arms.map((a) => a.arm);
  const better = curves.mode === "min" ? Math.min : Math.max;
  container.replaceChildren(...curves.arms.map((arm) => el("div", {},
    el("h2", { text: armName(arm) }), el("div", { class: "row3" },
      el("div", { id: `history-${arm.arm}`, class: "plot small" }),
      el("div", { id: `lr-${arm.arm}`, class: "plot small" }),
      el("div", { id: `coords-${arm.arm}`, class: "plot small" })))));
  for (const arm of curves.arms) {
    const color = colorOf(labels, arm.arm);
    const finals = arm.search.map((t) => num(t.final));
    const finite = finals.filter((v) => Number.isFinite(v));
    const worst = finite.length ? (curves.mode === "min" ? Math.max(...finite) : Math.min(...finite)) : 0;
    let best = null;
    const bestSoFar = finals.map((v) => (best = Number.isFinite(v) ? (best === null ? v : better(best, v)) : best));
    const numbers = arm.search.map((t) => t.number);
    plot(`history-${arm.arm}`, [
      { x: numbers, y: finals.map((v) => (Number.isFinite(v) ? v : null)), mode: "markers", name: "trial", marker: { color, opacity: 0.5 } },
      { x: numbers, y: bestSoFar, mode: "lines", line: { shape: "hv", color, width: 2.5 }, name: "best so far" },
    ], { title: { text: "optimization history", font: { size: 12 } }, showlegend: false, xaxis: { title: { text: "trial" } }, yaxis: { title: { text: curves.metric } } });
    const ok = arm.search.filter((t) => Number.isFinite(num(t.final)) && t.config.lr !== undefined);
    const bad = arm.search.filter((t) => !Number.isFinite(num(t.final)) && t.config.lr !== undefined);
    plot(`lr-${arm.arm}`, [
      { x: ok.map((t) => t.config.lr), y: ok.map((t) => num(t.final)), mode: "markers", name: "final", marker: { color, size: 7 } },
      { x: bad.map((t) => t.config.lr), y: bad.map(() => worst), mode: "markers", name: "diverged", meta: "diverged", marker: { color: "#cf222e", symbol: "x", size: 9 } },
    ], { title: { text: "lr sensitivity", font: { size: 12 } }, showlegend: false, xaxis: { type: "log", exponentformat: "e", title: { text: "learning rate" } }, yaxis: { title: { text: curves.metric } } });
    const keys = Object.keys(arm.search[0] ? arm.search[0].config : {}).filter((k) =>
      arm.search.every((t) => typeof t.config[k] === "number") && new Set(arm.search.map((t) => t.config[k])).size > 1);
    const value = (v) => (Number.isFinite(v) ? v : worst);
    const dimensions = keys.map((k) => (k === "lr" || k.endsWith("lr")
      ? { label: `log10 ${k}`, values: arm.search.map((t) => Math.log10(t.config[k])) }
      : { label: k, values: arm.search.map((t) => t.config[k]) }));
    dimensions.push({ label: curves.metric, values: finals.map(value) });
    // The axis labels of parallel coordinates sit above the plot, where plotly's toolbar and a
    // centred title would cover them: a left title, the labels below it, no toolbar.
    plot(`coords-${arm.arm}`, [{ type: "parcoords", dimensions, labelangle: 0, labelside: "top", line: { color: finals.map(value), colorscale: "Viridis", showscale: false } }],
      { title: { text: "searched hyperparameters", font: { size: 12 }, x: 0, xanchor: "left", y: 0.98 }, margin: { l: 50, r: 40, t: 78, b: 20 } },
      { displayModeBar: false });
  }
}

// The table shows one page of the sorted trials: a 1,000-row table cost more layout than
// every plot above it together (bench/dashboard_load.py), and nobody reads 1,000 rows at once.
const TRIALS_PAGE = 50;

// The table's rows. Its first page in the API's own order (by id) is one small read; another
// page or order needs every trial, read when the reader turns there (and again while the study
// runs), so a first look at a large study reads 50 trials, not 1,000.
async function readTrials(id, state) {
  state.whole = state.page > 0 || state.sort[0] !== "id" || state.sort[1] !== 1;
  if (state.whole) {
    state.trials = await allTrials(id, state.study.trials_total);
    state.count = state.trials.length;
  } else {
    const first = await api(`/studies/${id}/trials?limit=${TRIALS_PAGE}`);
    [state.trials, state.count] = [first.data, first.count];
  }
}

async function turnTrials(id, state) {
  try {
    if (!state.whole) await readTrials(id, state);
    drawTrials(state);
  } catch (error) { notice(error.message); }
}

function drawTrials(state) {
  const [key, direction] = state.sort;
  const sortable = (v) => (typeof num(v) === "number" ? num(v) : String(v));
  const sorted = [...state.trials].sort((a, b) => {
    const x = sortable(a[key]), y = sortable(b[key]);
    return (x > y ? 1 : x < y ? -1 : 0) * direction;
  });
  const pages = Math.max(1, Math.ceil(state.count / TRIALS_PAGE));
  state.page = Math.min(state.page, pages - 1);
  const first = state.whole ? state.page * TRIALS_PAGE : 0; // else the trials are that page
  const rows = sorted.slice(first, first + TRIALS_PAGE).map((trial) => {
    const row = el("tr", { "data-trial": String(trial.id), style: "cursor:pointer" }, cell(trial.id), cell(trial.arm), cell(trial.phase),
      el("td", { class: `status status-${trial.state === "completed" ? "completed" : trial.state === "running" ? "running" : "failed"}`, text: trial.state }),
      el("td", { class: "mono", text: Object.entries(trial.config).map(([k, v]) => `${k}=${fmt(v, 3)}`).join(" ") }),
      cell(fmt(trial.final_metric), "num"), cell(fmt(trial.best_metric), "num"));
    row.addEventListener("click", () => showTrial(trial.id, state.study.metric));
    return row;
  });
  $("trials").replaceChildren(...rows);
  const shown = state.page * TRIALS_PAGE;
  $("trials-shown").textContent = state.count
    ? `trials ${shown + 1}–${shown + rows.length} of ${state.count}` : "no trials yet";
  $("trials-prev").disabled = state.page === 0;
  $("trials-next").disabled = state.page >= pages - 1;
}

async function showTrial(id, metric) {
  const trial = await api(`/trials/${id}`);
  const detail = $("trial-detail");
  detail.replaceChildren(el("h2", { text: `trial ${id}: ${trial.arm}, ${trial.phase}, seed ${trial.seed}, ${trial.state}` }),
    ...(trial.traceback ? [el("pre", { class: "mono error", text: trial.traceback })] : []),
    el("div", { id: "trial-plot", class: "plot small" }));
  const epochs = trial.history.map((h) => h.epoch);
  plot("trial-plot", [
    { x: epochs, y: trial.history.map((h) => num(h.values[metric])), name: metric, mode: "lines+markers" },
    { x: epochs, y: trial.history.map((h) => num(h.values.train_loss)), name: "train_loss", yaxis: "y2", mode: "lines", line: { dash: "dot" } },
  ], { xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: metric } }, yaxis2: { title: { text: "train loss" }, overlaying: "y", side: "right" } });
  detail.scrollIntoView({ behavior: "smooth" });
}

// ---- compare --------------------------------------------------------------------------------

async function comparePage() {
  setUpKey(() => location.reload());
  const ids = (new URLSearchParams(location.search).get("ids") || "").split(",").filter(Boolean).map(Number);
  if (ids.length < 1) { notice("Name the studies: /view/compare?ids=1,2"); return; }
  try {
    const studies = await Promise.all(ids.map(async (id) => {
      const [study, curves] = await Promise.all([api(`/studies/${id}`), api(`/studies/${id}/curves?search_curves=0`)]);
      const verdict = study.status === "completed" ? await api(`/studies/${id}/verdict`) : null;
      return { id, study, curves, verdict };
    }));
    await plotlyReady;
    const tasks = new Set(studies.map((s) => s.study.task));
    if (tasks.size > 1) notice(`These studies ran different tasks (${[...tasks].join(", ")}): their curves share an axis only if their metric does.`);
    drawCompareCurves(studies);
    drawProfile(studies);
  } catch (error) { notice(error.message); }
}

function drawCompareCurves(studies) {
  const optimizers = [...new Set(studies.flatMap((s) => s.curves.arms.map((a) => a.optimizer)))];
  const dashes = ["solid", "dash", "dot", "dashdot"];
  const traces = studies.flatMap((s, i) => s.curves.arms.filter((a) => a.epochs.length).map((arm) => ({
    x: arm.epochs, y: arm.mean.map(num), mode: "lines", name: `#${s.id} ${s.study.name}: ${armName(arm)}`,
    line: { color: COLORS[optimizers.indexOf(arm.optimizer) % COLORS.length], dash: dashes[i % dashes.length], width: 2.2 },
  })));
  plot("compare-curves", traces, { legend: { orientation: "v", x: 1.02, y: 1 }, margin: { l: 58, r: 10, t: 20, b: 46 }, xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: studies[0].curves.metric } } });
}

// A performance profile (Dolan & Moré, 2002) over the selected studies (the workloads): per
// arm label, the fraction of workloads it reached the target within tau x the fastest arm's
// time. Only arms that ran in every completed study are profiled, and each study's ratios are
// recomputed over them (an arm left out cannot be a study's fastest); a miss is infinite.
const TAU_MAX = 4;

function profileOf(studies) {
  const done = studies.filter((s) => s.verdict);
  const labels = done.length ? done[0].verdict.arms.map((a) => a.arm) : [];
  const profiled = labels.filter((label) => done.every((s) => s.verdict.arms.some((a) => a.arm === label)));
  const left = [...new Set(done.flatMap((s) => s.verdict.arms.map((a) => a.arm)))].filter((l) => !profiled.includes(l));
  const ratios = Object.fromEntries(profiled.map((label) => [label, {}]));
  for (const s of done) {
    const times = Object.fromEntries(s.verdict.arms.filter((a) => profiled.includes(a.arm))
      .map((a) => [a.arm, a.time_to_target_s === null ? Infinity : num(a.time_to_target_s)]));
    const fastest = Math.min(...Object.values(times));
    for (const label of profiled) ratios[label][s.id] = Number.isFinite(fastest) && fastest > 0 ? times[label] / fastest : Infinity;
  }
  return { done, profiled, left, ratios };
}

function drawProfile(studies) {
  const { done, profiled, left, ratios } = profileOf(studies);
  const taus = Array.from({ length: 121 }, (_, i) => 1 + ((TAU_MAX - 1) * i) / 120);
  plot("profile", profiled.map((label, i) => ({
    x: taus, y: taus.map((t) => done.filter((s) => ratios[label][s.id] <= t).length / Math.max(done.length, 1)),
    mode: "lines", line: { shape: "hv", width: 2.5, color: COLORS[i % COLORS.length] }, name: label,
  })), { xaxis: { title: { text: "τ (time to target / the fastest profiled arm's, per study)" }, range: [1, TAU_MAX] }, yaxis: { title: { text: "fraction of studies within τ" }, range: [0, 1.05] } });
  $("ratios").replaceChildren(el("table", {},
    el("thead", {}, el("tr", {}, el("th", { text: "arm" }), ...done.map((s) => el("th", { class: "num", text: `#${s.id} ${s.study.name} (${s.study.task})` })))),
    el("tbody", {}, ...profiled.map((label) => el("tr", {}, cell(label), ...done.map((s) => cell(fmt(ratios[label][s.id], 3), "num")))))),
    el("p", { class: "muted", text: `∞: the target was never reached (misses count as never).${left.length ? ` Not profiled (not in every study): ${left.join(", ")}.` : ""}` }));
}

// ---- start ----------------------------------------------------------------------------------

const PAGES = { studies: studiesPage, study: studyPage, compare: comparePage };
document.addEventListener("DOMContentLoaded", () => PAGES[document.body.dataset.page]());
