// PyFarm job page: the frame grid's clicks, the log viewer (which follows
// a running task's log by asking for what came after the last byte it
// read) and keeping the selected task across the live refreshes.
(function () {
  "use strict";

  var page, viewer, text, status, attempts, follow, refresh, keep;
  // The log being shown: {task, frame, url, attempt, attempts, pinned,
  // offset, final, timer, busy}; seq changes with what is shown.
  var log = null;
  var seq = 0;

  function setStatus(message, isError) {
    status.textContent = message;
    status.classList.toggle("error", !!isError);
  }

  function row(taskId) {
    return document.getElementById("task-" + taskId);
  }

  function markSelected() {
    document.querySelectorAll("#job-tasks tr.selected").forEach(
      function (item) { item.classList.remove("selected"); });
    document.querySelectorAll("#frame-grid i.current").forEach(
      function (item) { item.classList.remove("current"); });
    if (!log) { return; }
    var current = row(log.task);
    if (current) { current.classList.add("selected"); }
    var cell = document.querySelector(
      '#frame-grid [data-t="' + log.task + '"]');
    if (cell) { cell.classList.add("current"); }
  }

  function fillAttempts(count, selected) {
    attempts.textContent = "";
    if (!count) {
      var none = document.createElement("option");
      none.value = "";
      none.textContent = "none yet";
      attempts.appendChild(none);
      attempts.disabled = true;
      return;
    }
    attempts.disabled = count < 2;
    for (var number = count; number >= 1; number -= 1) {
      var option = document.createElement("option");
      option.value = String(number);
      option.textContent = number + (number === count ? " (latest)" : "");
      option.selected = number === selected;
      attempts.appendChild(option);
    }
  }

  var shown = 0;  // characters in the viewer

  function clearText() {
    text.textContent = "";
    shown = 0;
  }

  function append(chunk) {
    if (!chunk) { return; }
    var atEnd = text.scrollTop + text.clientHeight >= text.scrollHeight - 8;
    text.appendChild(document.createTextNode(chunk));
    shown += chunk.length;
    if (shown > keep) {
      // Keep the end of a very long log on screen; the start is dropped.
      var rest = text.textContent.slice(-Math.floor(keep * 0.75));
      text.textContent = "[earlier lines not shown]\n" + rest;
      shown = text.textContent.length;
    }
    if (follow.checked || atEnd) { text.scrollTop = text.scrollHeight; }
  }

  function schedule(delay) {
    if (!log) { return; }
    clearTimeout(log.timer);
    log.timer = setTimeout(read, delay);
  }

  function read() {
    if (!log || log.busy || log.final) { return; }
    if (document.visibilityState !== "visible") { return; }
    var current = log;
    var mine = seq;
    var query = new URLSearchParams({offset: String(current.offset)});
    if (current.attempt) { query.set("attempt", String(current.attempt)); }
    // The answer counts only if nothing changed the log shown meanwhile
    // (another task, another attempt).
    current.busy = mine;
    fetch(current.url + "?" + query.toString(), {
      credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      return response.json().catch(function () {
        throw new Error(response.status === 200 || response.redirected
          ? "Log in again to read the log." :
          "The farm answered " + response.status + ".");
      }).then(function (body) {
        if (!response.ok) { throw new Error(body.error || response.status); }
        return body;
      });
    }).then(function (body) {
      if (current.busy === mine) { current.busy = false; }
      if (current !== log || mine !== seq) { return; }
      show(body);
    }).catch(function (error) {
      if (current.busy === mine) { current.busy = false; }
      if (current !== log || mine !== seq) { return; }
      setStatus(error.message, true);
      schedule(refresh * 3);
    });
  }

  function show(body) {
    if (!log.attempt && body.attempt) { log.attempt = body.attempt; }
    if (body.attempts !== log.attempts) {
      log.attempts = body.attempts;
      fillAttempts(body.attempts, log.attempt);
    }
    append(body.text);
    log.offset = body.offset;
    if (body.final) {
      if (!log.pinned && body.attempts > log.attempt) {
        // The task was tried again: follow the new attempt.
        switchTo(body.attempts, false);
        return;
      }
      setStatus(body.attempt ? "attempt " + body.attempt + " " +
        body.state + "; the whole log is shown" : "never started");
      if (!log.pinned && body.task_state !== "done" &&
          body.task_state !== "failed") {
        // The task goes back to the queue: watch for its next attempt.
        schedule(refresh * 2);
        return;
      }
      log.final = true;
      return;
    }
    if (body.offset < body.size) {
      setStatus("loading… " + Math.round(100 * body.offset / body.size) +
                "%");
      schedule(0);
      return;
    }
    setStatus(body.attempt ? "attempt " + body.attempt + " " + body.state +
      ": following the log" : "not started yet; waiting for an agent");
    schedule(refresh);
  }

  function switchTo(attempt, pinned) {
    seq += 1;
    clearTimeout(log.timer);
    log.attempt = attempt;
    log.pinned = pinned;
    log.offset = 0;
    log.final = false;
    log.busy = false;
    fillAttempts(log.attempts, attempt);
    clearText();
    setStatus("loading…");
    read();
  }

  function open(tr) {
    if (!tr) { return; }
    var count = parseInt(tr.getAttribute("data-attempts"), 10) || 0;
    if (log) { clearTimeout(log.timer); }
    seq += 1;
    log = {task: tr.getAttribute("data-task"),
           frame: tr.getAttribute("data-frame"),
           url: tr.getAttribute("data-log-url"),
           attempt: count || null, attempts: count, pinned: false,
           offset: 0, final: false, timer: null, busy: false};
    document.getElementById("log-title").textContent =
      "Log of frame " + log.frame + " (task " + log.task + ")";
    fillAttempts(count, count);
    clearText();
    setStatus("loading…");
    viewer.hidden = false;
    document.body.classList.add("log-open");
    markSelected();
    read();
  }

  function close() {
    if (log) { clearTimeout(log.timer); }
    log = null;
    seq += 1;
    viewer.hidden = true;
    document.body.classList.remove("log-open");
    markSelected();
  }

  function reveal(tr) {
    open(tr);
    // A quarter down the window: the log panel covers the bottom part.
    var top = tr.getBoundingClientRect().top + window.scrollY -
      window.innerHeight / 4;
    window.scrollTo({top: Math.max(0, top)});
  }

  // A grid cell: its row if it is on this page, else the page holding it.
  function goTo(taskId) {
    var tr = row(taskId);
    if (tr) { reveal(tr); return; }
    var url = page.getAttribute("data-live-url") + "?task=" +
      encodeURIComponent(taskId);
    if (!window.htmx) { window.location = url + "#task-" + taskId; return; }
    htmx.ajax("GET", url, {source: "#task-filter", target: "#job-head",
                           swap: "outerHTML"})
      .then(function () {
        var found = row(taskId);
        if (found) { reveal(found); }
      });
  }

  // After the page of the table changed because of a "go to frame".
  function focusAsked() {
    var tasks = document.getElementById("job-tasks");
    if (!tasks) { return; }
    var state = document.getElementById("task-state");
    if (state) { state.value = tasks.getAttribute("data-state") || ""; }
    var focus = tasks.getAttribute("data-focus");
    if (focus && row(focus)) {
      tasks.setAttribute("data-focus", "");
      // The frame was found: the box is free for the next one (and a
      // change of state filter does not go to it again).
      var frame = document.getElementById("task-frame");
      if (frame) { frame.value = ""; }
      reveal(row(focus));
    }
  }

  function init() {
    page = document.getElementById("job-page");
    viewer = document.getElementById("log-viewer");
    if (!page || !viewer) { return; }
    text = document.getElementById("log-text");
    status = document.getElementById("log-status");
    attempts = document.getElementById("log-attempt");
    follow = document.getElementById("log-follow");
    refresh = parseInt(viewer.getAttribute("data-refresh"), 10) || 2000;
    keep = parseInt(viewer.getAttribute("data-keep"), 10) || 8388608;

    document.addEventListener("click", function (event) {
      var button = event.target.closest("button.open-log");
      if (button) { open(button.closest("tr")); return; }
      var cell = event.target.closest("#frame-grid [data-t]");
      if (cell) { goTo(cell.getAttribute("data-t")); }
    });
    document.getElementById("log-close").addEventListener("click", close);
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && log) { close(); }
    });
    attempts.addEventListener("change", function () {
      if (!log || !attempts.value) { return; }
      var chosen = parseInt(attempts.value, 10);
      switchTo(chosen, chosen !== log.attempts);
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible" && log && !log.final) {
        schedule(0);
      }
    });
    // The live refresh replaced the table and perhaps the grid.
    document.body.addEventListener("htmx:afterSettle", function () {
      markSelected();
      focusAsked();
    });
    // Thumbnails of files the master cannot read: say so instead of a
    // broken image.
    document.addEventListener("error", function (event) {
      var img = event.target;
      if (img.tagName !== "IMG" || !img.classList.contains("thumb")) {
        return;
      }
      var note = document.createElement("span");
      note.className = "no-preview";
      note.textContent = "no preview";
      var link = img.closest("a") || img;
      link.replaceWith(note);
    }, true);
    focusAsked();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
