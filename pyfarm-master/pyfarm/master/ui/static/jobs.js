// The jobs page: keeps the ticked jobs across the rows' refreshes,
// enables the bulk buttons, asks before deleting and submits the filter
// form when a choice changes.
(function () {
  "use strict";

  // Ids of the ticked jobs; the rows are replaced every few seconds.
  var selected = new Set();

  function rows() { return document.getElementById("job-rows"); }

  function boxes() {
    var body = rows();
    return body ? Array.prototype.slice.call(body.querySelectorAll(
      'input[type="checkbox"][name="job_ids"]')) : [];
  }

  // After a refresh: tick again what was ticked; forget the jobs that
  // left the page (deleted, or no longer matching the filters).
  function restore() {
    var present = new Set();
    boxes().forEach(function (box) {
      present.add(box.value);
      if (selected.has(box.value)) { box.checked = true; }
      else if (box.checked) { selected.add(box.value); }
    });
    selected.forEach(function (id) {
      if (!present.has(id)) { selected.delete(id); }
    });
    update();
  }

  function update() {
    var all = boxes();
    all.forEach(function (box) {
      var row = box.closest("tr");
      if (row) { row.classList.toggle("selected", box.checked); }
    });
    var count = selected.size;
    var label = document.getElementById("job-selection");
    if (label) {
      label.textContent = count ? count + (count === 1 ? " job" : " jobs") +
        " selected" : "Tick jobs to change them";
    }
    document.querySelectorAll("#job-form [data-bulk]").forEach(
      function (button) { button.disabled = count === 0; });
    var master = document.getElementById("job-select-all");
    if (master) {
      master.disabled = all.length === 0;
      master.checked = all.length > 0 && count === all.length;
      master.indeterminate = count > 0 && count < all.length;
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.name === "job_ids" && target.closest("#job-rows")) {
      if (target.checked) { selected.add(target.value); }
      else { selected.delete(target.value); }
      update();
    } else if (target.id === "job-select-all") {
      boxes().forEach(function (box) {
        box.checked = target.checked;
        if (target.checked) { selected.add(box.value); }
        else { selected.delete(box.value); }
      });
      update();
    } else if (target.form && target.form.id === "job-filters" &&
               (target.tagName === "SELECT" || target.type === "checkbox")) {
      // A choice in a list or the "mine" box filters at once; text
      // fields filter on Enter.
      target.form.requestSubmit();
    }
  });

  // Ask before deleting. Capturing at the document runs before htmx's
  // own listener on the form, so a "no" stops both htmx and the browser.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || !event.target || event.target.id !== "job-form") {
      return;
    }
    var stop = false;
    if (button.value === "priority") {
      var input = document.getElementById("bulk-priority");
      if (input && input.value.trim() === "") {
        if (window.pyfarmNotice) {
          window.pyfarmNotice("Type a priority first.", true);
        }
        input.focus();
        stop = true;
      }
    }
    var question = button.getAttribute("data-confirm");
    if (!stop && question) {
      var count = selected.size;
      stop = !window.confirm(question.replace(
        "the selected jobs",
        count === 1 ? "1 selected job" : count + " selected jobs"));
    }
    if (stop) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  // Enter in the priority field sets the priority.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.id === "bulk-priority") {
      event.preventDefault();
      var button = document.getElementById("bulk-set-priority");
      if (button && !button.disabled) { button.click(); }
    }
  });

  // The filter form sends only the filters chosen, so that the URL to
  // bookmark reads "?state=failed&mine=1" rather than every empty field.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.id !== "job-filters") { return; }
    event.preventDefault();
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      value = String(value).trim();
      if (value && !(key === "per_page" &&
                     value === form.getAttribute("data-default-per-page"))) {
        params.append(key, value);
      }
    });
    var query = params.toString();
    window.location.assign(form.getAttribute("action").split("?")[0] +
                           (query ? "?" + query : ""));
  });

  // The rows came back (refresh or bulk action): tick them again.
  document.addEventListener("htmx:afterSettle", restore);

  document.addEventListener("DOMContentLoaded", restore);
})();
