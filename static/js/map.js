// The tactical map: offline world basemap, optional PMTiles or MBTiles detail, live markers from the
// page's SSE stream (the same EventSource htmx opened) drawn as MIL-STD-2525 symbols (symbols.js,
// milsymbol), trails from stored tracks. CSP-safe: a module file, DOM built with textContent
// (never innerHTML from data), symbols as data: image URLs.
import * as maplibregl from "/static/vendor/maplibre/maplibre-gl.mjs";

const el = document.getElementById("map");
if (el && !el.dataset.ready) {
  el.dataset.ready = "1";
  const styleFor = () => {
    const light = document.documentElement.getAttribute("data-theme") === "light";
    const c = light
      ? { bg: "#b8d3e6", land: "#eef2e6", border: "#9aa7b3" }
      : { bg: "#0b1620", land: "#1d3340", border: "#3a6070" };
    return {
      version: 8,
      sources: { world: { type: "geojson", data: el.dataset.basemap } },
      layers: [
        { id: "background", type: "background", paint: { "background-color": c.bg } },
        { id: "land", type: "fill", source: "world", paint: { "fill-color": c.land } },
        { id: "borders", type: "line", source: "world", paint: { "line-color": c.border, "line-width": 0.6 } },
      ],
    };
  };

  const map = new maplibregl.Map({ container: el, style: styleFor(), center: [0, 20], zoom: 1.5, attributionControl: false });
  map.addControl(new maplibregl.NavigationControl(), "bottom-right");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");

  const markers = new Map();
  let fitted = false;

  // Cameras: field-of-view footprints, and their tracked objects at their projected ground positions
  // (markers coloured by threat, short trails kept here, a click opens the camera with the track picked).
  const cameras = new Map();  // camera id → { footprint, objects: Map(track id → entry) }
  const TRAIL = 20;  // positions kept per track
  const toggle = document.getElementById("show-tracks");
  const showTracks = () => !toggle || toggle.checked;

  // Footprints and object trails redraw at most once a second: each redraw repaints the whole map
  // (WebGL), and a camera reports its objects several times a second. Markers still move at once.
  const CAMERA_REDRAW_MS = 1000;
  let cameraDue = 0, cameraTimer = 0;
  function cameraGeojson() {
    if (cameraTimer) { return; }
    cameraTimer = window.setTimeout(() => {
      cameraTimer = 0;
      cameraDue = performance.now() + CAMERA_REDRAW_MS;
      drawCameras();
    }, Math.max(0, cameraDue - performance.now()));
  }

  function drawCameras() {
    const prints = [], trails = [];
    for (const [id, cam] of cameras) {
      if (cam.footprint) {
        prints.push({ type: "Feature", properties: { id }, geometry: { type: "Polygon", coordinates: [cam.footprint] } });
      }
      for (const [tid, o] of cam.objects) {
        if (o.trail.length > 1) {
          trails.push({ type: "Feature", properties: { id: tid, threat: o.threat }, geometry: { type: "LineString", coordinates: o.trail } });
        }
      }
    }
    if (map.getSource("footprints")) {
      map.getSource("footprints").setData({ type: "FeatureCollection", features: prints });
      map.getSource("track-trails").setData({ type: "FeatureCollection", features: trails });
    }
    el.dataset.footprints = String(prints.length);
  }

  function updateCamera(m) {
    const layer = m.camera;
    let cam = cameras.get(m.id);
    if (!layer) {
      if (cam) { cam.objects.forEach((o) => o.marker.remove()); cameras.delete(m.id); cameraGeojson(); }
      return;
    }
    if (!cam) { cam = { footprint: null, objects: new Map() }; cameras.set(m.id, cam); }
    cam.footprint = layer.footprint;
    const seen = new Set();
    for (const o of layer.objects) {
      seen.add(o.id);
      let entry = cam.objects.get(o.id);
      if (!entry) {
        const node = document.createElement("button");
        node.type = "button";
        node.className = "track-marker";
        node.dataset.trackId = o.id;
        node.dataset.camera = m.id;
        node.hidden = !showTracks();
        node.addEventListener("click", (e) => {
          e.stopPropagation();
          window.location.href = "/entities/" + encodeURIComponent(m.id) + "?track=" + encodeURIComponent(o.id);
        });
        const marker = new maplibregl.Marker({ element: node }).setLngLat([o.lon, o.lat]).addTo(map);
        entry = { marker, node, trail: [] };
        cam.objects.set(o.id, entry);
      }
      if (entry.threat !== o.threat) {  // classList: MapLibre's own marker classes must stay
        if (entry.threat) { entry.node.classList.remove("threat-" + entry.threat.toLowerCase()); }
        entry.node.classList.add("threat-" + o.threat.toLowerCase());
        entry.threat = o.threat;
      }
      entry.node.title = o.label + " · " + o.threat.replace(/_/g, " ").toLowerCase() + " · " + m.name;
      entry.node.dataset.lat = String(o.lat);
      entry.node.dataset.lon = String(o.lon);
      entry.marker.setLngLat([o.lon, o.lat]);
      const last = entry.trail[entry.trail.length - 1];
      if (!last || last[0] !== o.lon || last[1] !== o.lat) {
        entry.trail.push([o.lon, o.lat]);
        if (entry.trail.length > TRAIL) { entry.trail.shift(); }
      }
    }
    for (const [tid, entry] of cam.objects) {
      if (!seen.has(tid)) { entry.marker.remove(); cam.objects.delete(tid); }
    }
    cameraGeojson();
    el.dataset.tracks = String([...cameras.values()].reduce((n, c) => n + c.objects.size, 0));
  }

  toggle?.addEventListener("change", () => {
    const on = showTracks();
    for (const cam of cameras.values()) { cam.objects.forEach((o) => { o.node.hidden = !on; }); }
    if (map.getLayer("track-trails")) { map.setLayoutProperty("track-trails", "visibility", on ? "visible" : "none"); }
  });

  function addDetail() {
    if (!el.dataset.pmtiles || !window.pmtiles) { return; }
    const protocol = new window.pmtiles.Protocol();
    maplibregl.addProtocol("pmtiles", protocol.tile);
    const url = new URL(el.dataset.pmtiles, window.location.href).href;
    const archive = new window.pmtiles.PMTiles(url);
    protocol.add(archive);
    archive.getHeader().then((h) => {
      const src = "pmtiles://" + url;
      if (h.tileType === 1) {  // vector (Protomaps basemap layers)
        map.addSource("detail", { type: "vector", url: src });
        const before = "trails";
        map.addLayer({ id: "detail-earth", type: "fill", source: "detail", "source-layer": "earth", paint: { "fill-color": "#20394a" } }, before);
        map.addLayer({ id: "detail-water", type: "fill", source: "detail", "source-layer": "water", paint: { "fill-color": "#0b2233" } }, before);
        map.addLayer({ id: "detail-roads", type: "line", source: "detail", "source-layer": "roads", paint: { "line-color": "#4d6b7d", "line-width": 1 } }, before);
        map.addLayer({ id: "detail-buildings", type: "fill", source: "detail", "source-layer": "buildings", paint: { "fill-color": "#2c4a5c" } }, before);
      } else {
        map.addSource("detail", { type: "raster", url: src, tileSize: 256 });
        map.addLayer({ id: "detail", type: "raster", source: "detail" }, "trails");
      }
    }).catch((e) => console.warn("PMTiles unavailable", e));
  }

  // Operator MBTiles: raster tiles drawn as they are; vector tiles get a plain style per source layer.
  async function addMbtiles() {
    if (!el.dataset.mbtiles) { return; }
    try {
      const r = await fetch(el.dataset.mbtiles, { credentials: "same-origin" });
      if (!r.ok) { return; }
      const tj = await r.json();
      // Absolute, with the {z}/{x}/{y} placeholders left as they are (new URL() would escape the braces).
      const tiles = tj.tiles.map((t) => (t.startsWith("/") ? window.location.origin + t : t));
      const source = { tiles: tiles, minzoom: tj.minzoom, maxzoom: tj.maxzoom };
      if (tj.bounds) { source.bounds = tj.bounds; }
      if (tj.vector) {
        map.addSource("mbtiles", Object.assign({ type: "vector" }, source));
        (tj.vector_layers || []).forEach((layer, i) => {
          const id = "mbtiles-" + i;
          map.addLayer({ id: id + "-fill", type: "fill", source: "mbtiles", "source-layer": layer.id,
            filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": "#26465a", "fill-opacity": 0.7 } }, "trails");
          map.addLayer({ id: id + "-line", type: "line", source: "mbtiles", "source-layer": layer.id,
            filter: ["==", ["geometry-type"], "LineString"], paint: { "line-color": "#5d8aa3", "line-width": 1 } }, "trails");
          map.addLayer({ id: id + "-point", type: "circle", source: "mbtiles", "source-layer": layer.id,
            filter: ["==", ["geometry-type"], "Point"], paint: { "circle-color": "#8fb7cc", "circle-radius": 2 } }, "trails");
        });
      } else {
        map.addSource("mbtiles", Object.assign({ type: "raster", tileSize: 256 }, source));
        map.addLayer({ id: "mbtiles", type: "raster", source: "mbtiles" }, "trails");
      }
      el.dataset.mbtilesLayer = tj.vector ? "vector" : "raster";
    } catch (e) { console.warn("MBTiles unavailable", e); }
  }

  function popupFor(m) {
    const root = document.createElement("div");
    const a = document.createElement("a");
    a.href = "/entities/" + encodeURIComponent(m.id);
    a.textContent = m.name;
    const p = document.createElement("div");
    p.className = "small";
    p.textContent = `${m.type.replace(/_/g, " ")} · ${m.affiliation || "friend"} · ${m.live ? "live" : "offline"} · ${m.status}` +
      (m.battery != null ? ` · ${Math.round(m.battery)}%` : "");
    root.append(a, p);
    return root;
  }

  function upsert(m) {
    updateCamera(m);  // a fixed camera may have a pose (and objects) without a telemetry position
    if (m.lat == null || m.lon == null) { return; }
    let entry = markers.get(m.id);
    if (!entry) {
      const node = document.createElement("div");
      node.className = "map-marker";
      node.dataset.entityId = m.id;
      const symbol = document.createElement("img");
      symbol.className = "map-symbol";
      symbol.alt = "";
      const label = document.createElement("span");
      label.className = "map-label";
      node.append(symbol, label);
      const marker = new maplibregl.Marker({ element: node }).setLngLat([m.lon, m.lat]).addTo(map);
      const popup = new maplibregl.Popup({ offset: 14, closeButton: false });
      marker.setPopup(popup);
      entry = { marker, node, symbol, label, popup, drawn: "" };
      markers.set(m.id, entry);
    }
    entry.marker.setLngLat([m.lon, m.lat]);
    // classList, not className: MapLibre's maplibregl-marker class (position: absolute) must stay, or
    // each marker is laid out below the previous one and drawn that far from its position.
    if (entry.state !== m.state) {
      if (entry.state) { entry.node.classList.remove("state-" + entry.state); }
      entry.node.classList.add("state-" + m.state);
      entry.state = m.state;
    }
    entry.node.dataset.sidc = m.sidc || "";
    entry.label.textContent = m.name;
    entry.symbol.alt = (m.affiliation || "friend") + " " + m.type.replace(/_/g, " ");
    // The symbol's direction arrow shows the heading (redrawn in 5° steps, cached by symbols.js).
    const want = (m.sidc || "") + "|" + Math.round((m.heading || 0) / 5);
    if (m.sidc && window.overwatchSymbols && entry.drawn !== want) {
      entry.drawn = want;
      const e = entry;
      window.overwatchSymbols.url(m.sidc, 26, m.heading == null ? null : m.heading).then((url) => {
        if (e.drawn === want) { e.symbol.src = url; e.node.dataset.symbol = "1"; }
      }).catch(() => { /* the label still shows */ });
    }
    entry.popup.setDOMContent(popupFor(m));
  }

  function reset(list) {
    const seen = new Set(list.map((m) => m.id));
    for (const [id, entry] of markers) {
      if (!seen.has(id)) { entry.marker.remove(); markers.delete(id); updateCamera({ id }); }
    }
    list.forEach(upsert);
    const pts = list.filter((m) => m.lat != null);
    if (!fitted && pts.length) {
      fitted = true;
      const b = new maplibregl.LngLatBounds();
      pts.forEach((m) => b.extend([m.lon, m.lat]));
      map.fitBounds(b, { padding: 60, maxZoom: 15, duration: 0 });
    }
    el.dataset.markers = String(markers.size);
  }

  async function loadTrails() {
    try {
      const r = await fetch("/map/trails.geojson?minutes=10", { credentials: "same-origin" });
      if (r.ok && map.getSource("trails")) { map.getSource("trails").setData(await r.json()); }
    } catch (e) { /* next round */ }
  }

  map.on("load", () => {
    map.addSource("trails", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: "trails", type: "line", source: "trails", paint: { "line-color": "#39c5bb", "line-width": 2, "line-opacity": 0.6 } });
    const empty = { type: "FeatureCollection", features: [] };
    map.addSource("footprints", { type: "geojson", data: empty });
    map.addLayer({ id: "footprints", type: "fill", source: "footprints", paint: { "fill-color": "#f2c14e", "fill-opacity": 0.15 } });
    map.addLayer({ id: "footprints-edge", type: "line", source: "footprints", paint: { "line-color": "#f2c14e", "line-width": 1.5 } });
    map.addSource("track-trails", { type: "geojson", data: empty });
    map.addLayer({ id: "track-trails", type: "line", source: "track-trails", paint: {
      "line-width": 2, "line-opacity": 0.8,
      "line-color": ["match", ["get", "threat"], "HIGH_THREAT", "#ff4d4d", "MODERATE_THREAT", "#ffa500", "#5ad85a"] } });
    cameraGeojson();
    addDetail();
    addMbtiles();
    loadTrails();
    el.dataset.loaded = "1";
  });
  const trailTimer = window.setInterval(loadTrails, 15000);

  // Live markers ride on the page's SSE connection (htmx reports it with htmx:sseOpen).
  function attach(source) {
    if (!source || source.__mapBound) { return; }
    source.__mapBound = true;
    source.addEventListener("map-reset", (e) => reset(JSON.parse(e.data)));
    source.addEventListener("map-entity", (e) => upsert(JSON.parse(e.data)));
  }
  const app = document.getElementById("app");
  app.addEventListener("htmx:sseOpen", (e) => attach(e.detail.source));
  const existing = app["htmx-internal-data"] && app["htmx-internal-data"].sseEventSource;
  if (existing) { attach(existing); }

  document.getElementById("fit-all")?.addEventListener("click", () => {
    const b = new maplibregl.LngLatBounds();
    for (const { marker } of markers.values()) { b.extend(marker.getLngLat()); }
    if (!b.isEmpty()) { map.fitBounds(b, { padding: 60, maxZoom: 15 }); }
  });
  // Leaving the page with a boosted link: stop the timer and free the WebGL context.
  function onSwap(e) {
    const target = e.detail && e.detail.target;
    if (target && target.contains(el)) {
      window.clearInterval(trailTimer);
      window.clearTimeout(cameraTimer);
      map.remove();
      document.removeEventListener("htmx:beforeSwap", onSwap);
    }
  }
  document.addEventListener("htmx:beforeSwap", onSwap);
}
