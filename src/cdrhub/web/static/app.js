// cdrhub dashboard: the only script (the Content-Security-Policy allows no other).
// It sizes bars, and polls for new calls so pages update without reloading.
"use strict";

function sizeBars(root) {
  root.querySelectorAll("[data-width]").forEach(function (el) {
    el.style.width = el.getAttribute("data-width") + "%";
  });
}

function pollOverview() {
  var box = document.getElementById("overview");
  if (!box || !box.dataset.live) return;
  setInterval(function () {
    fetch(box.dataset.live, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        box.replaceChildren.apply(box, Array.from(doc.body.childNodes));
        sizeBars(box);
      })
      .catch(function () {});
  }, 5000);
}

function pollCalls() {
  var table = document.getElementById("calls");
  if (!table || !table.dataset.rows) return;
  var body = table.tBodies[0];
  var seen = 0;
  setInterval(function () {
    var since = table.dataset.since || "0";
    var url = table.dataset.rows + (table.dataset.rows.indexOf("?") < 0 ? "?" : "&") + "since_ms=" + since;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
        var rows = Array.from(doc.querySelectorAll("tr"));
        if (!rows.length) return;
        rows.reverse().forEach(function (row) {
          row.classList.add("new");
          body.insertBefore(document.importNode(row, true), body.firstChild);
        });
        table.dataset.since = rows[rows.length - 1].dataset.start;
        seen += rows.length;
        document.getElementById("live-count").textContent = seen;
        document.getElementById("live-note").hidden = false;
      })
      .catch(function () {});
  }, 5000);
}

document.addEventListener("DOMContentLoaded", function () {
  sizeBars(document);
  pollOverview();
  pollCalls();
});
