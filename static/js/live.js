// Live updates that fit in one connection per browser (issue #11: tabs 7-10 never loaded).
//
// Browsers open at most six HTTP/1.1 connections per host, and every console page used to
// hold its own EventSource (camera pages also an MJPEG response). Here:
//  * htmx's SSE extension gets its EventSource from htmx.createEventSource; we hand it a
//    SharedSource that talks to one SharedWorker (live-worker.js) shared by every tab of
//    this browser. The worker holds ONE EventSource to /events/mux carrying every tab's
//    streams and forwards each event to its tab, so event name = partial name is unchanged.
//  * camera images poll the latest JPEG with short requests (/video/<id>.jpg) instead of a
//    held MJPEG response; the worker splits a frame-rate budget between the camera tabs.
//  * a tab hidden for a while closes its streams and stops its video; on return app.js
//    reopens the streams (each starts with a resync) and the video resumes.
// Without SharedWorker (or if it fails) pages use plain EventSources as before, and hidden
// tabs give theirs up sooner. CSP-safe: no inline code, no eval.
(function () {
  "use strict";
  var htmx = window.htmx;
  var script = document.currentScript;
  var WORKER_URL = script ? script.getAttribute("data-worker") : "";
  var STREAM_PATH = /^\/(embed\/)?events\/(?!mux(\/|\?|$))/; // what /events/mux may carry
  var HELLO_TIMEOUT_MS = 10000; // no answer from the worker by then: plain EventSources
  var HIDDEN_CLOSE_MS = { shared: 60000, native: 5000 }; // hidden this long: streams closed
  var FALLBACK_FPS = 10; // camera frames per second without the worker's budget
  var NO_FRAME_MS = 1000; // poll again this soon when the camera has not sent a frame yet
  var ERROR_MS = 3000; // ... or when a frame request failed

  var port = null;
  var broken = typeof SharedWorker !== "function" || !WORKER_URL;
  var greeted = false;
  var sources = {}; // id -> SharedSource of this tab
  var pollers = {}; // id -> camera poller of this tab
  var seq = 0;
  var tabId = Date.now().toString(36) + Math.random().toString(36).slice(2);
  var videoFps = FALLBACK_FPS;

  function nativeSource(url) {
    return new EventSource(url, { withCredentials: true });
  }

  function post(message) {
    if (port) { port.postMessage(message); }
  }

  // The worker is unusable: every shared stream reports a closed connection, so htmx
  // reconnects it (with its usual back-off) and this time gets a plain EventSource.
  function fail() {
    if (broken) { return; }
    broken = true;
    post({ op: "bye" }); // a worker that starts late must not hold streams for this tab
    port = null;
    Object.keys(sources).forEach(function (id) {
      var source = sources[id];
      delete sources[id];
      source._error(true);
    });
  }

  function connect() {
    if (port || broken) { return port; }
    var worker;
    try {
      worker = new SharedWorker(WORKER_URL, { name: "overwatch-live" });
    } catch (e) {
      broken = true;
      return null;
    }
    worker.addEventListener("error", fail);
    port = worker.port;
    port.onmessage = onMessage;
    port.start();
    greeted = false;
    window.setTimeout(function () { if (!greeted) { fail(); } }, HELLO_TIMEOUT_MS);
    var hello = { op: "hello", tab: tabId, lock: "" };
    // With Web Locks the worker also notices a tab that vanished without "pagehide".
    if (navigator.locks && navigator.locks.request) {
      hello.lock = "overwatch-tab-" + tabId;
      navigator.locks.request(hello.lock, function () {
        post(hello);
        return new Promise(function () { /* held for the tab's lifetime */ });
      }).catch(function () { post({ op: "hello", tab: tabId, lock: "" }); });
    } else {
      post(hello);
    }
    return port;
  }

  function onMessage(e) {
    var m = e.data || {};
    if (m.kind === "hello") { greeted = true; return; }
    if (m.kind === "rate") { videoFps = m.fps; return; }
    var source = sources[m.id];
    if (!source) { return; }
    if (m.kind === "event") { source._event(m.type, m.data); }
    else if (m.kind === "open") { source._open(); }
    else if (m.kind === "error") {
      if (m.closed) { delete sources[m.id]; }
      if (m.message) { console.warn("live stream " + source.url + ": " + m.status + " " + m.message); }
      source._error(m.closed);
    }
  }

  // An EventSource look-alike backed by the shared worker: what htmx's SSE extension and
  // map.js use (addEventListener, onopen/onerror/onmessage, readyState, close).
  function SharedSource(url) {
    this.url = url;
    this.withCredentials = true;
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    this._listeners = {};
    this._id = String(++seq);
    sources[this._id] = this;
    post({ op: "open", id: this._id, url: url });
  }
  SharedSource.CONNECTING = 0;
  SharedSource.OPEN = 1;
  SharedSource.CLOSED = 2;
  SharedSource.prototype.addEventListener = function (type, fn) {
    (this._listeners[type] = this._listeners[type] || []).push(fn);
  };
  SharedSource.prototype.removeEventListener = function (type, fn) {
    var list = this._listeners[type] || [];
    var i = list.indexOf(fn);
    if (i >= 0) { list.splice(i, 1); }
  };
  SharedSource.prototype.dispatchEvent = function (event) {
    var handler = this["on" + event.type];
    if (typeof handler === "function") { handler.call(this, event); }
    var list = (this._listeners[event.type] || []).slice();
    for (var i = 0; i < list.length; i++) { list[i].call(this, event); }
    return true;
  };
  SharedSource.prototype.close = function () {
    if (this.readyState === 2) { return; }
    this.readyState = 2;
    if (sources[this._id] === this) {
      delete sources[this._id];
      post({ op: "close", id: this._id });
    }
  };
  // A hidden tab gives its stream up without htmx noticing; on return the same object
  // asks for it again (the server starts it with a resync).
  SharedSource.prototype._suspend = function () {
    if (this.readyState === 2 || this._suspended) { return; }
    this._suspended = true;
    this.readyState = 0;
    post({ op: "close", id: this._id });
  };
  SharedSource.prototype._resume = function () {
    if (!this._suspended) { return; }
    this._suspended = false;
    post({ op: "open", id: this._id, url: this.url });
  };
  SharedSource.prototype._open = function () {
    if (this.readyState === 2) { return; }
    this.readyState = 1;
    this.dispatchEvent(new Event("open"));
  };
  SharedSource.prototype._event = function (type, data) {
    if (this.readyState === 2) { return; }
    this.dispatchEvent(new MessageEvent(type, { data: data, origin: window.location.origin }));
  };
  SharedSource.prototype._error = function (closed) {
    if (this.readyState === 2) { return; }
    this.readyState = closed ? 2 : 0;
    this.dispatchEvent(new Event("error"));
  };

  function createEventSource(url) {
    var target;
    try { target = new URL(url, window.location.href); } catch (e) { return nativeSource(url); }
    if (broken || target.origin !== window.location.origin || !STREAM_PATH.test(target.pathname)) {
      return nativeSource(url);
    }
    if (!connect()) { return nativeSource(url); }
    return new SharedSource(target.pathname + target.search);
  }

  if (htmx) { htmx.createEventSource = createEventSource; }

  // ---- camera frames: the latest JPEG, one short request at a time
  function startVideo() {
    var imgs = document.querySelectorAll("img[data-frame-src]");
    for (var i = 0; i < imgs.length; i++) {
      if (!imgs[i].dataset.polling) { startPoller(imgs[i]); }
    }
  }

  function startPoller(img) {
    img.dataset.polling = "1";
    var p = { id: String(++seq), img: img, url: img.getAttribute("data-frame-src"), etag: "", count: 0, timer: 0, paused: false, objectUrl: "" };
    pollers[p.id] = p;
    post({ op: "video", id: p.id, on: true });
    poll(p);
  }

  function stopPoller(p) {
    window.clearTimeout(p.timer);
    delete pollers[p.id];
    post({ op: "video", id: p.id, on: false });
    if (p.objectUrl) { URL.revokeObjectURL(p.objectUrl); }
  }

  function show(p, blob) {
    var previous = p.objectUrl;
    p.objectUrl = URL.createObjectURL(blob);
    p.img.onload = function () {
      p.img.hidden = false;
      p.count += 1;
      p.img.dataset.frameCount = String(p.count);
    };
    p.img.src = p.objectUrl;
    // The previous frame has been decoded and stays on screen until this one is.
    if (previous) { URL.revokeObjectURL(previous); }
  }

  function poll(p) {
    p.timer = 0;
    if (!document.contains(p.img)) { stopPoller(p); return; } // the page was swapped (boosted link)
    if (document.visibilityState === "hidden") {
      p.paused = true; // the last frame stays as a still; resumed when the tab is visible again
      post({ op: "video", id: p.id, on: false });
      return;
    }
    var started = Date.now();
    var headers = p.etag ? { "If-None-Match": p.etag } : {};
    window.fetch(p.url, { cache: "no-store", credentials: "same-origin", headers: headers })
      .then(function (r) {
        if (r.status === 200) {
          p.etag = r.headers.get("ETag") || "";
          return r.blob().then(function (blob) { show(p, blob); return 0; });
        }
        if (r.status === 304) { return 0; }
        return r.status === 204 ? NO_FRAME_MS : ERROR_MS;
      }, function () { return ERROR_MS; })
      .then(function (wait) {
        if (!pollers[p.id]) { return; }
        var gap = 1000 / (broken ? FALLBACK_FPS : videoFps) - (Date.now() - started);
        p.timer = window.setTimeout(function () { poll(p); }, Math.max(gap, wait, 0));
      });
  }

  function resumeVideo() {
    Object.keys(pollers).forEach(function (id) {
      var p = pollers[id];
      if (p.paused) {
        p.paused = false;
        post({ op: "video", id: p.id, on: true });
        poll(p);
      }
    });
  }

  // ---- hidden tabs
  function pageSources() {
    var out = [];
    var nodes = document.querySelectorAll("[sse-connect]");
    for (var i = 0; i < nodes.length; i++) {
      var data = nodes[i]["htmx-internal-data"];
      if (data && data.sseEventSource) { out.push(data.sseEventSource); }
    }
    return out;
  }
  var hiddenTimer = 0;
  function closeStreams() {
    hiddenTimer = 0;
    if (document.visibilityState !== "hidden") { return; }
    pageSources().forEach(function (source) {
      if (source instanceof SharedSource) { source._suspend(); }
      else if (source.readyState !== 2) { source.close(); source.__closedHidden = true; }
    });
  }
  function reopenStreams() {
    pageSources().forEach(function (source) {
      if (source instanceof SharedSource) { source._resume(); }
      else if (source.__closedHidden && typeof source.onerror === "function") {
        // htmx's own reconnect path (it also re-binds the regions to the new EventSource).
        source.__closedHidden = false;
        source.onerror(new Event("error"));
      }
    });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      if (!hiddenTimer) {
        hiddenTimer = window.setTimeout(closeStreams, broken ? HIDDEN_CLOSE_MS.native : HIDDEN_CLOSE_MS.shared);
      }
    } else {
      window.clearTimeout(hiddenTimer);
      hiddenTimer = 0;
      reopenStreams();
      resumeVideo();
    }
  });

  // ---- leaving and coming back (back/forward cache)
  window.addEventListener("pagehide", function () { post({ op: "bye" }); });
  window.addEventListener("pageshow", function (e) {
    if (!e.persisted || broken) { return; }
    port = null;
    var open = Object.keys(sources).map(function (id) { return sources[id]; });
    if (!connect()) { return; }
    open.forEach(function (source) {
      if (!source._suspended) { post({ op: "open", id: source._id, url: source.url }); }
    });
    Object.keys(pollers).forEach(function (id) { post({ op: "video", id: id, on: !pollers[id].paused }); });
  });

  function init() { startVideo(); }
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:load", init);
  window.OverwatchLive = {
    shared: function () { return !broken && port !== null; },
    hiddenCloseMs: HIDDEN_CLOSE_MS,
  };
})();
