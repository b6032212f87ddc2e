// PyFarm web UI: the little JavaScript the pages share. htmx does the
// requests; this shows their errors and keeps checkbox selections.
(function () {
  "use strict";

  function notice(text, isError) {
    var box = document.getElementById("notices");
    if (!box) { return; }
    var item = document.createElement("p");
    item.className = "notice" + (isError ? " error" : "");
    item.setAttribute("role", isError ? "alert" : "status");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, isError ? 10000 : 4000);
  }
  window.pyfarmNotice = notice;

  // The server answers an htmx request it refuses with a plain-text
  // message (403, 400, 409...): show it instead of failing silently.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = (xhr.responseText || "").trim();
    if (!text || text.charAt(0) === "<") {
      text = "The farm answered " + xhr.status + " " + xhr.statusText;
    }
    notice(text, true);
  });
  document.addEventListener("htmx:sendError", function () {
    notice("The master does not answer; retrying on the next refresh.",
           true);
  });

  // Messages the server sends with a successful htmx answer
  // (the HX-Trigger header {"pyfarm-notice": "..."}).
  document.addEventListener("pyfarm-notice", function (event) {
    notice(event.detail.value || "");
  });

  // Flashed messages fade away like the others.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#notices .notice").forEach(function (item) {
      setTimeout(function () { item.remove(); }, 6000);
    });
  });
})();
