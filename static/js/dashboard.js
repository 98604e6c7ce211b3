/* Brikk dashboard: small behaviours on top of htmx. No build step. */
(function () {
  "use strict";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  /* --- Toasts for failed htmx requests (htmx does not swap 4xx/5xx) --- */
  var toastTimer = null;
  function toast(text, kind) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.className = "toast toast-" + (kind || "danger");
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, 6000);
  }
  var statusText = {
    403: "Not allowed: your role in this organization is read-only for this.",
    404: "Not found: it may have been deleted or belong to another organization.",
    429: "Too many requests; please wait a moment.",
  };
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (event.detail.elt && event.detail.elt.hasAttribute("hx-trigger")) {
      if (status === 401 || status === 403) window.location.reload(); // session ended: show the login page
      return; // a live panel: keep the last good content, try again on the next tick
    }
    toast(statusText[status] || "The server answered " + status + ". Please try again.");
  });
  document.addEventListener("htmx:sendError", function (event) {
    if (event.detail.elt && event.detail.elt.hasAttribute("hx-trigger")) return;
    toast("Network error: the server could not be reached.");
  });

  /* --- Live panels: "brikk-poll" every data-poll-seconds while the tab is visible, and at once when it
         becomes visible again. Plain code instead of an htmx trigger filter, which would need eval (CSP). --- */
  var nextPoll = new WeakMap();
  function pollPanels(force) {
    if (document.visibilityState !== "visible" || !window.htmx) return;
    var now = Date.now();
    document.querySelectorAll("[data-poll-seconds]").forEach(function (panel) {
      var every = (Number(panel.getAttribute("data-poll-seconds")) || 5) * 1000;
      if (!nextPoll.has(panel) && !force) {
        nextPoll.set(panel, now + every); // a panel just rendered is fresh: its first poll is one period away
        return;
      }
      if (force || now >= nextPoll.get(panel)) {
        nextPoll.set(panel, now + every);
        window.htmx.trigger(panel, "brikk-poll");
      }
    });
  }
  setInterval(function () { pollPanels(false); }, 250);
  document.addEventListener("visibilitychange", function () { pollPanels(true); });

  /* --- Copy buttons --- */
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) return;
    var done = function () {
      button.textContent = "Copied ✓";
      button.classList.add("copied");
      setTimeout(function () { button.textContent = "Copy"; button.classList.remove("copied"); }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* selected for manual copy */ }
    }
  });

  /* --- Rows that stand for a page (a message, an agent): a click anywhere on the row opens it --- */
  document.addEventListener("click", function (event) {
    var row = event.target.closest("[data-row-link]");
    if (!row || event.defaultPrevented || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    if (event.target.closest("a, button, input, select, textarea, summary, label")) return;
    var selection = window.getSelection();
    if (selection && !selection.isCollapsed) return; // selecting text to copy, not opening
    var target = row.querySelector("[data-row-target]");
    if (target) target.click(); // the row's own link, so htmx boosting applies
  });

  /* --- Tabs: when they do not fit (phone width), hint at the side that has more, and keep the
     current tab in view --- */
  function updateTabHints() {
    document.querySelectorAll("[data-tabs-bar]").forEach(function (bar) {
      var nav = bar.querySelector(".tabs");
      if (!nav) return;
      var hidden = nav.scrollWidth - nav.clientWidth;
      bar.toggleAttribute("data-more-left", hidden > 1 && nav.scrollLeft > 1);
      bar.toggleAttribute("data-more-right", hidden > 1 && nav.scrollLeft < hidden - 1);
    });
  }
  function revealCurrentTab() {
    var nav = document.querySelector("[data-tabs-bar] .tabs");
    if (nav && !nav.brikkRevealed) { // a new tab bar (page load, or swapped in by a tab switch)
      nav.brikkRevealed = true;
      var current = nav.querySelector('[aria-current="page"]');
      if (current) {
        var bar = nav.getBoundingClientRect();
        var tab = current.getBoundingClientRect();
        if (tab.right > bar.right) nav.scrollLeft += tab.right - bar.right + 40;
        else if (tab.left < bar.left) nav.scrollLeft -= bar.left - tab.left + 40;
      }
    }
    updateTabHints();
  }
  document.addEventListener("scroll", function (event) {
    if (event.target.classList && event.target.classList.contains("tabs")) updateTabHints();
  }, true);
  window.addEventListener("resize", updateTabHints);
  window.addEventListener("load", updateTabHints);
  document.addEventListener("htmx:afterSettle", revealCurrentTab);
  document.addEventListener("DOMContentLoaded", revealCurrentTab);

  /* --- Organization switcher submits on change --- */
  document.addEventListener("change", function (event) {
    var form = event.target.closest("form[data-autosubmit]");
    if (form) form.requestSubmit();
  });

  /* --- Echo test: the browser sends the envelope to the coordination API itself --- */
  function uuid7() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    var ms = Date.now();
    for (var i = 5; i >= 0; i--) { bytes[i] = ms % 256; ms = Math.floor(ms / 256); }
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  function setError(form, name, text) {
    var slot = form.querySelector('[data-error-for="' + name + '"]');
    if (!slot) slot = form.querySelector('[data-error-for="__all__"]');
    slot.textContent = slot.hidden ? text : slot.textContent + " " + text;
    slot.hidden = false;
    var field = slot.closest(".field");
    if (field) field.classList.add("has-error");
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (slot) {
      slot.hidden = true;
      slot.textContent = "";
      var field = slot.closest(".field");
      if (field) field.classList.remove("has-error");
    });
  }

  function parsePayload(text) {
    if (!text.trim()) return { error: "The payload is empty; write a JSON object such as {\"hello\": \"world\"}." };
    var value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return { error: "The payload is not valid JSON: " + e.message };
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return { error: "The payload must be a JSON object ({…}), not " + (Array.isArray(value) ? "an array" : String(value === null ? "null" : typeof value)) + "." };
    }
    return { value: value };
  }

  /* 422 details name the bad fields (for example "payload", "recipient.agent_id"); show each next to its input. */
  function showServerErrors(form, details, prefix) {
    if (!details || typeof details !== "object") return false;
    var shown = false;
    Object.keys(details).forEach(function (key) {
      var path = prefix ? prefix + "." + key : key;
      var value = details[key];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        shown = showServerErrors(form, value, path) || shown;
        return;
      }
      var text = Array.isArray(value) ? value.join(" ") : String(value);
      var field = path.split(/[.[]/)[0];
      var known = form.querySelector('[data-error-for="' + field + '"]');
      setError(form, known ? field : "__all__", known ? text : path + ": " + text);
      shown = true;
    });
    return shown;
  }

  /* Before each send: nothing from an earlier send stays on screen (a stale 200 would read as the
     answer to this one). ``note`` says why nothing new is shown, if nothing is sent. */
  function resetResult(panel, note) {
    panel.querySelector("[data-echo-output]").hidden = true;
    ["[data-echo-status]", "[data-echo-time]", "[data-echo-headers]", "[data-echo-body]"].forEach(function (part) {
      panel.querySelector(part).textContent = "";
    });
    panel.querySelector("[data-echo-link]").hidden = true;
    var empty = panel.querySelector("[data-echo-empty]");
    empty.hidden = false;
    empty.querySelector("p").textContent = note;
  }

  function renderResult(panel, result) {
    panel.querySelector("[data-echo-empty]").hidden = true;
    panel.querySelector("[data-echo-output]").hidden = false;
    var badge = panel.querySelector("[data-echo-status]");
    badge.textContent = result.status ? result.status + " " + result.statusText : "no response";
    badge.className = "badge " + (result.status >= 200 && result.status < 300 ? "badge-success" : result.status >= 500 || !result.status ? "badge-danger" : "badge-warning");
    panel.querySelector("[data-echo-time]").textContent = "round trip " + result.elapsed.toFixed(1) + " ms";
    var rows = panel.querySelector("[data-echo-headers]");
    rows.textContent = "";
    result.headers.forEach(function (pair) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = pair[0];
      var td = document.createElement("td");
      td.textContent = pair[1];
      tr.appendChild(th);
      tr.appendChild(td);
      rows.appendChild(tr);
    });
    panel.querySelector("[data-echo-body]").textContent = result.body;
    var link = panel.querySelector("[data-echo-link]");
    if (result.messageId) {
      link.href = "/messages/" + encodeURIComponent(result.messageId) + "/";
      link.hidden = false;
    } else if (result.requestId) {
      link.href = "/messages/?q=" + encodeURIComponent(result.requestId);
      link.hidden = false;
    } else {
      link.hidden = true;
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target.name !== "payload") return;
    var form = event.target.closest("form[data-echo-form]");
    if (!form) return;
    var slot = form.querySelector('[data-error-for="payload"]');
    var parsed = parsePayload(event.target.value);
    slot.hidden = !parsed.error;
    slot.textContent = parsed.error || "";
    slot.closest(".field").classList.toggle("has-error", Boolean(parsed.error));
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-echo-form]");
    if (!form) return;
    event.preventDefault();
    clearErrors(form);
    var panel = document.querySelector("[data-echo-result]");
    var parsed = parsePayload(form.elements.payload.value);
    if (parsed.error) {
      resetResult(panel, "Not sent: correct the payload, then send again.");
      setError(form, "payload", parsed.error);
      form.elements.payload.focus();
      return;
    }
    var envelope = {
      version: "1.0",
      message_id: uuid7(),
      ts: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      type: form.elements.type.value,
      sender: { agent_id: form.elements.sender.value },
      recipient: { agent_id: form.elements.recipient.value },
      payload: parsed.value,
    };
    var headers = { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken() };
    if (form.elements.async.checked) headers["Prefer"] = "respond-async";
    var button = form.querySelector("[type=submit]");
    resetResult(panel, "Sending…");
    button.disabled = true;
    form.classList.add("is-sending");
    var started = performance.now();
    fetch(form.getAttribute("data-endpoint"), {
      method: "POST",
      headers: headers,
      body: JSON.stringify(envelope),
      credentials: "same-origin",
    }).then(function (response) {
      return response.text().then(function (text) {
        var elapsed = performance.now() - started;
        var body = text;
        var json = null;
        try { json = JSON.parse(text); body = JSON.stringify(json, null, 2); } catch (e) { /* not JSON: show as is */ }
        var pairs = [];
        response.headers.forEach(function (value, name) { pairs.push([name, value]); });
        pairs.sort(function (a, b) { return a[0].localeCompare(b[0]); });
        renderResult(panel, {
          status: response.status, statusText: response.statusText, elapsed: elapsed, headers: pairs, body: body,
          messageId: json && response.status < 300 ? json.id : null,
          requestId: response.headers.get("X-Request-ID"),
        });
        if (json && response.status >= 400) {
          // 422 (and 403 for the sender) name the bad fields in details: show each next to its input.
          var perField = response.status === 422 || response.status === 403;
          var shown = perField && showServerErrors(form, json.details);
          if (!shown || response.status === 403) {
            setError(form, "__all__", (json.code ? json.code + ": " : "") + (json.message || "The request was refused."));
          }
        }
      });
    }).catch(function (error) {
      renderResult(panel, { status: 0, statusText: "", elapsed: performance.now() - started, headers: [], body: String(error) });
      setError(form, "__all__", "The request did not reach the server: " + error.message);
    }).finally(function () {
      button.disabled = false;
      form.classList.remove("is-sending");
    });
  });
})();
