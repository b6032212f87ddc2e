// The submit form: rows of requirements to add and remove, and how many
// frames the range names. The form works without it.
(function () {
  "use strict";

  function wholeNumber(input) {
    if (!input || !/^\s*[+-]?\d+\s*$/.test(input.value)) { return null; }
    return parseInt(input.value, 10);
  }

  function frameSummary(form) {
    var out = document.getElementById("frame-summary");
    if (!out) { return; }
    var start = wholeNumber(form.elements.start);
    var end = wholeNumber(form.elements.end);
    var by = wholeNumber(form.elements.by);
    var batch = wholeNumber(form.elements.batch);
    if (by === null && form.elements.by.value.trim() === "") { by = 1; }
    if (batch === null && form.elements.batch.value.trim() === "") {
      batch = 1;
    }
    if (start === null || end === null || by === null || by < 1) {
      out.textContent = "";
      return;
    }
    if (end < start) {
      out.textContent = "The end frame is before the start frame.";
      return;
    }
    var frames = Math.floor((end - start) / by) + 1;
    var text = frames + (frames === 1 ? " frame" : " frames");
    if (batch && batch > 1 && frames > 1) {
      text += ", up to " + batch + " per process";
    }
    out.textContent = text + ".";
  }

  function renumber(body) {
    body.querySelectorAll("tr").forEach(function (row, index) {
      row.querySelectorAll("[aria-label]").forEach(function (control) {
        control.setAttribute("aria-label", control.getAttribute("aria-label")
          .replace(/row \S+$/, "row " + (index + 1)));
      });
    });
  }

  function showRowButtons(root) {
    root.querySelectorAll("[data-remove-row]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("submit-form");
    if (!form) { return; }
    showRowButtons(form);
    form.querySelectorAll("[data-add-row]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-add-row");
        var body = document.getElementById(name);
        var template = document.getElementById(
          name.replace(/s$/, "") + "-template");
        if (!body || !template) { return; }
        var row = template.content.firstElementChild.cloneNode(true);
        body.appendChild(row);
        showRowButtons(row);
        renumber(body);
        var first = row.querySelector("input, select");
        if (first) { first.focus(); }
      });
    });
    form.addEventListener("click", function (event) {
      var button = event.target.closest("[data-remove-row]");
      if (!button) { return; }
      var row = button.closest("tr");
      var body = row.parentNode;
      if (body.querySelectorAll("tr").length > 1) {
        row.remove();
      } else {
        row.querySelectorAll("input").forEach(function (input) {
          input.value = "";
        });
        row.querySelectorAll("select").forEach(function (select) {
          select.selectedIndex = 0;
        });
      }
      renumber(body);
    });
    ["start", "end", "by", "batch"].forEach(function (name) {
      if (form.elements[name]) {
        form.elements[name].addEventListener("input", function () {
          frameSummary(form);
        });
      }
    });
    frameSummary(form);
    var errors = document.getElementById("form-errors");
    if (errors) { errors.focus(); }
  });
})();
