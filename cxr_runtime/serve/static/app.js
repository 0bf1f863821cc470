// The page of tools/serve.py: upload one film to /v1/predict and show its boxes and findings.
// No third-party code; every element is built with DOM calls (the CSP forbids inline code).
"use strict";

const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
                "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3"];
const SVG_NS = "http://www.w3.org/2000/svg";
const state = { token: null, card: null, result: null, shown: {}, cutoff: {} };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
  s.setAttribute("role", error ? "alert" : "status");
}

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return `${resp.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
  } catch (e) {
    return `${resp.status} ${resp.statusText}`;
  }
}

function colorOf(name) {
  return COLORS[state.card.class_names.indexOf(name) % COLORS.length];
}

async function loadCard() {
  const resp = await fetch("/v1/model", { headers: headers() });
  if (resp.status === 401) {
    $("token-form").hidden = false;
    setStatus("Enter the access token of this server.");
    $("token").focus();
    return;
  }
  if (!resp.ok) { setStatus("Model card: " + (await errorText(resp)), true); return; }
  state.card = await resp.json();
  $("token-form").hidden = true;
  showCard(state.card);
  document.body.dataset.state = "ready";
  setStatus("Ready: choose or drop a film.");
}

function showCard(card) {
  const dl = $("card");
  dl.replaceChildren();
  const ops = card.class_names.map((n) => `${n} ${card.operating_points[n].toFixed(2)}`);
  const rows = [["Name", card.name], ["Model id", card.model_id], ["SHA-256", card.sha256],
    ["Architecture", card.meta_architecture], ["Backend", card.backend],
    ["Classes", card.class_names.join(", ")], ["Operating points", ops.join(", ")],
    ["Input size", `short side ${card.input_size.min_size_test} px, ` +
                   `long side at most ${card.input_size.max_size_test} px`]];
  for (const [k, v] of rows) { dl.append(el("dt", {}, k), el("dd", {}, v)); }
}

async function predict(file) {
  if (!state.card) { setStatus("The model card is not loaded yet.", true); return; }
  document.body.dataset.state = "busy";
  setStatus("Reading the film…");
  const form = new FormData();
  form.append("file", file, file.name);
  const t0 = performance.now();
  let resp;
  try {
    resp = await fetch("/v1/predict?display=true", { method: "POST", body: form, headers: headers() });
  } catch (e) {
    document.body.dataset.state = "error";
    setStatus("The server could not be reached.", true);
    return;
  }
  if (!resp.ok) {
    document.body.dataset.state = "error";
    setStatus("The film was refused: " + (await errorText(resp)), true);
    return;
  }
  const result = await resp.json();
  const wall = performance.now() - t0;
  state.result = result;
  showResult(result, wall);
}

function showResult(result, wall) {
  $("result").hidden = false;
  $("timing").textContent = `Answered in ${Math.round(wall)} ms (server: ` +
    `${Math.round(result.timing_ms.total)} ms). Film: ${result.image.width} x ` +
    `${result.image.height} px.`;
  const img = $("film");
  img.src = result.display_png;
  $("boxes").setAttribute("viewBox", `0 0 ${result.image.width} ${result.image.height}`);
  $("boxes").setAttribute("preserveAspectRatio", "none");
  buildControls();
  fillFindings(result.findings);
  drawBoxes();
  const pos = result.positive_findings;
  setStatus(pos.length ? `Done. Positive: ${pos.join(", ")}.` : "Done. No finding.");
  document.body.dataset.state = "done";
}

function buildControls() {
  const list = $("class-list");
  list.replaceChildren();
  state.card.class_names.forEach((name, i) => {
    const op = state.card.operating_points[name];
    state.shown[name] = true;
    state.cutoff[name] = op;
    const li = el("li");
    const show = el("input", { type: "checkbox", id: `show-${i}`, "data-class": name });
    show.checked = true;
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.backgroundColor = colorOf(name);
    const label = el("label", { for: `show-${i}` }, name);
    const slider = el("input", { type: "range", min: "0", max: "1", step: "0.01",
      id: `cut-${i}`, "data-class": name, "aria-label": `${name}: lowest score drawn` });
    slider.value = String(op);
    const out = el("output", { for: `cut-${i}`, id: `cut-value-${i}` }, op.toFixed(2));
    show.addEventListener("change", () => { state.shown[name] = show.checked; drawBoxes(); });
    slider.addEventListener("input", () => {
      state.cutoff[name] = Number(slider.value);
      out.textContent = Number(slider.value).toFixed(2);
      drawBoxes();
    });
    li.append(swatch, show, label, slider, out);
    list.append(li);
  });
}

function fillFindings(findings) {
  const body = $("findings").tBodies[0];
  body.replaceChildren();
  const sorted = [...findings].sort((a, b) => b.score - a.score);
  for (const f of sorted) {
    const tr = el("tr", { class: f.positive ? "positive" : "negative", "data-class": f.class_name });
    tr.append(el("th", { scope: "row" }, f.class_name),
      el("td", { class: "num" }, f.score.toFixed(3)),
      el("td", { class: "num" }, f.operating_point.toFixed(3)),
      el("td", {}, f.positive ? "positive" : "negative"));
    body.append(tr);
  }
}

function drawBoxes() {
  const svg = $("boxes");
  svg.replaceChildren();
  const w = state.result.image.width, h = state.result.image.height;
  const font = Math.max(w, h) / 40;
  let drawn = 0;
  const labelsAt = {};  // boxes sharing a corner get their labels stacked, not overprinted
  // lowest score first, so that the most certain boxes are drawn on top
  for (const d of [...state.result.detections].reverse()) {
    if (!state.shown[d.class_name] || d.score < state.cutoff[d.class_name]) continue;
    const g = document.createElementNS(SVG_NS, "g");
    const r = document.createElementNS(SVG_NS, "rect");
    const attrs = { class: "box", x: d.x0, y: d.y0, width: Math.max(d.x1 - d.x0, 0),
      height: Math.max(d.y1 - d.y0, 0), stroke: colorOf(d.class_name),
      "data-class": d.class_name, "data-score": d.score };
    for (const [k, v] of Object.entries(attrs)) r.setAttribute(k, v);
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = `${d.class_name} ${d.score.toFixed(2)}`;
    r.append(title);
    const label = document.createElementNS(SVG_NS, "text");
    label.setAttribute("class", "label");
    label.setAttribute("x", d.x0 + font * 0.2);
    const key = `${Math.round(d.x0 / font)},${Math.round(d.y0 / font)}`;
    labelsAt[key] = (labelsAt[key] || 0) + 1;
    label.setAttribute("y", Math.max(d.y0 - font * 0.25, font) + (labelsAt[key] - 1) * font * 1.1);
    label.setAttribute("font-size", font);
    label.setAttribute("fill", colorOf(d.class_name));
    label.textContent = title.textContent;
    g.append(r, label);
    svg.append(g);
    drawn += 1;
  }
  const text = drawn === 1 ? "1 box drawn." : `${drawn} boxes drawn.`;
  svg.setAttribute("aria-label", text);
  $("box-count").textContent = text;
}

function setupDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) predict(e.target.files[0]);
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    loadCard();
  });
}

document.addEventListener("DOMContentLoaded", () => { setupDrop(); loadCard(); });
