"use strict";
// The netcli page: four views chosen by the URL's #fragment, all over the server's JSON API.
//   #/                        runs             (GET /api/runs every 2 s)
//   #/run/ID                  one run          (GET /api/runs/ID, metrics?after=N every second)
//   #/compare?run=A&run=B     compare          (GET /api/compare, each run's metrics)
//   #/play/ID                 playground       (POST /api/runs/ID/predict, /sample)

const view = document.getElementById("view");
let leave = null;  // the current view's cleanup (timers, pending requests)

// -- helpers ---------------------------------------------------------------------------
function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
const encId = id => id.split("/").map(encodeURIComponent).join("/");
const num = (v, digits = 4) => (v === null || v === undefined) ? "" : (typeof v === "number" ? fmt(v) : esc(v));

async function api(path, opts) {
  const r = await fetch(path, opts);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch (e) { throw new Error(`${r.status}: ${text.slice(0, 200)}`); }
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round(s / 60 % 60)} min`;
}

function statusBadge(r) {
  const pct = r.status === "running" && r.progress !== null && r.progress !== undefined
    ? ` ${Math.round(100 * r.progress)}%` : "";
  return `<span class="status ${esc(r.status)}" title="${esc(r.message || "")}">${esc(r.status)}${pct}</span>`;
}

// Repeat fn every ms milliseconds, one call at a time, until stopped.
function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function showError(el, e) { el.innerHTML = `<p class="error">${esc(e.message || e)}</p>`; }

// -- metrics, read on from where the last read stopped ------------------------------------
class MetricsFeed {
  constructor(id) { this.id = id; this.after = 0; this.file = null; this.records = []; }
  // Fetch what was appended since the last call; true if anything changed.
  async poll() {
    let changed = false;
    for (;;) {
      const q = new URLSearchParams({after: this.after});
      if (this.file) q.set("file", this.file);
      const r = await api(`/api/runs/${encId(this.id)}/metrics?${q}`);
      if (r.reset) { this.records = []; changed = true; }
      for (const rec of r.records) this.records.push(rec);
      changed = changed || r.records.length > 0;
      this.after = r.next; this.file = r.file;
      if (!r.more) return changed;
    }
  }
}

const SPLIT_LABEL = {train: "train", train_epoch: "train (epoch mean)", val: "val"};
const SPLIT_COLOR = {train: "#9ecae1", train_epoch: "#1f77b4", val: "#ff7f0e"};
const SPLIT_DASH = {train: "2 2", train_epoch: "5 3", val: ""};

// records -> {chart: {split: {name, points: [[x, y], ...]}}}: val_loss is drawn in the loss chart;
// by epoch, only the per-epoch records (x = epochs done)
function curves(records, by) {
  const out = {};
  for (const r of records) {
    if (by === "epoch" && r.split === "train") continue;
    const chart = r.split === "val" && r.name.startsWith("val_") ? r.name.slice(4) : r.name;
    const x = by === "epoch" ? r.epoch + 1 : r.step;
    ((out[chart] ??= {})[r.split] ??= {name: r.name, points: []}).points.push([x, r.value]);
  }
  return out;
}

function metricOrder(names) {
  const rank = n => n === "loss" ? 0 : n === "lr" ? 2 : 1;
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function axisToggle(by) {
  return `<label>x axis <select class="by"><option value="step"${by === "step" ? " selected" : ""}>step</option>` +
         `<option value="epoch"${by === "epoch" ? " selected" : ""}>epoch</option></select></label>`;
}

// -- runs --------------------------------------------------------------------------------
function runsView() {
  view.innerHTML = `<h1>Runs</h1>
    <div class="toolbar"><input id="filter" placeholder="filter: name, status, model" size="30">
      <button id="compare" disabled>Compare selected</button><span id="count" class="muted"></span></div>
    <div id="table"></div>`;
  const selected = new Set();
  let runs = [], last = "", sort = {key: "stamp", desc: true};
  const cols = [["", null], ["name", "name"], ["started", "stamp"], ["status", "status"], ["model", "model"],
                ["best", "best"], ["test", "test"], ["epochs", "epoch"], ["steps", "step"], ["wall time", "wall_s"], ["", null]];
  const filter = document.getElementById("filter"), button = document.getElementById("compare");

  function render() {
    const f = filter.value.trim().toLowerCase();
    let rows = f ? runs.filter(r => `${r.id} ${r.status} ${r.model}`.toLowerCase().includes(f)) : runs.slice();
    const k = sort.key;
    rows.sort((a, b) => {
      const u = a[k], v = b[k];
      if (u === v) return a.id < b.id ? 1 : -1;
      if (u === null || u === undefined) return 1;
      if (v === null || v === undefined) return -1;
      return (u < v ? -1 : 1) * (sort.desc ? -1 : 1);
    });
    const head = cols.map(([label, key]) => key
      ? `<th class="sortable${["best", "test", "epoch", "step", "wall_s"].includes(key) ? " num" : ""}" data-key="${key}">${label}${sort.key === key ? (sort.desc ? " ▾" : " ▴") : ""}</th>`
      : `<th></th>`).join("");
    const body = rows.map(r => `<tr data-id="${esc(r.id)}">
      <td><input type="checkbox" class="pick" value="${esc(r.id)}"${selected.has(r.id) ? " checked" : ""}></td>
      <td><a href="#/run/${esc(encId(r.id))}">${esc(r.name)}</a></td><td class="muted">${esc(r.stamp)}</td>
      <td>${statusBadge(r)}</td><td>${esc(r.model)}</td>
      <td class="num" title="${esc(r.monitor)}">${r.best !== null && r.best !== undefined ? `${esc(r.monitor)} ${num(r.best)}` : ""}</td>
      <td class="num">${r.test !== null && r.test !== undefined ? `${esc(r.test_metric)} ${num(r.test)}` : ""}</td>
      <td class="num">${r.epoch ?? ""}${r.epochs ? ` / ${r.epochs}` : ""}</td><td class="num">${r.step ?? ""}</td>
      <td class="num">${duration(r.wall_s)}</td>
      <td><a href="#/play/${esc(encId(r.id))}">playground</a></td></tr>`).join("");
    document.getElementById("table").innerHTML =
      `<table class="runs"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>` +
      (runs.length ? "" : `<p class="muted">No runs yet: <code>netcli train configs/mnist_cnn.yaml</code> makes one.</p>`);
    document.getElementById("count").textContent = `${rows.length} of ${runs.length} runs`;
    button.disabled = selected.size < 2;
  }

  document.getElementById("table").addEventListener("click", ev => {
    const th = ev.target.closest("th.sortable");
    if (th) {
      const key = th.dataset.key;
      sort = {key, desc: sort.key === key ? !sort.desc : true};
      render();
    }
  });
  document.getElementById("table").addEventListener("change", ev => {
    if (!ev.target.classList.contains("pick")) return;
    ev.target.checked ? selected.add(ev.target.value) : selected.delete(ev.target.value);
    button.disabled = selected.size < 2;
  });
  filter.addEventListener("input", render);
  button.addEventListener("click", () => {
    location.hash = "#/compare?" + [...selected].map(id => "run=" + encodeURIComponent(id)).join("&");
  });
  return every(2000, async () => {
    const r = await fetch("/api/runs");
    const text = await r.text();
    if (text === last) return;
    last = text;
    const body = JSON.parse(text);
    if (!r.ok) throw new Error(body.error);
    document.getElementById("root").textContent = body.root;
    runs = body.runs;
    render();
  });
}

// -- one run ------------------------------------------------------------------------------
function runView(id) {
  view.innerHTML = `<div id="head"></div>
    <h2>Curves</h2><div class="toolbar">${axisToggle("step")}<span id="points" class="muted"></span></div>
    <div id="charts" class="charts"></div>
    <div id="details"></div>`;
  const feed = new MetricsFeed(id);
  let by = "step", lastDetails = "";

  function drawCharts() {
    const c = curves(feed.records, by);
    const el = document.getElementById("charts");
    el.textContent = "";
    for (const name of metricOrder(Object.keys(c))) {
      const box = document.createElement("div");
      box.dataset.metric = name;
      el.appendChild(box);
      const series = Object.entries(c[name]).map(([split, s]) => ({
        key: `${split}/${s.name}`, label: SPLIT_LABEL[split] || split, color: SPLIT_COLOR[split],
        dash: SPLIT_DASH[split], points: s.points}));
      lineChart(box, {title: name, xLabel: by, series});
    }
    document.getElementById("points").textContent = `${feed.records.length} records`;
    document.getElementById("charts").dataset.records = feed.records.length;
  }
  view.querySelector("select.by").addEventListener("change", ev => { by = ev.target.value; drawCharts(); });
  drawCharts();

  function renderDetails(r) {
    document.getElementById("head").innerHTML = `<h1>${esc(r.name)} <small>${esc(r.id)}</small> ${statusBadge(r)}</h1>
      <div class="meta"><span>model <b>${esc(r.model)}</b></span>
        ${r.params ? `<span>parameters <b>${r.params.toLocaleString()}</b></span>` : ""}
        <span>epochs <b>${r.epoch ?? "?"}${r.epochs ? " / " + r.epochs : ""}</b></span>
        <span>steps <b>${r.step ?? "?"}</b></span><span>wall time <b>${duration(r.wall_s) || "?"}</b></span>
        ${r.best !== null && r.best !== undefined ? `<span>best ${esc(r.monitor)} <b>${num(r.best)}</b></span>` : ""}
        <a href="#/play/${esc(encId(id))}">playground</a></div>
      ${r.message ? `<p class="error">${esc(r.message)}</p>` : ""}`;
    let html = "";
    if (r.eval) html += evalSection(r.eval);
    if (r.quality) html += `<h2>Sample quality</h2>${metricsTable(r.quality.metrics || {})}`;
    if (r.summary && r.summary.metrics) html += `<h2>Final metrics</h2>${metricsTable(r.summary.metrics)}`;
    if (r.samples.length) html += `<h2>Samples</h2><div class="samples">${r.samples.map(p =>
      `<figure><img src="/files/${esc(encId(p))}" alt="${esc(p)}"><figcaption>${esc(p.split("/").pop())}</figcaption></figure>`).join("")}</div>`;
    html += `<h2>Checkpoints</h2>` + (r.checkpoints.length ? `<table><tr><th>file</th><th class="num">step</th>
      <th class="num">epoch</th><th class="num">best</th><th class="num">size</th><th>written</th></tr>${r.checkpoints.map(c =>
      `<tr><td>${esc(c.name)}${c.damaged ? " (damaged)" : ""}</td><td class="num">${c.step ?? ""}</td><td class="num">${c.epoch ?? ""}</td>
       <td class="num">${num(c.best)}</td><td class="num">${(c.bytes / 1048576).toFixed(2)} MiB</td>
       <td>${new Date(c.modified * 1000).toLocaleString()}</td></tr>`).join("")}</table>` : `<p class="muted">none yet</p>`);
    html += `<h2>Resolved config</h2><pre id="config">${esc(r.config)}</pre>`;
    if (r.config_changes) html += `<h2>Config changes on resume</h2><pre>${esc(r.config_changes)}</pre>`;
    document.getElementById("details").innerHTML = html;
  }

  const stopMetrics = every(1000, async () => { if (await feed.poll()) drawCharts(); });
  const stopDetails = every(3000, async () => {
    try {
      const text = JSON.stringify(await api(`/api/runs/${encId(id)}`));
      if (text !== lastDetails) { lastDetails = text; renderDetails(JSON.parse(text)); }
    } catch (e) { showError(document.getElementById("head"), e); }
  });
  return () => { stopMetrics(); stopDetails(); };
}

function metricsTable(m) {
  return `<table>${Object.entries(m).map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${num(v)}</td></tr>`).join("")}</table>`;
}

function evalSection(ev) {
  let html = `<h2>Evaluation (${esc(ev.split)} split, ${ev.samples} samples)</h2>${metricsTable(ev.metrics || {})}`;
  const cm = ev.confusion_matrix;
  if (cm) {
    html += `<h3>Confusion matrix <span class="muted">(rows: true class, columns: predicted; shade: share of the row)</span></h3>
      <table class="confusion" id="confusion"><tr><th></th>${cm.map((_, j) => `<th>${j}</th>`).join("")}<th>accuracy</th></tr>` +
      cm.map((row, i) => {
        const total = row.reduce((a, b) => a + b, 0) || 1;
        return `<tr><th>${i}</th>${row.map((c, j) => {
          const a = c / total;
          const bg = i === j ? `rgba(31,119,180,${a.toFixed(3)})` : `rgba(214,39,40,${Math.min(1, 4 * a).toFixed(3)})`;
          return `<td data-count="${c}" style="background:${bg};color:${a > 0.5 ? "#fff" : "inherit"}">${c}</td>`;
        }).join("")}<td class="num">${ev.per_class_accuracy ? fmt(ev.per_class_accuracy[i]) : ""}</td></tr>`;
      }).join("") + `</table>`;
  }
  return html;
}

// -- compare ----------------------------------------------------------------------------------
function compareView(query) {
  const ids = new URLSearchParams(query).getAll("run");
  view.innerHTML = `<h1>Compare ${ids.length} runs</h1><div id="legend"></div>
    <h2>Curves</h2><div class="toolbar">${axisToggle("step")}</div><div id="charts" class="charts"></div>
    <h2>Config differences</h2><div id="diff"></div><h2>Metrics</h2><div id="cmp-metrics"></div>`;
  const feeds = ids.map(id => new MetricsFeed(id));
  let by = "step";
  document.getElementById("legend").innerHTML = ids.map((id, i) =>
    `<div><span style="color:${PALETTE[i % PALETTE.length]}">■</span> <a href="#/run/${esc(encId(id))}">${esc(id)}</a></div>`).join("");

  function drawCharts() {
    const el = document.getElementById("charts");
    el.textContent = "";
    const per = feeds.map(f => curves(f.records, by));
    const splits = {};  // chart -> splits any run has
    per.forEach(c => Object.entries(c).forEach(([name, sp]) => Object.keys(sp).forEach(s => (splits[name] ??= new Set()).add(s))));
    const rank = s => ({val: 0, train_epoch: 1, train: 2}[s] ?? 3);
    const order = metricOrder(Object.keys(splits)).flatMap(name =>
      [...splits[name]].sort((a, b) => rank(a) - rank(b)).map(split => `${split}/${name}`));
    for (const key of order) {
      const [split, name] = key.split("/");
      const box = document.createElement("div");
      box.dataset.metric = key;
      el.appendChild(box);
      lineChart(box, {title: `${SPLIT_LABEL[split] || split} ${name}`, xLabel: by, series: per.map((c, i) => {
        const s = (c[name] || {})[split];
        return {key: `${ids[i]}:${split}/${s ? s.name : name}`, label: `${i + 1}: ${ids[i].split("/")[0]}`, color: PALETTE[i % PALETTE.length],
                points: s ? s.points : []};
      })});
    }
  }
  view.querySelector("select.by").addEventListener("change", ev => { by = ev.target.value; drawCharts(); });

  api(`/api/compare?${ids.map(id => "run=" + encodeURIComponent(id)).join("&")}`).then(d => {
    const head = `<tr><th>key</th>${ids.map((_, i) => `<th style="color:${PALETTE[i % PALETTE.length]}">run ${i + 1}</th>`).join("")}</tr>`;
    const rows = (obj, cls) => Object.entries(obj).map(([k, vals]) =>
      `<tr><td>${esc(k)}</td>${vals.map(v => `<td class="${cls}">${v === null ? "–" : typeof v === "number" ? fmt(v) : esc(JSON.stringify(v))}</td>`).join("")}</tr>`).join("");
    document.getElementById("diff").innerHTML = Object.keys(d.config).length
      ? `<table id="config-diff">${head}${rows(d.config, "")}</table>` : `<p class="muted">The configs are the same.</p>`;
    document.getElementById("cmp-metrics").innerHTML = `<table>${head}${rows(d.metrics, "num")}</table>`;
  }).catch(e => showError(document.getElementById("diff"), e));

  return every(1000, async () => {
    const changed = await Promise.all(feeds.map(f => f.poll()));
    if (changed.some(Boolean)) drawCharts();
  });
}

// -- playground -----------------------------------------------------------------------------
function playView(id) {
  view.innerHTML = `<h1>Playground <small><a href="#/run/${esc(encId(id))}">${esc(id)}</a></small></h1><div id="play"></div>`;
  const el = document.getElementById("play");
  let stop = () => {};
  api(`/api/runs/${encId(id)}/playground`).then(info => {
    const make = {image_classifier: imagePlay, sequence_classifier: sequencePlay, vae: vaePlay, generator: generatorPlay,
                  autoencoder: autoencoderPlay, predictor: arrayPlay}[info.kind];
    if (!make) { el.innerHTML = `<p class="muted">${esc(info.reason || "No playground for this run.")}</p>`; return; }
    stop = make(el, id, info) || stop;
  }).catch(e => showError(el, e));
  return () => stop();
}

function grey(canvas, image) {
  // image: rows of intensities in [0, 1] -> pixels of a canvas of the same size
  const h = image.length, w = image[0].length, ctx = canvas.getContext("2d");
  canvas.width = w; canvas.height = h;
  const data = ctx.createImageData(w, h);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, image[i][j]))), o = 4 * (i * w + j);
    data.data[o] = data.data[o + 1] = data.data[o + 2] = v; data.data[o + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
}

function bars(probs, classes) {
  const top = probs.indexOf(Math.max(...probs));
  return probs.map((p, i) => `<div class="bar${i === top ? " top" : ""}" data-class="${i}">
    <span>${esc(classes ? classes[i] : i)}</span><div class="track"><div class="fill" style="width:${(100 * p).toFixed(1)}%"></div></div>
    <span class="p">${(100 * p).toFixed(1)}%</span></div>`).join("");
}

function imagePlay(el, id, info) {
  el.innerHTML = `<div class="two">
    <div><canvas class="draw" id="pad" width="280" height="280"></canvas>
      <div class="toolbar"><button id="clear">Clear</button><button id="test">Load a test image</button>
        <span id="test-label" class="muted"></span></div>
      <p class="muted">Draw a digit with the mouse or a finger. It is cropped, scaled and centred the way
        the training images were before the network reads it.</p></div>
    <div><div class="big" id="prediction" data-state="empty">?</div><div class="muted" id="confidence"></div>
      <div class="bars" id="bars"></div>
      <p class="muted">What the network sees:</p><canvas class="seen" id="seen" width="28" height="28"></canvas>
      <p class="muted" id="latency"></p></div></div>`;
  const pad = document.getElementById("pad"), ctx = pad.getContext("2d");
  const out = document.getElementById("prediction");
  let drawing = false, inflight = false, dirty = false, empty = true, gone = false;
  function clear() {
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); empty = true;
    out.textContent = "?"; out.dataset.state = "empty"; document.getElementById("bars").innerHTML = bars(new Array(info.classes.length).fill(0), info.classes);
    document.getElementById("confidence").textContent = ""; document.getElementById("test-label").textContent = "";
  }
  clear();
  const at = ev => { const b = pad.getBoundingClientRect(); return [(ev.clientX - b.left) * pad.width / b.width, (ev.clientY - b.top) * pad.height / b.height]; };
  pad.addEventListener("pointerdown", ev => {
    drawing = true; empty = false; pad.setPointerCapture(ev.pointerId);
    ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
    const [x, y] = at(ev);
    ctx.beginPath(); ctx.arc(x, y, ctx.lineWidth / 2, 0, 2 * Math.PI); ctx.fill();
    ctx.beginPath(); ctx.moveTo(x, y);
    document.getElementById("test-label").textContent = "";
    predict();
  });
  pad.addEventListener("pointermove", ev => {
    if (!drawing) return;
    const [x, y] = at(ev);
    ctx.lineTo(x, y); ctx.stroke(); ctx.beginPath(); ctx.moveTo(x, y);
    predict();
  });
  const end = () => { if (drawing) { drawing = false; predict(); } };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  document.getElementById("clear").addEventListener("click", clear);
  document.getElementById("test").addEventListener("click", async () => {
    const i = Math.floor(Math.random() * info.test_samples);
    try {
      const s = await api(`/api/runs/${encId(id)}/test/${i}`);
      const small = document.createElement("canvas");
      grey(small, s.image);
      ctx.imageSmoothingEnabled = true; ctx.drawImage(small, 0, 0, pad.width, pad.height); empty = false;
      document.getElementById("test-label").textContent = `test image ${s.index}, label ${s.label}`;
      predict();
    } catch (e) { document.getElementById("test-label").textContent = e.message; }
  });
  // One prediction in flight at a time; strokes drawn meanwhile are sent as soon as it returns.
  function predict() {
    if (empty) return;
    if (inflight) { dirty = true; out.dataset.state = "pending"; return; }
    inflight = true; dirty = false; out.dataset.state = "pending";
    pad.toBlob(async blob => {
      const t0 = performance.now();
      try {
        window.lastPosted = blob;  // the exact bytes predicted (tests run `netcli predict` on them)
        const r = await api(`/api/runs/${encId(id)}/predict`, {method: "POST", headers: {"Content-Type": "image/png"}, body: blob});
        if (gone) return;
        const ms = performance.now() - t0;
        const p = r.probabilities[0];
        out.textContent = r.labels ? r.labels[0] : r.classes[0];
        out.dataset.class = r.classes[0];
        out.dataset.count = (+out.dataset.count || 0) + 1;  // predictions shown so far
        document.getElementById("confidence").textContent = `confidence ${(100 * Math.max(...p)).toFixed(1)}%`;
        document.getElementById("bars").innerHTML = bars(p, info.classes);
        if (r.input) grey(document.getElementById("seen"), r.input);
        document.getElementById("latency").textContent = `round trip ${ms.toFixed(0)} ms (server ${r.ms.toFixed(1)} ms)`;
        document.getElementById("latency").dataset.ms = ms.toFixed(2);
      } catch (e) {
        out.textContent = "!"; document.getElementById("confidence").textContent = e.message;
      } finally {
        inflight = false;
        if (dirty) predict(); else if (!gone) out.dataset.state = "done";
      }
    }, "image/png");
  }
  return () => { gone = true; };
}

function sequencePlay(el, id, info) {
  const T = info.input_shape[0], V = info.vocab;
  const example = Array.from({length: T}, (_, i) => (i * 3 + 1) % (V || 10)).join(V && V <= 10 ? "" : " ");
  el.innerHTML = `<p>Type ${T} tokens (${V && V <= 10 ? "digits" : "numbers separated by spaces"}${V ? `, 0 to ${V - 1}` : ""}):</p>
    <input id="seq" size="40" value="${esc(example)}"> <span id="seq-error" class="muted"></span>
    <div id="tokens"></div>`;
  const input = document.getElementById("seq");
  let seq = 0;
  async function run() {
    const text = input.value.trim();
    const tokens = (V && V <= 10 ? text.replace(/\s+/g, "").split("") : text.split(/[\s,]+/)).filter(Boolean).map(Number);
    const mine = ++seq;
    try {
      const r = await api(`/api/runs/${encId(id)}/predict`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                             body: JSON.stringify({array: tokens})});
      if (mine !== seq) return;
      document.getElementById("seq-error").textContent = "";
      const probs = r.probabilities[0], classes = r.classes[0];
      const perToken = Array.isArray(classes);
      document.getElementById("tokens").innerHTML = perToken
        ? `<table class="tokens"><tr><th>position</th>${tokens.map((_, i) => `<td>${i}</td>`).join("")}</tr>
           <tr><th>input</th>${tokens.map(t => `<td>${t}</td>`).join("")}</tr>
           <tr><th>output</th>${classes.map(c => `<td><b>${esc(info.classes ? info.classes[c] : c)}</b></td>`).join("")}</tr>
           <tr><th>confidence</th>${probs.map(p => `<td>${(100 * Math.max(...p)).toFixed(0)}%</td>`).join("")}</tr></table>`
        : `<div class="big">${esc(info.classes ? info.classes[classes] : classes)}</div><div class="bars">${bars(probs, info.classes)}</div>`;
    } catch (e) { if (mine === seq) document.getElementById("seq-error").textContent = e.message; }
  }
  input.addEventListener("input", run);
  run();
}

async function postSample(id, body, onProgress) {
  // NDJSON: progress lines, then the result
  const r = await fetch(`/api/runs/${encId(id)}/sample`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                          body: JSON.stringify({...body, stream: true})});
  if (!r.ok) { const e = await r.json(); throw new Error(e.error); }
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = "", last = null;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl)); buf = buf.slice(nl + 1);
      if (msg.error) throw new Error(msg.error);
      if (msg.total !== undefined && msg.grid === undefined) onProgress(msg.done, msg.total); else last = msg;
    }
  }
  if (!last) throw new Error("the server closed the stream before the result");
  return last;
}

function sampleControls(withSteps, info) {
  return `<div class="toolbar"><label>images <input type="number" id="n" value="16" min="1" max="${info.max_samples}"></label>
    <label>seed <input type="number" id="seed" value="0" min="0"></label>
    ${withSteps ? `<label>DDIM steps <input type="number" id="steps" value="${info.sample_steps || 50}" min="1" max="${info.timesteps}"></label>` : ""}
    <button id="go">Generate</button><progress id="progress" value="0" max="1" hidden></progress><span id="status" class="muted"></span></div>
    <div class="samples"><img id="grid" alt="" hidden></div>`;
}

function generator(el, id, body) {
  const go = document.getElementById("go"), bar = document.getElementById("progress"), status = document.getElementById("status");
  go.addEventListener("click", async () => {
    go.disabled = true; bar.hidden = false; bar.value = 0; status.textContent = "";
    const t0 = performance.now();
    try {
      const r = await postSample(id, body(), (d, t) => { bar.max = t; bar.value = d; status.textContent = `${d} / ${t} steps`; });
      const img = document.getElementById("grid");
      img.src = r.grid; img.hidden = false; img.style.width = `${r.grid_width * 2}px`;
      status.textContent = `${r.n} images in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      status.dataset.done = "1";
    } catch (e) { status.textContent = e.message; }
    finally { go.disabled = false; bar.hidden = true; }
  });
}

function generatorPlay(el, id, info) {
  const steps = !!info.timesteps;  // a DDPM: DDIM with a chosen number of steps
  el.innerHTML = `<p>${steps ? "Denoise pure noise into images with DDIM (deterministic; fewer steps: faster, rougher)."
                             : "Samples from the model."}</p>${sampleControls(steps, info)}`;
  generator(el, id, () => ({n: +document.getElementById("n").value, seed: +document.getElementById("seed").value,
                            ...(steps ? {steps: +document.getElementById("steps").value} : {})}));
}

function autoencoderPlay(el, id, info) {
  el.innerHTML = `<p>Test images beside their reconstructions.</p>${sampleControls(false, info)}`;
  generator(el, id, () => ({n: +document.getElementById("n").value, seed: +document.getElementById("seed").value}));
}

function vaePlay(el, id, info) {
  el.innerHTML = `<h2>Samples from the prior</h2>${sampleControls(false, info)}
    <h2>Walk between two test digits</h2>
    <div class="toolbar"><button id="pick">Two random test digits</button><span id="pair" class="muted"></span></div>
    <div class="two"><div><img id="frame" class="pixel" width="168" height="168" alt="" hidden></div>
      <div><input type="range" id="slider" min="0" max="15" value="0" disabled style="width:300px">
        <div class="frames" id="frames"></div></div></div>`;
  generator(el, id, () => ({n: +document.getElementById("n").value, seed: +document.getElementById("seed").value}));
  const slider = document.getElementById("slider");
  let frames = [];
  const show = () => {
    const i = +slider.value;
    document.getElementById("frame").src = frames[i];
    document.getElementById("frame").hidden = false;
    document.querySelectorAll("#frames img").forEach((img, j) => img.classList.toggle("on", i === j));
  };
  slider.addEventListener("input", show);
  document.getElementById("pick").addEventListener("click", async () => {
    const a = Math.floor(Math.random() * info.test_samples);
    let b = Math.floor(Math.random() * (info.test_samples - 1)); if (b >= a) b++;
    try {
      const r = await api(`/api/runs/${encId(id)}/sample`, {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({interpolate: true, a, b, n: 16})});
      frames = r.images;
      document.getElementById("frames").innerHTML = frames.map(src => `<img src="${src}" alt="">`).join("");
      document.getElementById("pair").textContent = `test images ${a} and ${b}`;
      slider.max = frames.length - 1; slider.value = 0; slider.disabled = false; show();
    } catch (e) { document.getElementById("pair").textContent = e.message; }
  });
}

function arrayPlay(el, id, info) {
  el.innerHTML = `<p>${esc(info.reason || "")} Give one input of shape (${info.input_shape.join(", ")}) as a JSON array:</p>
    <textarea id="arr" rows="6" cols="70">${esc(JSON.stringify(info.example))}</textarea><br><button id="go">Predict</button>
    <pre id="out"></pre>`;
  document.getElementById("go").addEventListener("click", async () => {
    try {
      const r = await api(`/api/runs/${encId(id)}/predict`, {method: "POST", headers: {"Content-Type": "application/json"},
                                                             body: JSON.stringify({array: JSON.parse(document.getElementById("arr").value)})});
      document.getElementById("out").textContent = JSON.stringify(r.outputs ?? r.probabilities, null, 1);
    } catch (e) { document.getElementById("out").textContent = e.message; }
  });
}

// -- routing -----------------------------------------------------------------------------------
function route() {
  if (leave) leave();
  leave = null;
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = [hash.split("?")[0], hash.split("?").slice(1).join("?")];
  const [name, ...rest] = path.split("/");
  const id = rest.map(decodeURIComponent).join("/");
  window.scrollTo(0, 0);
  try {
    if (name === "run" && id) leave = runView(id);
    else if (name === "compare") leave = compareView(query);
    else if (name === "play" && id) leave = playView(id);
    else leave = runsView();
  } catch (e) { showError(view, e); }
}
window.addEventListener("hashchange", route);
route();
