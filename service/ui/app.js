// The adaprune web page: lists the tenant's jobs and follows one of them.
// Every piece of text that comes from the API is inserted as text (textContent, text nodes,
// setAttribute), never parsed as HTML, so a job's name, error or event cannot become markup.
"use strict";

(() => {
  const KEY_STORE = "adaprune.apiKey";
  const POLL_MS = 2000;
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const STATES = new Set(["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]);
  const LEVELS = new Set(["info", "warning", "error"]);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  const view = {
    openId: null,
    openJob: null,
    events: [],
    eventsAfter: 0,
    eventsMissing: false,
    artifactsLoaded: false,
    timer: null,
  };

  // ---- small DOM helpers (text only) ----------------------------------------------------

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const fixed = (value, digits = 3) =>
    typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
  const percent = (value) =>
    typeof value === "number" && Number.isFinite(value) ? `${Math.round(value * 100)} %` : "–";
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  // Today's times as hh:mm, older ones as a date.
  function shortWhen(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return date.toDateString() === new Date().toDateString()
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString();
  }
  const stateClass = (state) => `state state-${STATES.has(state) ? state : "unknown"}`;

  function setStatus(text, isError = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

  // ---- the key: from the URL fragment or the form, kept in sessionStorage -------------------

  function readFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const key = params.get("key");
    if (key) {
      sessionStorage.setItem(KEY_STORE, key);
      params.delete("key");
    }
    const rest = params.toString();
    // The key leaves the address bar (and the history entry) at once.
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    return params.get("job");
  }

  const apiKey = () => sessionStorage.getItem(KEY_STORE);

  class ApiFailure extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function request(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${apiKey()}`, Accept: "application/json" },
      cache: "no-store",
    });
    if (response.ok) return response;
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = String(body.error.message);
    } catch (_) {
      // not JSON: the status line says enough
    }
    throw new ApiFailure(response.status, message);
  }

  const getJson = async (path) => (await request(path)).json();

  // ---- the jobs table ------------------------------------------------------------------

  function progressCell(job) {
    const bar = el("progress");
    bar.max = 1;
    bar.value = typeof job.progress === "number" ? job.progress : 0;
    return el("td", "progress", bar, " ", percent(job.progress));
  }

  function jobRow(job) {
    const row = el("tr");
    row.dataset.jobId = job.id;
    row.dataset.state = job.state;
    if (job.id === view.openId) row.classList.add("selected");
    const open = el("button", "link", job.name);
    open.type = "button";
    open.addEventListener("click", () => openJob(job.id));
    const badge = el("span", stateClass(job.state), job.state);
    if (job.phase && !FINAL.has(job.state)) badge.title = `phase: ${job.phase}`;
    const metric = el("td", "metric", fixed(job.metric));
    metric.title = `dense ${fixed(job.dense_metric)}`;
    row.append(
      el("td", "name", open),
      el("td", null, badge),
      progressCell(job),
      el("td", "sparsity", `${fixed(job.target_sparsity)} / ${fixed(job.sparsity)}`),
      metric,
      el("td", "created", shortWhen(job.created_at)),
    );
    return row;
  }

  async function refreshJobs() {
    const page = await getJson("/v1/jobs?limit=100");
    const rows = page.items.map(jobRow);
    $("jobs").tBodies[0].replaceChildren(...rows);
    $("jobs-empty").hidden = rows.length > 0;
  }

  // ---- one job: summary, curve, steps, events, artifacts ---------------------------------

  function summaryItem(term, value) {
    return [el("dt", null, term), el("dd", null, value)];
  }

  function renderJob(job) {
    $("job-title").textContent = job.name;
    const badge = $("job-state");
    badge.className = stateClass(job.state);
    badge.textContent = job.phase && !FINAL.has(job.state) ? `${job.state} · ${job.phase}` : job.state;
    $("job").dataset.state = job.state;
    const prune = (job.spec && job.spec.prune) || {};
    $("job-summary").replaceChildren(
      ...summaryItem("id", job.id),
      ...summaryItem("progress", percent(job.progress)),
      ...summaryItem("sparsity asked / reached", `${fixed(job.target_sparsity)} / ${fixed(job.sparsity)}`),
      ...summaryItem("metric (dense)", `${fixed(job.metric)} (${fixed(job.dense_metric)})`),
      ...summaryItem("max metric drop", fixed(prune.max_metric_drop)),
      ...summaryItem("method", [prune.criterion, prune.granularity, prune.scope].filter(Boolean).join(", ") || "–"),
      ...summaryItem("attempt", job.attempt),
      ...summaryItem("created", when(job.created_at)),
      ...summaryItem("finished", when(job.finished_at)),
    );
    const error = $("job-error");
    error.hidden = !job.error;
    error.textContent = job.error ? `${job.error.code}: ${job.error.message || ""}` : "";
  }

  function renderSteps(steps) {
    const rows = steps.map((step) => {
      const row = el(
        "tr",
        step.decision === "rollback" ? "rollback" : null,
        el("td", null, step.step),
        el("td", null, fixed(step.target_sparsity)),
        el("td", null, fixed(step.sparsity)),
        el("td", null, fixed(step.metric)),
        el("td", null, fixed(step.loss)),
        el("td", null, step.decision),
        el("td", null, fixed(step.seconds, 1)),
      );
      row.dataset.step = step.step;
      return row;
    });
    $("steps").tBodies[0].replaceChildren(...rows);
  }

  // The curve: steps on x; the metric on the left axis (with the tolerance band under the dense
  // metric), the sparsity on the right axis from 0 to 1 (with the target as a dotted line).
  function renderCurve(job, steps) {
    const chart = $("curve");
    chart.dataset.points = String(steps.length);
    $("curve-empty").hidden = steps.length > 0;
    chart.replaceChildren();
    if (steps.length === 0) return;
    const width = 720, height = 320, left = 56, right = 56, top = 16, bottom = 40;
    const plotW = width - left - right, plotH = height - top - bottom;
    const xs = steps.map((s) => s.step);
    const xMin = Math.min(...xs), xMax = Math.max(...xs, xMin + 1);
    const x = (step) => left + ((step - xMin) / (xMax - xMin)) * plotW;
    const drop = Number((job.spec && job.spec.prune && job.spec.prune.max_metric_drop) || 0);
    const dense = typeof job.dense_metric === "number" ? job.dense_metric : null;
    const metrics = steps.map((s) => s.metric).filter(Number.isFinite);
    if (dense !== null) metrics.push(dense, dense - drop);
    let mMin = Math.min(...metrics), mMax = Math.max(...metrics);
    const pad = Math.max((mMax - mMin) * 0.1, 0.005);
    mMin -= pad;
    mMax += pad;
    const yMetric = (m) => top + (1 - (m - mMin) / (mMax - mMin)) * plotH;
    const ySparsity = (s) => top + (1 - s) * plotH;

    chart.append(svg("rect", { class: "frame", x: left, y: top, width: plotW, height: plotH }));
    for (let i = 0; i <= 4; i += 1) {
      const m = mMin + ((mMax - mMin) * i) / 4;
      const y = yMetric(m);
      chart.append(
        svg("line", { class: "grid", x1: left, x2: left + plotW, y1: y, y2: y }),
        svg("text", { class: "tick metric", x: left - 6, y: y + 4, "text-anchor": "end" }, m.toFixed(3)),
        svg("text", { class: "tick sparsity", x: left + plotW + 6, y: ySparsity(i / 4) + 4 }, (i / 4).toFixed(2)),
      );
    }
    const stride = Math.max(1, Math.ceil((xMax - xMin) / 12));
    for (let step = xMin; step <= xMax; step += stride) {
      chart.append(svg("text", { class: "tick", x: x(step), y: top + plotH + 16, "text-anchor": "middle" }, step));
    }
    chart.append(
      svg("text", { class: "axis-label", x: left + plotW / 2, y: height - 6, "text-anchor": "middle" }, "step"),
      svg("text", { class: "axis-label metric", x: 12, y: top + plotH / 2, transform: `rotate(-90 12 ${top + plotH / 2})`, "text-anchor": "middle" }, "validation metric"),
      svg("text", { class: "axis-label sparsity", x: width - 10, y: top + plotH / 2, transform: `rotate(90 ${width - 10} ${top + plotH / 2})`, "text-anchor": "middle" }, "sparsity"),
    );
    if (dense !== null) {
      const bandTop = yMetric(dense), bandBottom = yMetric(dense - drop);
      chart.append(
        svg("rect", { id: "tolerance-band", class: "band", x: left, y: bandTop, width: plotW, height: Math.max(bandBottom - bandTop, 1) }),
        svg("line", { class: "dense", x1: left, x2: left + plotW, y1: bandTop, y2: bandTop }),
      );
    }
    if (typeof job.target_sparsity === "number") {
      const y = ySparsity(job.target_sparsity);
      chart.append(svg("line", { id: "target-line", class: "target", x1: left, x2: left + plotW, y1: y, y2: y }));
    }
    const path = (value, scale) =>
      steps.map((s, i) => `${i ? "L" : "M"}${x(s.step).toFixed(1)},${scale(value(s)).toFixed(1)}`).join(" ");
    chart.append(
      svg("path", { class: "series sparsity", d: path((s) => s.sparsity, ySparsity) }),
      svg("path", { class: "series metric", d: path((s) => s.metric, yMetric) }),
    );
    for (const s of steps) {
      const label = `step ${s.step}: metric ${fixed(s.metric)}, sparsity ${fixed(s.sparsity)}, ${s.decision}`;
      const square = svg("rect", { class: "point sparsity", "data-step": s.step, x: x(s.step) - 3.5, y: ySparsity(s.sparsity) - 3.5, width: 7, height: 7 });
      const dot = svg("circle", { class: "point metric", "data-step": s.step, cx: x(s.step), cy: yMetric(s.metric), r: 4 });
      square.append(svg("title", {}, label));
      dot.append(svg("title", {}, label));
      chart.append(square, dot);
      if (s.decision === "rollback") {
        const cx = x(s.step), cy = yMetric(s.metric), d = 7;
        chart.append(svg("path", { class: "rollback", "data-step": s.step, d: `M${cx - d},${cy - d} L${cx + d},${cy + d} M${cx - d},${cy + d} L${cx + d},${cy - d}` }));
      }
    }
  }

  async function refreshEvents(jobId) {
    if (view.eventsMissing) return;
    try {
      for (let page = 0; page < 10; page += 1) {
        const body = await getJson(`/v1/jobs/${jobId}/events?after=${view.eventsAfter}&limit=200`);
        if (jobId !== view.openId) return;
        const fresh = Array.isArray(body.events) ? body.events : [];
        view.events.push(...fresh);
        if (typeof body.next_after === "number") view.eventsAfter = body.next_after;
        if (fresh.length < 200) break;
      }
    } catch (failure) {
      // An API without the events route answers 404: the page shows "no events".
      if (failure instanceof ApiFailure && failure.status === 404) view.eventsMissing = true;
      else throw failure;
    }
    renderEvents();
  }

  function renderEvents() {
    const items = view.events.slice(-500).map((event) => {
      const level = LEVELS.has(event.level) ? event.level : "info";
      const item = el(
        "li",
        `event level-${level}`,
        el("time", null, when(event.at)),
        " ",
        el("span", "kind", event.kind),
        " ",
        el("span", "message", event.message),
      );
      item.dataset.seq = event.seq;
      if (event.data && Object.keys(event.data).length) item.title = JSON.stringify(event.data);
      return item;
    });
    $("events").replaceChildren(...items);
    $("events-empty").hidden = items.length > 0;
  }

  async function download(artifact, button) {
    button.disabled = true;
    try {
      const blob = await (await request(artifact.url)).blob();
      const url = URL.createObjectURL(blob);
      const link = el("a");
      link.href = url;
      link.download = artifact.name;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (failure) {
      setStatus(`download of ${artifact.name} failed: ${failure.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  async function refreshArtifacts(job) {
    const note = $("artifacts-empty");
    if (!FINAL.has(job.state)) {
      $("artifacts").replaceChildren();
      note.textContent = "available when the job has finished";
      return;
    }
    if (view.artifactsLoaded) return;
    const artifacts = await getJson(`/v1/jobs/${job.id}/artifacts`);
    if (job.id !== view.openId) return;
    const items = artifacts
      .filter((a) => typeof a.url === "string" && a.url.startsWith("/v1/jobs/"))
      .map((artifact) => {
        const button = el("button", "link", artifact.name);
        button.type = "button";
        button.addEventListener("click", () => download(artifact, button));
        const item = el("li", null, button, " ", el("span", "muted", `${artifact.size_bytes} bytes`));
        item.dataset.name = artifact.name;
        return item;
      });
    $("artifacts").replaceChildren(...items);
    note.textContent = items.length ? "" : "this job has no artifacts";
    view.artifactsLoaded = true;
  }

  async function refreshOpenJob() {
    const jobId = view.openId;
    if (!jobId) return;
    const [job, steps] = await Promise.all([
      getJson(`/v1/jobs/${jobId}`),
      getJson(`/v1/jobs/${jobId}/steps`),
    ]);
    if (jobId !== view.openId) return;
    view.openJob = job;
    renderJob(job);
    renderCurve(job, steps);
    renderSteps(steps);
    await refreshEvents(jobId);
    await refreshArtifacts(job);
  }

  function openJob(jobId) {
    view.openId = jobId;
    view.events = [];
    view.eventsAfter = 0;
    view.eventsMissing = false;
    view.artifactsLoaded = false;
    $("job").hidden = !jobId;
    $("events").replaceChildren();
    $("artifacts").replaceChildren();
    history.replaceState(null, "", location.pathname + location.search + (jobId ? `#job=${encodeURIComponent(jobId)}` : ""));
    for (const row of $("jobs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.jobId === jobId);
    poll();
  }

  // ---- polling ---------------------------------------------------------------------------

  async function poll() {
    clearTimeout(view.timer);
    if (!apiKey()) return;
    try {
      await refreshJobs();
      await refreshOpenJob();
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
    } catch (failure) {
      if (failure instanceof ApiFailure && failure.status === 401) {
        setStatus(`the API refused this key: ${failure.message}`, true);
        showSignedIn(false);
        return;
      }
      setStatus(`could not reach the API: ${failure.message}`, true);
    }
    view.timer = setTimeout(poll, POLL_MS);
  }

  function showSignedIn(signedIn) {
    $("welcome").hidden = signedIn;
    $("jobs-panel").hidden = !signedIn;
    $("forget-key").hidden = !signedIn;
    if (!signedIn) $("job").hidden = true;
  }

  function start() {
    const jobId = readFragment();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      $("key-input").value = "";
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      showSignedIn(true);
      poll();
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      clearTimeout(view.timer);
      view.openId = null;
      $("jobs").tBodies[0].replaceChildren();
      showSignedIn(false);
      setStatus("key forgotten");
    });
    $("close-job").addEventListener("click", () => openJob(null));
    if (!apiKey()) {
      showSignedIn(false);
      return;
    }
    showSignedIn(true);
    if (jobId) openJob(jobId);
    else poll();
  }

  start();
})();
