// Hold-to-confirm for commands that move a vehicle (arm, disarm, takeoff, land), and the fleet table's row selection.
// CSP-safe: no inline code, no eval, no inline styles (the progress fill is a CSS class with a transition).
//
// A form with data-confirm-commands="arm disarm …" never submits one of those commands on a plain click or tap:
// the button has to be held down for HOLD_MS (mouse, touch or pen through pointer events; Space/Enter from the
// keyboard). The gesture ticks the form's `confirm` box and submits; the server refuses the command without it.
// Without JavaScript the Confirm box is visible and does the same job.
(function () {
  "use strict";

  var HOLD_MS = 1000;
  var hold = null; // {button, form, timer}

  function confirmList(form) {
    var raw = form && form.getAttribute("data-confirm-commands");
    return raw ? raw.split(/\s+/) : [];
  }

  function formOf(button) {
    return button.form || (button.closest && button.closest("form"));
  }

  function commandOf(form, button) {
    if (button && button.name === "command") { return button.value; }
    var field = form.elements.namedItem("command");
    return field ? field.value : "";
  }

  function needsConfirm(form, button) {
    return confirmList(form).indexOf(commandOf(form, button)) >= 0;
  }

  function confirmBox(form) {
    var box = form.elements.namedItem("confirm");
    return box && box.type === "checkbox" ? box : null;
  }

  function hint(form, text) {
    var node = form.querySelector(".hold-hint");
    if (node) { node.textContent = text; }
  }

  function label(command) {
    return command === "rtl" ? "RTL" : command.charAt(0).toUpperCase() + command.slice(1);
  }

  // The entity page's Send button says what a hold will do for the selected command.
  function refreshLabels(root) {
    var buttons = (root || document).querySelectorAll(".hold-confirm-select, .hold-confirm");
    for (var i = 0; i < buttons.length; i++) {
      var button = buttons[i];
      var form = formOf(button);
      if (!form) { continue; }
      form.classList.add("js-hold");
      var command = commandOf(form, button);
      var needs = needsConfirm(form, button);
      button.classList.toggle("needs-hold", needs);
      var base = button.getAttribute("data-label") || button.textContent;
      button.textContent = needs ? "Hold to " + (button.name === "command" ? label(command) : command.replace("_", " ")) : base;
    }
  }

  function start(button) {
    var form = formOf(button);
    if (!form || !needsConfirm(form, button) || hold) { return false; }
    button.classList.add("is-holding");
    hint(form, "Keep holding…");
    hold = {
      button: button,
      form: form,
      timer: window.setTimeout(function () { fire(); }, HOLD_MS),
    };
    return true;
  }

  function cancel(message) {
    if (!hold) { return; }
    window.clearTimeout(hold.timer);
    hold.button.classList.remove("is-holding");
    if (message) { hint(hold.form, message); }
    hold = null;
  }

  function fire() {
    var current = hold;
    hold = null;
    current.button.classList.remove("is-holding");
    var box = confirmBox(current.form);
    if (box) { box.checked = true; }
    current.form.setAttribute("data-confirmed", "1");
    hint(current.form, "Confirmed: sending " + commandOf(current.form, current.button).replace("_", " "));
    // htmx sends the submitting button's name/value for the button it saw clicked or focused last.
    current.button.focus({ preventScroll: true });
    if (current.form.requestSubmit) { current.form.requestSubmit(current.button); } else { current.button.click(); }
    // htmx reads the form while handling the submit event: the confirmation is used once, then cleared.
    window.setTimeout(function () {
      if (box) { box.checked = false; }
      current.form.removeAttribute("data-confirmed");
    }, 0);
  }

  function holdButton(target) {
    var button = target && target.closest ? target.closest("button[type=submit]") : null;
    var form = button && formOf(button);
    return form && form.hasAttribute("data-confirm-commands") ? button : null;
  }

  document.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) { return; }
    var button = holdButton(event.target);
    if (button && start(button)) {
      event.preventDefault(); // no focus/selection/long-press menu: the gesture is ours
      if (button.setPointerCapture) {
        try { button.setPointerCapture(event.pointerId); } catch (e) { /* not capturable */ }
      }
    }
  });
  function release() { cancel("Released too early: hold for a second to confirm"); }
  document.addEventListener("pointerup", release);
  document.addEventListener("pointercancel", release);
  document.addEventListener("lostpointercapture", function (event) {
    if (hold && event.target === hold.button) { release(); }
  });
  document.addEventListener("contextmenu", function (event) {
    if (holdButton(event.target)) { event.preventDefault(); }
  });
  document.addEventListener("keydown", function (event) {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) {
      var button = holdButton(event.target);
      if (button && needsConfirm(formOf(button), button)) {
        event.preventDefault();
        start(button);
      }
    }
  });
  document.addEventListener("keyup", function (event) {
    if ((event.key === " " || event.key === "Enter") && hold) { release(); }
  });

  // A click, tap or Enter that is not the finished gesture never submits a command that needs one.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-confirm-commands") || form.getAttribute("data-confirmed")) { return; }
    if (!needsConfirm(form, event.submitter || null)) { return; }
    var box = confirmBox(form);
    if (box && box.checked && !form.classList.contains("js-hold")) { return; } // no-JS path, ticked by hand
    event.preventDefault();
    event.stopImmediatePropagation();
    hint(form, "Hold the button for a second to " + commandOf(form, event.submitter || null).replace("_", " "));
  }, true);

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "command" && target.form && target.form.hasAttribute("data-confirm-commands")) {
      refreshLabels(target.form);
      hint(target.form, "");
    }
    if (target.classList && target.classList.contains("select-row")) {
      if (target.checked) { selected[target.value] = true; } else { delete selected[target.value]; }
    }
    if (target.classList && target.classList.contains("select-all")) {
      var rows = document.querySelectorAll(".select-row");
      for (var i = 0; i < rows.length; i++) {
        rows[i].checked = target.checked;
        if (target.checked) { selected[rows[i].value] = true; } else { delete selected[rows[i].value]; }
      }
    }
  });

  // Fleet rows are replaced by live updates: the selection lives here and is put back on every new row.
  var selected = {};
  function restoreSelection(root) {
    var boxes = (root || document).querySelectorAll ? (root || document).querySelectorAll(".select-row") : [];
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = !!selected[boxes[i].value]; }
    if (root && root.classList && root.classList.contains("select-row")) { root.checked = !!selected[root.value]; }
  }

  function init(event) {
    var root = event && event.target && event.target !== document ? event.target : document;
    refreshLabels(root.querySelectorAll ? root : document);
    restoreSelection(root);
  }
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:load", init);
  window.OverwatchConfirm = { HOLD_MS: HOLD_MS, selected: selected };
})();
