"""The HTML pages ``--serve`` shows: one stream's live picture, class legend and live figures (``PAGE``), or a grid
of every stream's (``GRID_PAGE``, several sources).

Inline (no template files, no scripts from elsewhere) so it works on a box with no internet
and ships inside the package without package-data rules. It is a constant: the legend and
the figures come from ``/stats.json``, polled once a second, so a page opened while the
model is still loading fills in when the stream starts. The picture sits at the top-left
corner at its served size, so a viewer sees the frame pixel for pixel.
"""

from __future__ import annotations

from .stats import STAGES

STYLE = """
body { margin: 0; display: flex; flex-wrap: wrap; align-items: flex-start; background: #16181b; color: #e8e8e8;
       font: 14px/1.4 system-ui, sans-serif; }
#live { display: block; flex: none; max-width: 100%; background: #000; }
aside { flex: 1 1 240px; max-width: 420px; padding: 10px 16px; }
h1 { font-size: 16px; margin: 0 0 4px; }
h2 { font-size: 13px; margin: 12px 0 4px; color: #9aa0a6; font-weight: normal; text-transform: uppercase; }
#state { margin: 0; color: #9aa0a6; }
ul { list-style: none; padding: 0; margin: 0; }
li { display: flex; align-items: center; gap: 8px; }
.swatch { width: 14px; height: 14px; border: 1px solid #777; }
table { border-collapse: collapse; }
th { text-align: left; font-weight: normal; color: #9aa0a6; padding-right: 12px; white-space: nowrap; }
td { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
"""

COMMON_SCRIPT = """
const $ = (id) => document.getElementById(id);
function showLegend(classes) {
  if (!classes || !classes.length) $("legend").textContent = "the model names no classes";
  for (const c of classes || []) {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.colour;
    const item = document.createElement("li");
    item.append(swatch, c.name);
    $("legend").append(item);
  }
}
async function latestStats() {  // null once the server is gone
  try {
    return await (await fetch("/stats.json", {cache: "no-store"})).json();
  } catch (error) {
    $("state").textContent = "stream ended";
    return null;
  }
}
"""

SCRIPT = """
$("live").addEventListener("load", () => { $("state").textContent = "live"; }, {once: true});
$("live").addEventListener("error", () => { $("state").textContent = "no picture: the stream ended or has its most clients"; });
async function refresh() {
  const s = await latestStats();
  if (!s) return;
  if (s.classes && !$("legend").childNodes.length) showLegend(s.classes);
  $("fps").textContent = s.fps.toFixed(1);
  $("frames").textContent = s.frames;
  $("dropped").textContent = s.dropped;
  $("reconnects").textContent = s.reconnects + " of " + s.reconnect_attempts;
  for (const [name, t] of Object.entries(s.stages_ms)) $(name).textContent = t.p50_ms.toFixed(1) + " / " + t.p95_ms.toFixed(1) + " ms";
  for (const key of ["backend", "model", "source", "clients"]) $(key).textContent = s[key];
  setTimeout(refresh, 1000);
}
refresh();
"""


def table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f'<tr><th>{label}</th><td id="{key}">-</td></tr>' for key, label in rows) + "</table>"


PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fcn_edge live</title><style>{STYLE}</style></head>
<body>
<img id="live" src="/stream.mjpg" alt="live overlay">
<aside>
<h1>fcn_edge live</h1>
<p id="state">connecting</p>
<h2>Classes</h2>
<ul id="legend"></ul>
<h2>Now</h2>
{table([("fps", "fps"), ("frames", "frames"), ("dropped", "dropped"), ("reconnects", "reconnects")])}
<h2>Latency p50 / p95</h2>
{table(list(STAGES.items()))}
<h2>Run</h2>
{table([("backend", "backend"), ("model", "model"), ("source", "source"), ("clients", "watching")])}
</aside>
<script>{COMMON_SCRIPT}{SCRIPT}</script>
</body>
</html>
""".encode()

GRID_STYLE = """
body { margin: 0; padding: 8px; background: #16181b; color: #e8e8e8; font: 14px/1.4 system-ui, sans-serif; }
header { display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; margin-bottom: 8px; }
h1 { font-size: 16px; margin: 0; }
#state, #run { color: #9aa0a6; margin: 0; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 8px; }
figure { margin: 0; background: #000; }
figure img { display: block; width: 100%; height: auto; }
figcaption { padding: 4px 6px; background: #22252a; font-variant-numeric: tabular-nums; }
figcaption b { margin-right: 8px; }
#legend { display: flex; flex-wrap: wrap; gap: 10px; list-style: none; padding: 0; margin: 8px 0 0; }
#legend li { display: flex; align-items: center; gap: 4px; }
.swatch { width: 12px; height: 12px; border: 1px solid #777; }
"""

GRID_SCRIPT = """
function tile(s) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.id = "live" + s.id;
  img.alt = "stream " + s.name;
  img.addEventListener("load", () => { figure.dataset.live = "1"; }, {once: true});
  img.src = "/stream/" + s.id + ".mjpg";
  const caption = document.createElement("figcaption");
  const name = document.createElement("b");
  name.textContent = s.name;
  const figures = document.createElement("span");
  figures.id = "figures" + s.id;
  caption.append(name, figures);
  figure.append(img, caption);
  return figure;
}
async function refresh() {
  const s = await latestStats();
  if (!s) return;
  if (!$("grid").childNodes.length) {
    for (const stream of s.streams) $("grid").append(tile(stream));
    showLegend(s.classes);
    $("run").textContent = s.streams.length + " streams, " + s.backend + ", " + s.model;
  }
  $("state").textContent = s.running ? "live" : "ended";
  for (const t of s.streams) {
    const infer = t.stages_ms.infer;
    $("figures" + t.id).textContent = t.fps.toFixed(1) + " fps, " + t.frames + " frames, " + t.dropped + " dropped, "
      + t.reconnects + "/" + t.reconnect_attempts + " reconnects, infer " + infer.p50_ms.toFixed(0) + "/" + infer.p95_ms.toFixed(0) + " ms"
      + (t.running ? "" : " (ended)");
  }
  setTimeout(refresh, 1000);
}
refresh();
"""

GRID_PAGE = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fcn_edge live: all streams</title><style>{GRID_STYLE}</style></head>
<body>
<header><h1>fcn_edge live</h1><p id="state">connecting</p><p id="run"></p></header>
<main id="grid"></main>
<ul id="legend"></ul>
<script>{COMMON_SCRIPT}{GRID_SCRIPT}</script>
</body>
</html>
""".encode()
