// The drawing page: a canvas, a marker-like brush, and live predictions from POST /api/predict.
// No framework: the whole page is this file, index.html and style.css.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const SIZES = { digit: [280, 280], number: [840, 280] };  // canvas pixels in each mode
const PREDICT_EVERY_MS = 150;  // while drawing, ask at most this often (and once more after the last stroke)

const state = {
  hasInk: false,
  drawing: false,
  points: [],          // the current stroke's recent points, for smoothing
  timer: null,         // pending prediction
  inFlight: false,     // one request at a time ...
  again: false,        // ... and one more if the drawing changed meanwhile
  sequence: 0,         // answers older than the last shown one are dropped
  shown: 0,
};

// -- drawing -------------------------------------------------------------------------------------
function resetCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  ctx.lineCap = "round";         // round caps and joins: the line looks like a felt marker
  ctx.lineJoin = "round";
  ctx.lineWidth = canvas.height / 14;  // MNIST-like stroke: about 1/14 of the digit's box
  state.hasInk = false;
  $("hint").classList.remove("hidden");
}

function canvasPoint(event) {
  // The canvas is scaled by CSS; convert from screen pixels to canvas pixels.
  const rect = canvas.getBoundingClientRect();
  return {
    x: (event.clientX - rect.left) * (canvas.width / rect.width),
    y: (event.clientY - rect.top) * (canvas.height / rect.height),
  };
}

function dot(p) {
  ctx.beginPath();
  ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, Math.PI * 2);
  ctx.fill();
}

function extendStroke(p) {
  // Smoothing: draw a quadratic curve from the midpoint of the previous segment to the midpoint of
  // this one, with the previous point as control point. Consecutive curves meet with the same tangent,
  // so the line bends instead of kinking at every sampled point.
  const pts = state.points;
  pts.push(p);
  if (pts.length < 3) {
    const a = pts[0];
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    return;
  }
  const [a, b, c] = pts.slice(-3);
  const m1 = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
  const m2 = { x: (b.x + c.x) / 2, y: (b.y + c.y) / 2 };
  ctx.beginPath();
  ctx.moveTo(m1.x, m1.y);
  ctx.quadraticCurveTo(b.x, b.y, m2.x, m2.y);
  ctx.stroke();
  if (pts.length > 3) pts.shift();
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);  // keep the stroke even if the pointer leaves the canvas
  state.drawing = true;
  const p = canvasPoint(event);
  state.points = [p];
  dot(p);
  state.hasInk = true;
  $("hint").classList.add("hidden");
  schedulePrediction();
});

canvas.addEventListener("pointermove", (event) => {
  if (!state.drawing) return;
  event.preventDefault();
  // Coalesced events: the browser may deliver several pointer positions per frame; use them all.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) extendStroke(canvasPoint(e));
  schedulePrediction();
});

function endStroke(event) {
  if (!state.drawing) return;
  state.drawing = false;
  state.points = [];
  if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
  schedulePrediction();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

// -- talking to the server -------------------------------------------------------------------------
function numberMode() { return $("number-mode").checked; }

function predictUrl() {
  const params = new URLSearchParams();
  if ($("show-features").checked && !numberMode()) params.set("features", "true");
  if (numberMode()) params.set("number", "true");
  return "/api/predict?" + params.toString();
}

function schedulePrediction() {
  // A throttle with a trailing call: predictions follow the pen every 150 ms, and the last one always
  // sees the finished drawing.
  if (state.timer === null) state.timer = setTimeout(() => { state.timer = null; predictCanvas(); }, PREDICT_EVERY_MS);
}

function predictCanvas() {
  if (!state.hasInk) return;
  if (state.inFlight) { state.again = true; return; }
  canvas.toBlob((blob) => send(blob, "drawing.png"), "image/png");
}

async function send(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const sequence = ++state.sequence;
  state.inFlight = true;
  try {
    const response = await fetch(predictUrl(), { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (sequence < state.shown) return;
    state.shown = sequence;
    if (!response.ok) showError(body.detail || `the server answered ${response.status}`);
    else if (state.hasInk) showResult(body);
  } catch (error) {
    showError("cannot reach the server: " + error.message);
  } finally {
    state.inFlight = false;
    if (state.again) { state.again = false; schedulePrediction(); }
  }
}

// -- showing answers -------------------------------------------------------------------------------
function buildBars() {
  const bars = $("bars");
  bars.innerHTML = "";
  for (let digit = 0; digit < 10; digit++) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.id = `bar-${digit}`;
    row.setAttribute("role", "listitem");
    row.innerHTML = `<span class="digit">${digit}</span><div class="bar-track"><div class="bar-fill"></div></div><span class="pct">–</span>`;
    bars.appendChild(row);
  }
}

function showBars(probabilities, prediction) {
  for (let digit = 0; digit < 10; digit++) {
    const row = $(`bar-${digit}`);
    const p = probabilities ? probabilities[digit] : 0;
    row.querySelector(".bar-fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".pct").textContent = probabilities ? `${(p * 100).toFixed(1)}%` : "–";
    row.classList.toggle("top", digit === prediction);
    row.setAttribute("aria-label", `${digit}: ${probabilities ? (p * 100).toFixed(1) + "%" : "no answer"}`);
  }
}

const EMPTY_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==";

function showResult(result) {
  const has = result.prediction !== null && result.prediction !== undefined;
  $("prediction").textContent = has ? String(result.prediction) : "?";
  $("confidence").textContent = has ? `${(result.top_k[0].probability * 100).toFixed(1)}% sure` : "";
  $("message").textContent = result.message || "";
  $("processed").src = result.processed || EMPTY_GIF;
  showBars(result.probabilities, result.prediction);
  if (numberMode()) showNumber(result);
  if (result.feature_maps) showFeatures(result.feature_maps);
}

function showNumber(result) {
  $("number").textContent = result.number || "?";
  const digits = $("digits");
  digits.innerHTML = "";
  for (const d of result.digits || []) {
    const chip = document.createElement("div");
    chip.className = "digit-chip";
    chip.title = `${d.label}: ${(d.probability * 100).toFixed(1)}%`;
    chip.innerHTML = `<img alt="digit ${d.label} as the network sees it"><b>${d.label}</b><span>${(d.probability * 100).toFixed(0)}%</span>`;
    chip.querySelector("img").src = d.processed;
    digits.appendChild(chip);
  }
}

function showFeatures(layers) {
  const box = $("features");
  if (!layers.length) {
    box.innerHTML = '<p class="muted">No feature maps for this picture.</p>';
    return;
  }
  // Rebuild only when the layout changes; otherwise swap image sources (no flicker while drawing).
  const layout = layers.map((l) => `${l.layer}:${l.channels.length}`).join("|");
  if (box.dataset.layout !== layout) {
    box.dataset.layout = layout;
    box.innerHTML = "";
    for (const layer of layers) {
      const title = document.createElement("h3");
      const [c, h, w] = layer.shape;
      title.innerHTML = `${layer.layer} <span>· ${c} channels of ${h}×${w}</span>`;
      const grid = document.createElement("div");
      grid.className = "maps";
      grid.dataset.layer = layer.layer;
      for (let i = 0; i < layer.channels.length; i++) {
        const img = document.createElement("img");
        img.alt = `${layer.layer} channel ${i}`;
        grid.appendChild(img);
      }
      box.append(title, grid);
    }
  }
  const grids = box.querySelectorAll(".maps");
  layers.forEach((layer, i) => {
    const imgs = grids[i].querySelectorAll("img");
    layer.channels.forEach((src, j) => { imgs[j].src = src; });
  });
}

function showError(text) {
  $("message").textContent = text;
}

function clearAll() {
  state.sequence++;
  state.shown = state.sequence;  // answers still on their way are for the old drawing
  if (state.timer !== null) { clearTimeout(state.timer); state.timer = null; }
  resetCanvas();
  $("prediction").textContent = "–";
  $("confidence").textContent = "";
  $("message").textContent = "";
  $("processed").src = EMPTY_GIF;
  $("number").textContent = "–";
  $("digits").innerHTML = "";
  showBars(null, -1);
  const box = $("features");
  box.dataset.layout = "";
  box.innerHTML = '<p class="muted">Draw something to see the activations.</p>';
}

// -- controls --------------------------------------------------------------------------------------
function setMode() {
  const [w, h] = SIZES[numberMode() ? "number" : "digit"];
  document.body.classList.toggle("number-mode", numberMode());
  $("number-result").hidden = !numberMode();
  $("hint").textContent = numberMode() ? "write a number here" : "draw a digit here";
  canvas.width = w;
  canvas.height = h;
  clearAll();
}

$("clear").addEventListener("click", clearAll);
$("number-mode").addEventListener("change", setMode);
$("show-features").addEventListener("change", () => {
  $("features-card").hidden = !$("show-features").checked;
  schedulePrediction();
});
document.addEventListener("keydown", (event) => { if (event.key === "Escape") clearAll(); });

$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  clearAll();
  // Show the picture on the canvas (fitted, on white) but send the original file: full resolution.
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    const scale = Math.min(canvas.width / img.width, canvas.height / img.height);
    const w = img.width * scale, h = img.height * scale;
    ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  img.onerror = () => URL.revokeObjectURL(url);
  img.src = url;
  state.hasInk = true;
  $("hint").classList.add("hidden");
  send(file, file.name);
  $("upload").value = "";  // choosing the same file again fires "change" again
});

buildBars();
setMode();
