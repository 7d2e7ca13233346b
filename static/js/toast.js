// Rule-firing toasts: they arrive over the page's SSE stream (event "toast"); this file
// only dismisses them (close button, or on their own after a while). CSP-safe.
(function () {
  "use strict";
  var LIFETIME_MS = 20000;
  var MAX_SHOWN = 5;

  function dismiss(toast) {
    if (toast && toast.parentNode) { toast.parentNode.removeChild(toast); }
  }

  function arm(root) {
    var toasts = (root || document).querySelectorAll("[data-toast]");
    for (var i = 0; i < toasts.length; i++) {
      var toast = toasts[i];
      if (toast.dataset.armed) { continue; }
      toast.dataset.armed = "1";
      window.setTimeout(dismiss.bind(null, toast), LIFETIME_MS);
    }
    var box = document.getElementById("toasts");
    while (box && box.children.length > MAX_SHOWN) { dismiss(box.lastElementChild); }
  }

  document.addEventListener("click", function (e) {
    var button = e.target && e.target.closest ? e.target.closest("[data-toast-close]") : null;
    if (button) { dismiss(button.closest("[data-toast]")); }
  });
  document.addEventListener("htmx:sseMessage", function () { arm(document); });
  document.addEventListener("htmx:load", function () { arm(document); });
})();
