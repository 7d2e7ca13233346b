// The camera page opened from a map marker (?track=<id>): that track's row and box are highlighted,
// again after every live swap of the table and the overlay. CSP-safe module, no data in HTML.
const track = new URLSearchParams(window.location.search).get("track");
if (track) {
  const mark = () => {
    let found = false;
    document.querySelectorAll("[data-track-id]").forEach((node) => {
      const on = node.dataset.trackId === track;
      node.classList.toggle("track-highlight", on);
      found = found || on;
    });
    document.body.dataset.highlightedTrack = found ? track : "";
  };
  mark();
  document.body.addEventListener("htmx:afterSwap", mark);
  document.body.addEventListener("htmx:sseMessage", () => window.setTimeout(mark, 0));
}
