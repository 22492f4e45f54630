"""The page served at ``GET /``: upload or pick an image, see the top-k items with their scores
and labels. One self-contained HTML document (no file or script from elsewhere), kept in a
Python string so that it installs with the package. ``/?id=12`` runs the query of item 12 when
the page opens (a link to a result)."""

__all__ = ['PAGE']

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gluon-dml search</title>
<style>
  :root { --ink: #1f2430; --muted: #667085; --line: #d0d5dd; --accent: #2f6fde; --bg: #eef1f5; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--ink); background: var(--bg); }
  header { background: #1f2430; color: #fff; padding: 10px 20px; display: flex; gap: 16px;
           align-items: baseline; }
  header h1 { font-size: 17px; margin: 0; font-weight: 600; }
  header #about { color: #c7cbd4; font-size: 13px; }
  header a { color: #9ec1ff; margin-left: auto; font-size: 13px; }
  main { display: grid; grid-template-columns: 300px 1fr; gap: 18px; padding: 18px 20px; }
  .panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted);
       margin: 0 0 10px; }
  #drop { display: block; border: 2px dashed var(--line); border-radius: 8px; padding: 14px;
          text-align: center; cursor: pointer; color: var(--muted); }
  #drop.over { border-color: var(--accent); background: #f0f5ff; }
  #drop input { display: none; }
  #drop b { color: var(--accent); }
  #query { margin-top: 12px; text-align: center; min-height: 24px; }
  #query img { width: 160px; height: 160px; object-fit: contain; background: #fff;
               border: 1px solid var(--line); image-rendering: pixelated; }
  #query .what { color: var(--muted); font-size: 12px; word-break: break-all; }
  .row { display: flex; gap: 10px; margin-top: 12px; align-items: center; }
  .row label { color: var(--muted); font-size: 12px; }
  .row input { width: 100%; padding: 5px 7px; border: 1px solid var(--line); border-radius: 5px;
               font: inherit; }
  #picks { display: grid; grid-template-columns: repeat(4, 1fr); gap: 6px; margin-top: 8px; }
  #picks img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #fff; cursor: pointer;
               border: 1px solid var(--line); border-radius: 4px; image-rendering: pixelated; }
  #picks img:hover { border-color: var(--accent); }
  button { margin-top: 8px; font: inherit; padding: 4px 10px; border: 1px solid var(--line);
           background: #fff; border-radius: 5px; cursor: pointer; }
  #status { color: var(--muted); margin-bottom: 12px; min-height: 20px; }
  #status.error { color: #b42318; font-weight: 600; }
  #results { display: grid; grid-template-columns: repeat(auto-fill, 128px); gap: 12px; }
  .hit { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px;
         padding: 7px; cursor: pointer; }
  .hit:hover { border-color: var(--accent); }
  .hit img { display: block; width: 112px; height: 112px; object-fit: contain; background: #fff;
             image-rendering: pixelated; }
  .hit figcaption { font-size: 12px; margin-top: 5px; display: flex; justify-content: space-between; }
  .hit .label { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
                max-width: 64px; }
  .hit .score { color: var(--muted); font-variant-numeric: tabular-nums; }
  .hit .rank { display: block; color: var(--muted); font-size: 11px; }
  .noimage { width: 112px; height: 112px; display: flex; align-items: center; justify-content: center;
             color: var(--muted); font-size: 12px; background: #f7f8fa; }
</style>
</head>
<body>
<header><h1>gluon-dml search</h1><span id="about">loading the catalogue&hellip;</span>
  <a href="/docs">API</a></header>
<main>
  <section class="panel">
    <h2>Query</h2>
    <label id="drop">Drop an image here or <b>choose a file</b>
      <input id="file" type="file" accept="image/*"></label>
    <div id="query"></div>
    <div class="row"><label for="k">k</label><input id="k" type="number" min="1" value="12">
      <label for="label">label</label><input id="label" placeholder="any"></div>
    <h2 style="margin-top:16px">Or pick an item</h2>
    <div id="picks"></div>
    <button id="more" type="button">Other items</button>
  </section>
  <section class="panel">
    <h2>Nearest items</h2>
    <div id="status">Upload or pick an image.</div>
    <div id="results"></div>
  </section>
</main>
<script>
"use strict";
const $ = (s) => document.querySelector(s);
let info = null;

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || ("The service answered " + response.status + "."));
  }
  return body;
}

function status(text, isError) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function kValue() {
  const k = parseInt($("#k").value, 10);
  return Number.isFinite(k) ? k : 12;
}

function showQuery(src, what) {
  const box = $("#query");
  box.innerHTML = "";
  const img = document.createElement("img");
  img.src = src;
  img.alt = what;
  const caption = document.createElement("div");
  caption.className = "what";
  caption.textContent = what;
  box.append(img, caption);
}

function render(result) {
  const grid = $("#results");
  grid.innerHTML = "";
  result.hits.forEach((hit, rank) => {
    const fig = document.createElement("figure");
    fig.className = "hit";
    fig.dataset.id = hit.id;
    fig.title = (hit.path || "item " + hit.id) + " (click: search with it)";
    let thumb;
    if (hit.path) {
      thumb = document.createElement("img");
      thumb.src = "/items/" + hit.id + "/image?size=192";
      thumb.alt = "item " + hit.id;
    } else {
      thumb = document.createElement("div");
      thumb.className = "noimage";
      thumb.textContent = "no image";
    }
    const caption = document.createElement("figcaption");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = hit.label === null || hit.label === undefined ? "\u2013" : String(hit.label);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    caption.append(label, score);
    const rankLine = document.createElement("span");
    rankLine.className = "rank";
    rankLine.textContent = "#" + (rank + 1) + " \u00b7 id " + hit.id;
    fig.append(thumb, caption, rankLine);
    fig.addEventListener("click", () => searchId(hit.id));
    grid.append(fig);
  });
  document.body.dataset.hits = String(result.hits.length);
}

async function run(request, what) {
  status("Searching\u2026");
  document.body.dataset.hits = "";
  try {
    const result = await request();
    render(result);
    status(result.hits.length + " nearest of " + result.count + " items to " + what + " (" +
           result.took_ms.toFixed(1) + " ms)");
  } catch (err) {
    render({hits: []});
    status(err.message, true);
    document.body.dataset.hits = "error";
  }
}

function searchFile(file) {
  if (!file) return;
  showQuery(URL.createObjectURL(file), file.name);
  const form = new FormData();
  form.append("image", file);
  const query = new URLSearchParams({k: kValue()});
  const label = $("#label").value.trim();
  if (label) query.append("filter", "label=" + label);
  run(() => api("/search?" + query, {method: "POST", body: form}), file.name);
}

function searchId(id) {
  showQuery("/items/" + id + "/image?size=192", "item " + id);
  const body = {id: id, k: kValue()};
  const label = $("#label").value.trim();
  if (label) body.filter = {label: label};
  run(() => api("/search", {method: "POST", headers: {"Content-Type": "application/json"},
                            body: JSON.stringify(body)}), "item " + id);
}

async function loadPicks() {
  const picks = $("#picks");
  const page = await api("/items?sample=12");
  picks.innerHTML = "";
  page.items.filter((item) => item.path).forEach((item) => {
    const img = document.createElement("img");
    img.src = "/items/" + item.id + "/image?size=128";
    img.alt = "item " + item.id;
    img.title = "item " + item.id + (item.label !== null ? " (" + item.label + ")" : "");
    img.addEventListener("click", () => searchId(item.id));
    picks.append(img);
  });
}

async function start() {
  try {
    info = await api("/info");
    $("#about").textContent = [info.model, info.method + " run", info.dim + "-d " + info.kind,
      info.backend + " " + info.index_type + " index", info.count + " items"].join(" \u00b7 ");
    $("#k").max = info.limits.max_k;
    await loadPicks();
  } catch (err) {
    status(err.message, true);
  }
  const id = new URLSearchParams(location.search).get("id");
  if (id !== null && /^\d+$/.test(id)) searchId(Number(id));
  window.pageReady = true;
}

$("#file").addEventListener("change", (e) => searchFile(e.target.files[0]));
$("#more").addEventListener("click", () => loadPicks().catch((err) => status(err.message, true)));
const drop = $("#drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  searchFile(e.dataTransfer.files[0]);
});
start();
</script>
</body>
</html>
"""
