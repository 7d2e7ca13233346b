// MIL-STD-2525 symbols. Every element with data-sidc (a 2525C symbol code computed by the server)
// gets an <img> drawn by milsymbol, which is vendored and loaded the first time a page needs it.
// The SVG goes in as a data: URL (the CSP's img-src allows data:), never as markup and never with
// a style attribute, so the strict CSP holds. SSE-swapped rows are painted as htmx loads them.
(function () {
  "use strict";
  const me = document.currentScript;
  const src = me ? me.dataset.milsymbol : "";
  const cache = new Map();
  let loading = null;

  function lib() {
    if (window.ms) { return Promise.resolve(window.ms); }
    if (!loading) {
      loading = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = src;
        s.async = true;
        s.onload = () => (window.ms ? resolve(window.ms) : reject(new Error("milsymbol did not load")));
        s.onerror = () => { loading = null; reject(new Error("milsymbol did not load")); };
        document.head.append(s);
      });
    }
    return loading;
  }

  // One data URL per symbol code, size and heading (5° steps), reused by every marker and row.
  function dataUrl(ms, sidc, size, direction) {
    const dir = direction == null ? null : Math.round(direction / 5) * 5 % 360;
    const key = sidc + "|" + size + "|" + dir;
    let url = cache.get(key);
    if (!url) {
      const options = { size: size };
      if (dir != null) { options.direction = dir; }
      const svg = new ms.Symbol(sidc, options).asSVG();
      url = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
      cache.set(key, url);
    }
    return url;
  }

  function targets(root) {
    const out = [];
    if (root && root.nodeType === 1) {
      if (root.hasAttribute("data-sidc")) { out.push(root); }
      root.querySelectorAll("[data-sidc]").forEach((el) => out.push(el));
    }
    return out;
  }

  function paint(root) {
    const nodes = targets(root).filter((el) => el.dataset.sidc && el.dataset.painted !== el.dataset.sidc);
    if (!nodes.length) { return; }
    lib().then((ms) => {
      for (const el of nodes) {
        let img = el.querySelector("img.sym-img");
        if (!img) {
          img = document.createElement("img");
          img.className = "sym-img";
          img.alt = el.getAttribute("title") || "symbol";
          el.append(img);
        }
        img.src = dataUrl(ms, el.dataset.sidc, Number(el.dataset.size) || 20, null);
        el.dataset.painted = el.dataset.sidc;
      }
    }).catch((e) => console.warn("symbols unavailable", e));
  }

  window.overwatchSymbols = {
    url: (sidc, size, direction) => lib().then((ms) => dataUrl(ms, sidc, size, direction)),
    paint: paint,
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => paint(document.body));
  } else {
    paint(document.body);
  }
  // htmx fires htmx:load on each piece of new content (boosted pages, swaps, SSE swaps).
  document.addEventListener("htmx:load", (e) => paint(e.target));
})();
