"""The one page at ``GET /``: pick or drop a photo, see the top-5 classes with their probabilities.

Self-contained (inline CSS and script, no font, image or script from anywhere else; a ``data:`` favicon so the
browser asks for nothing more), usable from the keyboard (a real file input behind a label, a live region that
announces the result) and readable at a phone's width. It calls ``/info`` once (title; whether the attention
overlay exists) and ``/predict?topk=5`` per photo; when the server answers 401 it shows a token field and sends
``Authorization: Bearer`` from then on.
"""
from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>fgvc: what is in this photo?</title>
<style>
  :root { color-scheme: light dark; --accent: #2563eb; --muted: #6b7280; }
  * { box-sizing: border-box; }
  body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; padding: 1rem;
         max-width: 44rem; }
  h1 { font-size: 1.35rem; margin: .2rem 0 .6rem; }
  #model { color: var(--muted); font-size: .9rem; margin: 0 0 1rem; overflow-wrap: anywhere; }
  #drop { display: block; border: 2px dashed var(--muted); border-radius: .75rem; padding: 1.5rem 1rem;
          text-align: center; cursor: pointer; }
  #drop.over, #drop:focus-within { border-color: var(--accent); outline: 3px solid var(--accent); outline-offset: 2px; }
  #file { position: absolute; width: 1px; height: 1px; opacity: 0; }
  .row { display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; margin: .8rem 0; }
  #token-row[hidden], #cam-row[hidden] { display: none; }
  input[type=password] { font: inherit; padding: .35rem .5rem; min-width: 12rem; flex: 1; }
  #status { min-height: 1.5rem; }
  #status.error { color: #b91c1c; }
  .pictures { display: flex; gap: .75rem; flex-wrap: wrap; }
  .pictures img { max-width: 100%; width: 20rem; height: auto; border-radius: .5rem; }
  ol { padding-left: 1.4rem; }
  li { margin: .35rem 0; }
  .bar { height: .5rem; background: var(--accent); border-radius: .25rem; min-width: 2px; }
  .name { font-weight: 600; overflow-wrap: anywhere; }
  .prob { color: var(--muted); font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<main>
<h1>What is in this photo?</h1>
<p id="model">Loading the model's description&hellip;</p>
<label id="drop" for="file">
  <strong>Choose a photo</strong> or drop one here
  <input id="file" type="file" accept="image/*">
</label>
<div class="row" id="cam-row" hidden>
  <label><input id="cam" type="checkbox"> show where the model looked (Grad-CAM overlay)</label>
</div>
<div class="row" id="token-row" hidden>
  <label for="token">Access token</label>
  <input id="token" type="password" autocomplete="off">
</div>
<p id="status" role="status" aria-live="polite"></p>
<div class="pictures" id="pictures"></div>
<ol id="results" aria-label="Top-5 classes"></ol>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let preview = null;

function headers() {
  const token = $("token").value.trim();
  return token ? { "Authorization": "Bearer " + token } : {};
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function describe() {
  try {
    const r = await fetch("/info", { headers: headers() });
    if (r.status === 401) { $("token-row").hidden = false; $("model").textContent = "This server needs an access token."; return; }
    const info = await r.json();
    $("model").textContent = [info.method, info.backbone, info.img_size + " px", info.classes + " classes",
                              info.backend].filter(Boolean).join(" \\u00b7 ");
    $("cam-row").hidden = !info.cam;
  } catch (e) {
    $("model").textContent = "The server did not answer.";
  }
}

function show(result) {
  const list = $("results");
  list.replaceChildren();
  for (const item of result.topk) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item["class"];
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = " " + (100 * item.prob).toFixed(1) + "%";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.max(0.5, 100 * item.prob) + "%";
    li.append(name, prob, bar);
    list.append(li);
  }
  const pictures = $("pictures");
  pictures.replaceChildren();
  const img = document.createElement("img");
  img.src = preview;
  img.alt = "the photo sent";
  pictures.append(img);
  if (result.cam) {
    const overlay = document.createElement("img");
    overlay.src = result.cam;
    overlay.alt = "where the model looked (Grad-CAM)";
    pictures.append(overlay);
  }
  say("Top " + result.topk.length + ": " + result.topk[0]["class"] + " (" + (100 * result.topk[0].prob).toFixed(1) + "%)", false);
}

async function send(file) {
  if (!file) return;
  if (preview) URL.revokeObjectURL(preview);
  preview = URL.createObjectURL(file);
  $("results").replaceChildren();
  say("Looking at " + file.name + "\\u2026", false);
  const form = new FormData();
  form.append("image", file, file.name);
  const query = "/predict?topk=5" + ($("cam").checked ? "&cam=1" : "");
  try {
    const r = await fetch(query, { method: "POST", body: form, headers: headers() });
    let body = null;
    try { body = await r.json(); } catch (e) { body = { error: "the server answered " + r.status }; }
    if (r.status === 401) { $("token-row").hidden = false; $("token").focus(); say("Enter the access token, then choose the photo again.", true); return; }
    if (!r.ok) { say(body.error || ("the server answered " + r.status), true); return; }
    const result = body.results[0];
    if (result.error) { say(result.error, true); return; }
    show(result);
  } catch (e) {
    say("The server could not be reached.", true);
  }
}

$("file").addEventListener("change", (e) => send(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files[0]); });
describe();
</script>
</body>
</html>
"""
