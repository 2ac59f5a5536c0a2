// workflows ui refresh, version 1 (part of workflows-tick; no dependencies).
// While the page says something runs (<main data-live="1">) and the tab is visible,
// fetch this same page every few seconds and swap in its <main>. Stops as soon as
// nothing runs; resumes when a hidden tab becomes visible again.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  var timer = null;

  function live() {
    var main = document.querySelector("main");
    return main !== null && main.getAttribute("data-live") === "1";
  }

  function schedule() {
    if (timer === null && live() && !document.hidden) {
      timer = window.setTimeout(refresh, PERIOD_MS);
    }
  }

  function refresh() {
    timer = null;
    if (document.hidden) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var next = fresh.querySelector("main");
        var current = document.querySelector("main");
        if (next !== null && current !== null) {
          current.replaceWith(document.adoptNode(next));
          document.title = fresh.title;
        }
      })
      .catch(function () {
        // The server may be restarting: try again at the next period.
      })
      .then(schedule);
  }

  document.addEventListener("visibilitychange", schedule);
  schedule();
})();
