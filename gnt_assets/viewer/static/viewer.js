// The viewer page: lists the catalog's collections and items; #<collection>/<item> shows one item on the map.
// document.body.dataset.ready holds the shown item once its tiles and features are drawn (the browser test waits for it).
"use strict";

const map = new maplibregl.Map({
  container: "map",
  style: { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#dfe4ea" } }] },
  center: [0, 20], zoom: 1, attributionControl: false, fadeDuration: 0,
});
map.addControl(new maplibregl.NavigationControl(), "top-right");
window.viewerMap = map;  // for the browser test
map.addControl(new maplibregl.ScaleControl(), "bottom-left");
window.viewerErrors = [];
map.on("error", (event) => window.viewerErrors.push(String(event.error && event.error.message || event.error)));

let collections = [];
let shown = [];  // ids of the layers and sources of the item on the map

function findItem(collectionId, itemId) {
  const collection = collections.find((c) => c.id === collectionId);
  return collection && collection.items.find((i) => i.id === itemId);
}

function listCatalog() {
  const root = document.getElementById("collections");
  root.textContent = "";
  for (const collection of collections) {
    const heading = document.createElement("h2");
    heading.textContent = `${collection.title} (${collection.items.length})`;
    const list = document.createElement("ul");
    for (const item of collection.items) {
      const entry = document.createElement("li");
      const link = document.createElement("a");
      link.href = `#${collection.id}/${item.id}`;
      link.textContent = item.title;
      link.dataset.key = `${collection.id}/${item.id}`;
      entry.appendChild(link);
      list.appendChild(entry);
    }
    root.append(heading, list);
  }
}

function clearMap() {
  for (const id of shown) {
    if (map.getLayer(id)) map.removeLayer(id);
    if (map.getSource(id)) map.removeSource(id);
  }
  shown = [];
}

function ramp(layer) {
  const [low, high] = layer.stretch;
  const stops = layer.colors.flatMap((colour, i) => [low + (i / (layer.colors.length - 1)) * (high - low), colour]);
  return ["case", ["==", ["typeof", ["get", layer.property]], "number"],
          ["interpolate", ["linear"], ["get", layer.property], ...stops], "rgba(0,0,0,0)"];
}

function addLayer(layer, index, item) {
  const id = `layer-${index}`;
  const absolute = (path) => window.location.origin + path;  // not new URL(): it would escape the {z}/{x}/{y} placeholders
  if (layer.type === "raster") {
    map.addSource(id, { type: "raster", tiles: [absolute(layer.tiles)], tileSize: 256, bounds: item.bbox, minzoom: layer.minzoom || 0, maxzoom: 24 });
    map.addLayer({ id, type: "raster", source: id, minzoom: layer.minzoom || 0, paint: { "raster-opacity": layer.opacity || 1, "raster-resampling": "nearest", "raster-fade-duration": 0 } });
  } else {
    map.addSource(id, { type: "geojson", data: absolute(layer.geojson) });
    if (layer.type === "fill") {
      map.addLayer({ id, type: "fill", source: id, paint: { "fill-color": ramp(layer), "fill-outline-color": "rgba(0,0,0,0.3)" } });
    } else {
      map.addLayer({ id, type: "line", source: id, paint: { "line-color": layer.color, "line-width": 2 } });
    }
  }
  shown.push(id);
}

function showLegend(item, view) {
  const legend = document.getElementById("legend");
  legend.textContent = "";
  const spec = view.legend || {};
  if (spec.kind === "ramp") {
    const label = document.createElement("p");
    label.textContent = spec.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.background = `linear-gradient(to right, ${spec.colors.join(", ")})`;
    const ticks = document.createElement("div");
    ticks.className = "ticks";
    for (const value of [spec.low, (spec.low + spec.high) / 2, spec.high]) {
      const tick = document.createElement("span");
      tick.textContent = Number(value.toPrecision(4)).toString();
      ticks.appendChild(tick);
    }
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = spec.note;
    legend.append(label, bar, ticks, note);
  }
  const lines = [...(spec.lines || []), item.footprint ? "dashed grey: the item's footprint (bbox)" : null].filter(Boolean);
  for (const line of lines) {
    const text = document.createElement("p");
    if (line.startsWith("red outline")) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = "#ff2020";
      text.appendChild(swatch);
    }
    text.appendChild(document.createTextNode(line));
    legend.appendChild(text);
  }
  legend.hidden = false;
}

async function show(key) {
  const [collectionId, itemId] = key.split("/");
  const item = findItem(collectionId, itemId);
  delete document.body.dataset.ready;
  document.querySelectorAll("#sidebar a").forEach((a) => a.classList.toggle("current", a.dataset.key === key));
  if (!item) {
    document.getElementById("title").textContent = `no item ${key} in the catalog`;
    return;
  }
  const title = document.getElementById("title");
  title.textContent = item.title;
  if (item.dagster) {
    const link = document.createElement("a");
    link.href = item.dagster;
    link.textContent = " (Dagster asset)";
    title.appendChild(link);
  }
  const response = await fetch(`/api/view/${encodeURIComponent(collectionId)}/${encodeURIComponent(itemId)}`);
  if (!response.ok) {
    title.textContent += `: ${await response.text()}`;
    return;
  }
  const view = await response.json();
  clearMap();
  view.layers.forEach((layer, index) => addLayer(layer, index, item));
  if (item.footprint) {
    map.addSource("footprint", { type: "geojson", data: item.footprint });
    map.addLayer({ id: "footprint", type: "line", source: "footprint", paint: { "line-color": "#555", "line-width": 1, "line-dasharray": [3, 2] } });
    shown.push("footprint");
  }
  showLegend(item, view);
  const bounds = view.focus || item.bbox;
  if (bounds) map.fitBounds([[bounds[0], bounds[1]], [bounds[2], bounds[3]]], { padding: 40, animate: false, maxZoom: 20 });
  map.once("idle", () => { document.body.dataset.ready = key; });
}

async function start() {
  collections = await (await fetch("/api/collections")).json();
  listCatalog();
  const route = () => { if (window.location.hash.length > 1) show(decodeURIComponent(window.location.hash.slice(1))); };
  window.addEventListener("hashchange", route);
  if (map.loaded()) route(); else map.once("load", route);
}

start();
