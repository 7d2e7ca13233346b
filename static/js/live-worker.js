// SharedWorker: ONE live connection for every console tab of this browser (see live.js).
//
// Tabs send {op: "open", id, url} / {op: "close", id} for their streams. The worker keeps
// one EventSource to /events/mux?s=<url>&s=<url>… carrying every stream wanted; when the
// set changes it opens a new one (after a short debounce, so a burst of changes costs one
// reconnect) and every stream starts again with its resync. The server tags each event
// with the stream's index ({"s": i, "e": name, "d": data}); the worker hands it to the
// tab that asked. It also splits a frame-rate budget between the tabs' camera images.
"use strict";

var MUX = "/events/mux";
var MAX_STREAMS = 64; // the server's limit per connection (web/sse/mux.py)
var MAX_QUERY = 12000; // characters of stream list in one request line
var DEBOUNCE_MS = 30;
var VIDEO_BUDGET_FPS = 30; // frames per second for all camera images of this browser together
var VIDEO_MAX_FPS = 15; // what one camera image may use (the MJPEG stream's cap too)
var VIDEO_MIN_FPS = 2;

var tabs = new Set(); // {port, subs: Map(id -> url), videos: Set(id)}
var streams = []; // the current connection's streams by index: {tab, id, url}
var source = null;
var timer = 0;

self.addEventListener("connect", function (e) {
  var tab = { port: e.ports[0], subs: new Map(), videos: new Set() };
  tab.port.onmessage = function (m) { handle(tab, m.data || {}); };
  tab.port.start();
});

function handle(tab, msg) {
  tabs.add(tab);
  if (msg.op === "hello") {
    tab.port.postMessage({ kind: "hello" });
    if (msg.lock && self.navigator.locks) {
      // Granted once the tab's own lock is released: the tab is gone, even without "bye".
      self.navigator.locks.request(msg.lock, function () { drop(tab); });
    }
  } else if (msg.op === "open") {
    tab.subs.set(msg.id, msg.url);
    schedule();
  } else if (msg.op === "close") {
    if (tab.subs.delete(msg.id)) { schedule(); }
  } else if (msg.op === "video") {
    if (msg.on) { tab.videos.add(msg.id); } else { tab.videos.delete(msg.id); }
    rebalance();
  } else if (msg.op === "bye") {
    drop(tab);
  }
}

function drop(tab) {
  if (!tabs.delete(tab)) { return; }
  if (tab.subs.size) { tab.subs.clear(); schedule(); }
  if (tab.videos.size) { tab.videos.clear(); rebalance(); }
}

function tell(stream, message) {
  message.id = stream.id;
  stream.tab.port.postMessage(message);
}

function schedule() {
  if (!timer) { timer = setTimeout(reconnect, DEBOUNCE_MS); }
}

function reconnect() {
  timer = 0;
  var wanted = [];
  var query = [];
  var length = 0;
  tabs.forEach(function (tab) {
    tab.subs.forEach(function (url, id) {
      var part = "s=" + encodeURIComponent(url);
      if (wanted.length < MAX_STREAMS && length + part.length < MAX_QUERY) {
        wanted.push({ tab: tab, id: id, url: url });
        query.push(part);
        length += part.length + 1;
      } else {
        // Over the limit: the tab is told its stream is closed (htmx retries it later).
        tab.subs.delete(id);
        tell({ tab: tab, id: id }, { kind: "error", closed: true, status: 429, message: "too many live streams in this browser" });
      }
    });
  });
  // Always a new connection, even for the same list: a stream opened again (a tab back
  // from hiding or from the back/forward cache) needs its resync.
  if (source) { source.close(); }
  source = null;
  streams = wanted;
  if (!wanted.length) { return; }
  var es = new EventSource(MUX + "?" + query.join("&"));
  source = es;
  es.onmessage = function (e) {
    if (source !== es) { return; }
    var m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    var stream = streams[m.s];
    if (!stream || stream.tab.subs.get(stream.id) !== stream.url) { return; }
    if (m.e !== undefined) {
      tell(stream, { kind: "event", type: m.e, data: m.d });
    } else if (m.o) {
      tell(stream, { kind: "open" });
    } else if (m.x) {
      // Refused by its route (signed out, no access, gone): closed for that tab only.
      stream.tab.subs.delete(stream.id);
      tell(stream, { kind: "error", closed: true, status: m.x, message: m.m });
    }
  };
  es.onerror = function () {
    if (source !== es) { return; }
    var closed = es.readyState === 2; // an HTTP error: the browser will not retry by itself
    streams.forEach(function (stream) {
      if (stream.tab.subs.get(stream.id) !== stream.url) { return; }
      if (closed) { stream.tab.subs.delete(stream.id); }
      tell(stream, { kind: "error", closed: closed });
    });
    if (closed) { source = null; streams = []; }
  };
}

function rebalance() {
  var n = 0;
  tabs.forEach(function (tab) { n += tab.videos.size; });
  var fps = n ? Math.max(VIDEO_MIN_FPS, Math.min(VIDEO_MAX_FPS, VIDEO_BUDGET_FPS / n)) : VIDEO_MAX_FPS;
  tabs.forEach(function (tab) {
    if (tab.videos.size) { tab.port.postMessage({ kind: "rate", fps: fps }); }
  });
}
