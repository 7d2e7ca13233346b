// Overwatch console behaviour: small, framework-free, CSP-safe (no inline code, no eval).
(function () {
  "use strict";

  // Theme: dark by default; the choice is remembered per browser.
  function applyTheme(theme) {
    document.documentElement.setAttribute("data-theme", theme);
  }
  var saved = null;
  try { saved = window.localStorage.getItem("overwatch-theme"); } catch (e) { saved = null; }
  if (saved === "light" || saved === "dark") { applyTheme(saved); }

  function initThemeToggle() {
    var button = document.getElementById("theme-toggle");
    if (!button || button.dataset.bound) { return; }
    button.dataset.bound = "1";
    button.hidden = false;
    button.addEventListener("click", function () {
      var next = document.documentElement.getAttribute("data-theme") === "light" ? "dark" : "light";
      applyTheme(next);
      try { window.localStorage.setItem("overwatch-theme", next); } catch (e) { /* private mode */ }
    });
  }

  // "n s ago" labels keep ticking between server updates.
  function formatAgo(ms) {
    var s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) { return s + "s ago"; }
    if (s < 3600) { return Math.floor(s / 60) + "m ago"; }
    if (s < 86400) { return Math.floor(s / 3600) + "h ago"; }
    return Math.floor(s / 86400) + "d ago";
  }
  function tickAgo() {
    var nodes = document.querySelectorAll("[data-ago]");
    for (var i = 0; i < nodes.length; i++) {
      var ms = parseInt(nodes[i].getAttribute("data-ago"), 10);
      if (ms > 0) { nodes[i].textContent = formatAgo(ms); }
    }
  }

  // Connection indicator. htmx's SSE extension retries on its own with a growing delay;
  // live.js shares one connection between tabs and gives hidden tabs' streams up.
  function setConn(state) {
    var c = document.getElementById("conn");
    if (c) { c.className = "conn " + state; c.title = state === "is-live" ? "Live" : "Reconnecting…"; }
  }
  document.addEventListener("htmx:sseOpen", function () { setConn("is-live"); });
  document.addEventListener("htmx:sseError", function () { setConn("is-down"); });

  function init() {
    initThemeToggle();
    tickAgo();
  }
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:load", init);
  window.setInterval(tickAgo, 1000);
  window.Overwatch = { formatAgo: formatAgo };
})();
