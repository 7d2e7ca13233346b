// NATS console: live-tail pause and row cap, copy-payload button. CSP-safe (no inline code).
(function () {
  "use strict";
  var MAX_ROWS = 200; // tail rows kept in the table
  var paused = false;

  function inTail(node) {
    return node && node.closest && node.closest("#tail-rows");
  }

  // While paused, new rows are dropped before htmx swaps them in; the status keeps counting.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    if (paused && inTail(evt.target)) { evt.preventDefault(); }
  });
  document.addEventListener("htmx:sseMessage", function (evt) {
    var rows = inTail(evt.target);
    if (!rows) { return; }
    while (rows.children.length > MAX_ROWS) { rows.removeChild(rows.lastElementChild); }
  });

  document.addEventListener("click", function (evt) {
    var pause = evt.target.closest ? evt.target.closest("#tail-pause") : null;
    if (pause) {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", paused ? "true" : "false");
      return;
    }
    var copy = evt.target.closest ? evt.target.closest("[data-copy]") : null;
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (!source) { return; }
      var text = source.textContent;
      var done = function () { copy.textContent = "Copied"; setTimeout(function () { copy.textContent = "Copy payload"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { copy.textContent = "Copy failed"; });
      } else {
        var area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.className = "offscreen";
        document.body.appendChild(area);
        area.select();
        try { document.execCommand("copy"); done(); } catch (e) { copy.textContent = "Copy failed"; }
        document.body.removeChild(area);
      }
    }
  });
})();
