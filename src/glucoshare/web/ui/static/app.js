// Glucoshare web app: forms that talk to the REST API with the session cookie and its CSRF token.
// <form data-api="/v1/..." data-method="POST" data-then="reload|/path"> sends its fields as JSON;
// <form data-upload="/v1/patients/ID/uploads"> sends its files with a progress bar; with data-follow
// it posts to a background import (/v1/patients/ID/imports) and follows it until it has finished.
// Errors show in the form's [role=alert] element, in the API's own words. No inline script (CSP).
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function showError(form, message) {
    var box = form.querySelector("[role=alert]");
    if (!box) { window.alert(message); return; }
    box.textContent = message;
    box.hidden = false;
    box.focus && box.setAttribute("tabindex", "-1");
  }

  function clearError(form) {
    var box = form.querySelector("[role=alert]");
    if (box) { box.hidden = true; box.textContent = ""; }
  }

  // data-then="show": put the answer's fields into the elements of the data-target container:
  // [data-field=K] gets the text (a list: one item per entry; [data-html] our own SVG markup),
  // input[data-from=K] the value; the container is revealed and the form hidden.
  function show(form, answer) {
    var box = document.getElementById(form.getAttribute("data-target"));
    if (!box) { return; }
    Object.keys(answer).forEach(function (key) {
      box.querySelectorAll('[data-field="' + key + '"]').forEach(function (el) {
        var value = answer[key];
        if (Array.isArray(value)) {
          el.textContent = "";
          value.forEach(function (item) {
            var li = document.createElement("li");
            li.textContent = item;
            el.appendChild(li);
          });
        } else if (el.hasAttribute("data-html") && /^<\?xml|^<svg/.test(String(value))) {
          el.innerHTML = String(value);
        } else {
          el.textContent = String(value);
        }
      });
      box.querySelectorAll('input[data-from="' + key + '"]').forEach(function (el) { el.value = answer[key]; });
    });
    box.querySelectorAll("a[data-link]").forEach(function (link) {
      link.href = link.getAttribute("data-link").replace(/\{(\w+)\}/g, function (_, key) {
        return encodeURIComponent(String(answer[key]));
      });
    });
    box.hidden = false;
    form.hidden = true;
    var first = box.querySelector("h2, h3, [tabindex]");
    if (first) { first.setAttribute("tabindex", "-1"); first.focus(); }
  }

  function after(form, text) {
    var then = form.getAttribute("data-then") || "reload";
    if (then === "show") {
      form.removeAttribute("aria-busy");
      show(form, text ? JSON.parse(text) : {});
    } else if (then === "reload") {
      window.location.reload();
    } else {
      window.location.assign(then);
    }
  }

  function messageOf(status, text) {
    try {
      var body = JSON.parse(text);
      if (body && body.error && body.error.message) { return body.error.message; }
    } catch (e) { /* not JSON */ }
    if (status === 401) { return "Your session has ended: please sign in again."; }
    return "That did not work (error " + status + "). Please try again.";
  }

  // Field values by name; checkboxes make a list of the checked values.
  function fields(form) {
    var data = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "submit" || el.type === "file") { return; }
      if (el.type === "checkbox") {
        data[el.name] = data[el.name] || [];
        if (el.checked) { data[el.name].push(el.value); }
        return;
      }
      if (el.hasAttribute("data-optional") && el.value === "") { return; }
      data[el.name] = el.value;
    });
    return data;
  }

  function sendJson(form) {
    var method = (form.getAttribute("data-method") || "POST").toUpperCase();
    var request = new XMLHttpRequest();
    request.open(method, form.getAttribute("data-api"));
    request.setRequestHeader("Content-Type", "application/json");
    request.setRequestHeader("X-CSRF-Token", csrf());
    request.onload = function () {
      if (request.status >= 200 && request.status < 300) { after(form, request.responseText); return; }
      if (request.status === 401 && form.getAttribute("data-api") !== "/v1/auth/login") {
        window.location.assign("/signin?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      showError(form, messageOf(request.status, request.responseText));
      form.removeAttribute("aria-busy");
    };
    request.onerror = function () { showError(form, "The server cannot be reached. Check your connection."); };
    form.setAttribute("aria-busy", "true");
    request.send(JSON.stringify(fields(form)));
  }

  // What the import of one or more files stored, a line per upload (or per held device).
  function showUploads(form, uploads) {
    var results = form.querySelector(".results");
    results.textContent = "";
    uploads.forEach(function (item) {
      var line = document.createElement("p");
      if (item.outcome === "pending") {
        var device = item.pending || {};
        line.textContent = item.file + ": a device no patient has yet (" + [device.manufacturer, device.model,
          device.serial].filter(Boolean).join(" ") + "): it waits below until you assign it.";
        results.appendChild(line);
      } else {
        (item.uploads || [item]).forEach(function (upload) {
          var each = document.createElement("p");
          each.textContent = upload.file + ": " + upload.new + " new, " + upload.duplicates + " already here" +
            (upload.rejected_count ? ", " + upload.rejected_count + " rows refused" : "") + "." +
            (upload.warnings && upload.warnings.length ? " " + upload.warnings.join(" ") : "");
          results.appendChild(each);
        });
      }
    });
    var done = document.createElement("a");
    done.href = window.location.pathname + window.location.search;
    done.textContent = "Show the updated figures";
    results.appendChild(done);
  }

  // A background import (data-follow): its state is asked for until it is done or failed, a
  // little less often the longer it takes; the results box says what it is waiting for.
  function follow(form, job, wait) {
    var results = form.querySelector(".results");
    if (job.state === "done") {
      form.removeAttribute("aria-busy");
      showUploads(form, job.uploads || []);
      return;
    }
    if (job.state === "failed") {
      form.removeAttribute("aria-busy");
      results.textContent = "";
      showError(form, (job.error && job.error.message) || "The import failed; nothing was stored.");
      return;
    }
    results.textContent = job.state === "queued" ? "Waiting for its turn to be imported…" : "Importing…";
    window.setTimeout(function () {
      var request = new XMLHttpRequest();
      request.open("GET", form.getAttribute("data-upload") + "/" + encodeURIComponent(job.id));
      request.onload = function () {
        if (request.status === 200) { follow(form, JSON.parse(request.responseText), Math.min(wait * 1.5, 5000)); }
        else { form.removeAttribute("aria-busy"); showError(form, messageOf(request.status, request.responseText)); }
      };
      request.onerror = function () { follow(form, job, Math.min(wait * 2, 10000)); };  // ask again later
      request.send();
    }, wait);
  }

  function sendFiles(form) {
    var input = form.querySelector("input[type=file]");
    if (!input.files.length) { showError(form, "Choose one or more export files first."); return; }
    var body = new FormData();
    Array.prototype.forEach.call(input.files, function (file) { body.append("files", file); });
    var bar = form.querySelector("progress");
    var request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("data-upload"));
    request.setRequestHeader("X-CSRF-Token", csrf());
    request.upload.onprogress = function (event) {
      if (bar && event.lengthComputable) { bar.hidden = false; bar.value = Math.round(100 * event.loaded / event.total); }
    };
    request.onload = function () {
      if (request.status >= 200 && request.status < 300) {
        var answer = JSON.parse(request.responseText);
        if (form.hasAttribute("data-follow")) { follow(form, answer, 1000); return; }
        form.removeAttribute("aria-busy");
        showUploads(form, answer);
        return;
      }
      form.removeAttribute("aria-busy");
      showError(form, messageOf(request.status, request.responseText));
    };
    request.onerror = function () {
      form.removeAttribute("aria-busy");
      showError(form, "The server cannot be reached. Check your connection.");
    };
    form.setAttribute("aria-busy", "true");
    request.send(body);
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target instanceof Element && target.closest("[data-print]")) { window.print(); }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    if (!form.hasAttribute("data-api") && !form.hasAttribute("data-upload")) { return; }
    event.preventDefault();
    clearError(form);
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { return; }
    if (form.hasAttribute("data-upload")) { sendFiles(form); } else { sendJson(form); }
  });
})();
