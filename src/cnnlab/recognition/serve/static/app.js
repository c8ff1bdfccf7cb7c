// The drawing page: a canvas, a marker-like brush, and live predictions from POST /api/predict.
// No framework: the whole page is this file, index.html and style.css.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });  // undo snapshots read pixels back
const SIZES = { digit: [280, 280], number: [840, 280] };  // canvas pixels in each mode
const PREDICT_EVERY_MS = 150;  // while drawing, ask at most this often; after the pen lifts, at once
const BUSY_AFTER_MS = 150;     // show "reading…" only for answers slower than this (no flicker)
const UNDO_DEPTH = 40;
const EMPTY_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==";

const state = {
  hasInk: false,
  pointerId: null,     // the one pointer drawing the current stroke; others (a resting thumb) are ignored
  points: [],          // the current stroke's recent points, for smoothing
  timer: null,         // pending throttled prediction
  request: null,       // {controller, sequence} of the request in flight: one at a time ...
  again: false,        // ... and one more if the drawing changed meanwhile
  sequence: 0,         // answers older than the last shown one are dropped
  shown: 0,
  undo: [],            // canvas snapshots, one per stroke: [{pixels, hasInk}]
  penUpAt: null,       // when the pen last lifted (event time), until its answer is shown
  penUpSequence: 0,    // the first request that sees the finished stroke
  busyTimer: null,
  retryTimer: null,
};
// Post-stroke latency (pen lifted -> answer on screen), in ms: read by the browser test, shown nowhere.
window.cnnlab = { latencies: [] };

// -- drawing -------------------------------------------------------------------------------------
function brushWidth() {
  // MNIST-like stroke: about 1/14 of the digit's box, times the brush-size slider.
  return (canvas.height / 14) * Number($("brush").value);
}

function resetCanvas() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#111";
  ctx.fillStyle = "#111";
  ctx.lineCap = "round";         // round caps and joins: the line looks like a felt marker
  ctx.lineJoin = "round";
  ctx.lineWidth = brushWidth();
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

function pushUndo() {
  state.undo.push({ pixels: ctx.getImageData(0, 0, canvas.width, canvas.height), hasInk: state.hasInk });
  if (state.undo.length > UNDO_DEPTH) state.undo.shift();
  $("undo").disabled = false;
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  // A second finger (a thumb resting on the screen) neither joins this stroke nor ends it.
  if (state.pointerId !== null) return;
  state.pointerId = event.pointerId;
  canvas.setPointerCapture(event.pointerId);  // keep the stroke even if the pointer leaves the canvas
  pushUndo();
  ctx.lineWidth = brushWidth();
  const p = canvasPoint(event);
  state.points = [p];
  dot(p);
  state.hasInk = true;
  $("hint").classList.add("hidden");
  schedulePrediction();
});

canvas.addEventListener("pointermove", (event) => {
  if (event.pointerId !== state.pointerId) return;
  event.preventDefault();
  // Coalesced events: the browser may deliver several pointer positions per frame; use them all.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) extendStroke(canvasPoint(e));
  schedulePrediction();
});

function endStroke(event) {
  if (event.pointerId !== state.pointerId) return;
  state.pointerId = null;
  state.points = [];
  if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
  state.penUpAt = event.timeStamp;  // same clock as performance.now()
  predictNow();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
// Capture lost without a pointerup (the window lost focus mid-stroke): end the stroke, or no pointer
// could ever draw again.
canvas.addEventListener("lostpointercapture", endStroke);

// -- talking to the server -------------------------------------------------------------------------
function numberMode() { return $("number-mode").checked; }

function predictUrl() {
  const params = new URLSearchParams();
  if ($("show-features").checked && !numberMode()) params.set("features", "true");
  if ($("show-why").checked && !numberMode()) params.set("explain", "true");
  if (numberMode()) params.set("number", "true");
  return "/api/predict?" + params.toString();
}

function schedulePrediction() {
  // While drawing: a throttle, so predictions follow the pen every 150 ms.
  if (state.timer === null) state.timer = setTimeout(() => { state.timer = null; predictCanvas(); }, PREDICT_EVERY_MS);
}

function predictNow() {
  // The pen lifted (or a stroke was undone): the drawing is final, so ask now. An answer still on its
  // way is for an older drawing: cancel it rather than wait for it.
  if (state.timer !== null) { clearTimeout(state.timer); state.timer = null; }
  if (state.request) {
    state.request.controller.abort();
    state.request = null;  // its own cleanup sees it was replaced, and leaves the new one alone
  }
  state.again = false;
  state.penUpSequence = state.sequence + 1;
  predictCanvas();
}

function predictCanvas() {
  if (!state.hasInk) return;
  if (state.request) { state.again = true; return; }
  // toDataURL encodes now, synchronously (a few ms). canvas.toBlob() was often held back by Chromium
  // for ~1 s after the last input event, which delayed the answer after the pen lifted.
  const body = JSON.stringify({ image: canvas.toDataURL("image/png") });
  send(body, { "content-type": "application/json" });
}

async function send(body, headers = {}) {
  const sequence = ++state.sequence;
  const controller = new AbortController();
  const request = { controller, sequence };
  state.request = request;
  clearTimeout(state.retryTimer);
  clearTimeout(state.busyTimer);
  state.busyTimer = setTimeout(() => showBusy(true), BUSY_AFTER_MS);
  let retryAfter = null;
  try {
    const response = await fetch(predictUrl(), { method: "POST", body, headers, signal: controller.signal });
    const answer = await response.json().catch(() => ({}));
    if (sequence < state.shown) return;
    state.shown = sequence;
    if (response.status === 503) {
      retryAfter = Number(response.headers.get("retry-after")) || 1;
      showError(`the server is busy: asking again in ${retryAfter} s`);
    } else if (!response.ok) {
      showError(answer.detail || `the server answered ${response.status}`);
    } else if (state.hasInk) {
      showResult(answer);
      noteLatency(sequence);
    }
  } catch (error) {
    if (error.name !== "AbortError") showError("cannot reach the server: " + error.message);
  } finally {
    if (state.request === request) {
      state.request = null;
      clearTimeout(state.busyTimer);
      showBusy(false);
      if (retryAfter !== null) {
        state.retryTimer = setTimeout(() => { if (state.hasInk) predictNow(); }, retryAfter * 1000);
      } else if (state.again) {
        state.again = false;
        predictCanvas();  // the drawing changed while we waited: ask again at once
      }
    }
  }
}

function noteLatency(sequence) {
  if (state.penUpAt === null || sequence < state.penUpSequence || state.pointerId !== null) return;
  window.cnnlab.latencies.push(performance.now() - state.penUpAt);
  state.penUpAt = null;
}

function showBusy(on) {
  $("busy").hidden = !on;
  $("result-card").setAttribute("aria-busy", on ? "true" : "false");
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

// A percentage that never rounds up to a certainty the network does not have: 0.99996 -> ">99.9%".
function percent(p, decimals) {
  const text = (p * 100).toFixed(decimals);
  if (p < 1 && Number(text) >= 100) return `>${(100 - 10 ** -decimals).toFixed(decimals)}%`;
  return `${text}%`;
}

function showBars(probabilities, prediction) {
  for (let digit = 0; digit < 10; digit++) {
    const row = $(`bar-${digit}`);
    const p = probabilities ? probabilities[digit] : 0;
    row.querySelector(".bar-fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".pct").textContent = probabilities ? percent(p, 1) : "–";
    row.classList.toggle("top", digit === prediction);
    row.setAttribute("aria-label", `${digit}: ${probabilities ? percent(p, 1) : "no answer"}`);
  }
}

function setMessage(text, kind = "") {
  const message = $("message");
  message.textContent = text;
  message.className = "message " + kind;
}

function notADigit(reason) {
  // The server says why it found no digit ("no digit found: the picture is blank ..."): show the why.
  const why = (reason || "").replace(/^no digit found:?\s*/i, "") || "no digit found";
  return `not a digit: ${why}`;
}

function showEmpty() {
  const prediction = $("prediction");
  prediction.textContent = numberMode() ? "write a number" : "draw a digit";
  prediction.classList.add("empty");
  $("confidence").textContent = "";
  $("processed-figure").hidden = true;
  $("processed").src = EMPTY_GIF;
  showWhy(null);
  $("number").textContent = "write a number";
  $("number").classList.add("empty");
  $("digits").innerHTML = "";
  showBars(null, -1);
}

function showResult(result) {
  const has = result.prediction !== null && result.prediction !== undefined;
  const prediction = $("prediction");
  if (has) {
    prediction.textContent = String(result.prediction);
    prediction.classList.remove("empty");
    $("confidence").textContent = `${percent(result.top_k[0].probability, 1)} sure`;
    setMessage("");
  } else {
    // Never a digit: an empty answer box, and the reason in words.
    prediction.textContent = "";
    prediction.classList.add("empty");
    $("confidence").textContent = "";
    setMessage(notADigit(result.message), "no-digit");
  }
  $("processed-figure").hidden = !result.processed;
  $("processed").src = result.processed || EMPTY_GIF;
  showWhy(result.explanation);
  showBars(result.probabilities, result.prediction);
  if (numberMode()) showNumber(result);
  if (result.feature_maps) showFeatures(result.feature_maps);
}

function showWhy(explanation) {
  // Grad-CAM from the server: a translucent heat map over the 28x28 picture, "what made it say 7".
  const why = $("why");
  why.hidden = !explanation;
  why.src = explanation ? explanation.heatmap : EMPTY_GIF;
  $("processed-caption").textContent = explanation ? `what made it say ${explanation.label}` : "what the network sees";
}

function showNumber(result) {
  const number = $("number");
  number.textContent = result.number || "";
  number.classList.toggle("empty", !result.number);
  const digits = $("digits");
  digits.innerHTML = "";
  for (const d of result.digits || []) {
    const chip = document.createElement("div");
    chip.className = "digit-chip";
    chip.title = `${d.label}: ${percent(d.probability, 1)}`;
    chip.innerHTML = `<img alt="digit ${d.label} as the network sees it"><b>${d.label}</b><span>${percent(d.probability, 0)}</span>`;
    chip.querySelector("img").src = d.processed;
    digits.appendChild(chip);
  }
}

function showFeatures(layers) {
  const box = $("features");
  if (!layers.length) {
    box.innerHTML = '<p class="muted">No feature maps for this picture.</p>';
    box.dataset.layout = "";
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
  setMessage(text, "error");
}

function forgetAnswers() {
  state.sequence++;
  state.shown = state.sequence;  // answers still on their way are for the old drawing
  if (state.timer !== null) { clearTimeout(state.timer); state.timer = null; }
  clearTimeout(state.retryTimer);
  state.penUpAt = null;
}

function clearAll() {
  forgetAnswers();
  resetCanvas();
  showEmpty();
  setMessage("");
  const box = $("features");
  box.dataset.layout = "";
  box.innerHTML = '<p class="muted">Draw something to see the activations.</p>';
}

function clearDrawing() {
  // Clear is a step that Undo can take back.
  if (state.hasInk) pushUndo();
  clearAll();
}

function undo() {
  const last = state.undo.pop();
  $("undo").disabled = state.undo.length === 0;
  if (!last || state.pointerId !== null) return;
  forgetAnswers();
  ctx.putImageData(last.pixels, 0, 0);
  state.hasInk = last.hasInk;
  $("hint").classList.toggle("hidden", state.hasInk);
  if (state.hasInk) predictNow();
  else clearAll();
}

function resetUndo() {
  state.undo = [];
  $("undo").disabled = true;
}

// -- controls --------------------------------------------------------------------------------------
function inkBeyond(width, height) {
  // Is there ink outside the top-left width x height of the canvas? (Switching to the smaller canvas
  // would cut it off.)
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let y = 0; y < canvas.height; y++) {
    for (let x = y < height ? width : 0; x < canvas.width; x++) {
      if (pixels[(y * canvas.width + x) * 4] < 250) return true;
    }
  }
  return false;
}

function setMode() {
  const number = numberMode();
  const [w, h] = SIZES[number ? "number" : "digit"];
  if (state.hasInk && (w < canvas.width || h < canvas.height) && inkBeyond(w, h)) {
    // The drawing does not fit the smaller canvas: ask before throwing it away.
    if (!window.confirm("Your drawing does not fit the single-digit canvas. Clear it and switch?")) {
      $("number-mode").checked = !number;
      return;
    }
    state.hasInk = false;
  }
  const keep = state.hasInk ? ctx.getImageData(0, 0, Math.min(w, canvas.width), Math.min(h, canvas.height)) : null;
  document.body.classList.toggle("number-mode", number);
  $("number-result").hidden = !number;
  $("features-toggle").hidden = number;  // number mode shows no feature maps: no toggle for them
  $("why-toggle").hidden = number;
  $("features-card").hidden = number || !$("show-features").checked;
  $("hint").textContent = number ? "write a number here" : "draw a digit here";
  canvas.setAttribute("aria-label", `drawing area: ${number ? "write a number" : "draw one digit"} with the mouse, a pen or a finger`);
  canvas.width = w;
  canvas.height = h;
  resetUndo();
  clearAll();
  if (keep) {
    ctx.putImageData(keep, 0, 0);  // the drawing stays where it was (a digit becomes a number's first)
    state.hasInk = true;
    $("hint").classList.add("hidden");
    predictNow();
  }
}

$("clear").addEventListener("click", clearDrawing);
$("undo").addEventListener("click", undo);
$("number-mode").addEventListener("change", setMode);
$("brush").addEventListener("input", () => { ctx.lineWidth = brushWidth(); });
$("show-why").addEventListener("change", () => { if (state.hasInk) predictNow(); });
$("show-features").addEventListener("change", () => {
  $("features-card").hidden = !$("show-features").checked;
  if (state.hasInk) predictNow();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") clearDrawing();
  if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  }
});

$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  clearAll();
  resetUndo();
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
  const form = new FormData();
  form.append("file", file, file.name);
  send(form);
  $("upload").value = "";  // choosing the same file again fires "change" again
});

buildBars();
setMode();
