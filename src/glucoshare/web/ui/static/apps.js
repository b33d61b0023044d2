// Glucoshare "Apps and uploaders" page (/account/apps). app.js sends the form to the API and puts
// its answer into #token-new; this script then shows only what fits the new token (the API secret
// and the xDrip+ URL for a nightscout token, the follower address for a read token, the upload
// command for an upload token) and runs the copy buttons: <button data-copy="ID"> copies the text
// of the element with that id. No inline script anywhere (CSP).
(function () {
  "use strict";

  function textOf(box, field) {
    var el = box.querySelector('[data-field="' + field + '"]');
    var value = el ? el.textContent.trim() : "";
    return value === "null" ? "" : value;
  }

  function fit(box) {
    var kind = textOf(box, "kind");
    var secret = textOf(box, "api_secret");
    box.querySelectorAll("[data-kind]").forEach(function (el) {
      el.hidden = el.getAttribute("data-kind").split(" ").indexOf(kind) < 0;
    });
    box.querySelectorAll("[data-needs-secret]").forEach(function (el) { el.hidden = secret === ""; });
  }

  function say(button, message) {
    var box = button.closest(".token-new");
    var status = box ? box.querySelector("[role=status]") : null;
    if (status) { status.textContent = message; }
  }

  function select(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var chosen = window.getSelection();
    chosen.removeAllRanges();
    chosen.addRange(range);
  }

  function copyBySelection(button, el) {
    select(el);
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    say(button, done ? "Copied." : "Selected: copy it with Ctrl+C (or long-press on a phone).");
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    var button = target instanceof Element ? target.closest("[data-copy]") : null;
    if (!button) { return; }
    var el = document.getElementById(button.getAttribute("data-copy"));
    if (!el) { return; }
    var text = el.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied."); },
        function () { copyBySelection(button, el); }
      );
    } else {
      copyBySelection(button, el);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("token-new");
    if (!box || !window.MutationObserver) { return; }
    new MutationObserver(function () { if (!box.hidden) { fit(box); } })
      .observe(box, { attributes: true, attributeFilter: ["hidden"] });
  });
})();
