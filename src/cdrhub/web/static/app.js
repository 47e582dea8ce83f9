// cdrhub dashboard: the page script (the Content-Security-Policy allows only this, js/charts.js
// and the vendored uPlot, all served from /static).
// It sizes bars, marks the overview's period custom when dates are typed, and polls for new
// calls so pages update without reloading. Every fragment it inserts was rendered (and
// escaped) by the server; nothing here builds HTML from data.
"use strict";

var POLL_MS = 5000;

function sizeBars(root) {
  root.querySelectorAll("[data-width]").forEach(function (el) {
    el.style.width = el.getAttribute("data-width") + "%";
  });
}

function withParam(url, name, value) {
  return url + (url.indexOf("?") < 0 ? "?" : "&") + name + "=" + encodeURIComponent(value);
}

function fragment(url) {
  return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
    .then(function (r) {
      // A redirect to the sign-in page (session over) is not a fragment: stop quietly.
      // 204: nothing changed since the page's mark.
      if (!r.ok || r.redirected || r.status === 204) return null;
      return r.text().then(function (html) { return { html: html, headers: r.headers }; });
    });
}

function every(ms, task) {
  var busy = false;
  setInterval(function () {
    if (busy || document.hidden) return;  // a hidden tab costs the server nothing
    busy = true;
    task().catch(function () {}).then(function () { busy = false; });
  }, ms);
}

function pollOverview() {
  var box = document.getElementById("overview");
  if (!box || !box.dataset.live) return;
  every(POLL_MS * 2, function () {
    // The server answers 204 while the period's calls are unchanged: no re-render for nothing.
    return fragment(withParam(box.dataset.live, "mark", box.dataset.mark || "")).then(function (got) {
      if (!got) return;
      var mark = got.headers.get("X-Cdrhub-Mark");
      if (mark) box.dataset.mark = mark;
      var doc = new DOMParser().parseFromString(got.html, "text/html");
      box.replaceChildren.apply(box, Array.from(doc.body.childNodes));
      sizeBars(box);
      if (window.cdrhubCharts) window.cdrhubCharts(box);
    });
  });
}

function pollCalls() {
  var table = document.getElementById("calls");
  if (!table || !table.dataset.rows) return;
  var body = table.tBodies[0];
  var seen = 0;
  every(POLL_MS, function () {
    var url = withParam(table.dataset.rows, "after", table.dataset.after || "0");
    return fragment(url).then(function (got) {
      if (!got) return;
      var after = got.headers.get("X-Cdrhub-After");
      if (after) table.dataset.after = after;
      var doc = new DOMParser().parseFromString(
        "<table><tbody>" + got.html + "</tbody></table>", "text/html");
      var rows = Array.from(doc.querySelectorAll("tr"));
      var added = 0;
      rows.reverse().forEach(function (row) {
        var id = row.getAttribute("data-id");
        var shown = Array.from(body.rows).filter(function (old) {
          return old.getAttribute("data-id") === id;
        });
        var fresh = document.importNode(row, true);
        fresh.classList.add("new");
        if (shown.length) {  // already on the page (a correction, or the poll overlap)
          body.replaceChild(fresh, shown[0]);
          return;
        }
        body.insertBefore(fresh, body.firstChild);
        added += 1;
      });
      seen += added;
      if (added) {
        document.getElementById("live-count").textContent = seen;
        document.getElementById("live-note").hidden = false;
        var none = document.getElementById("no-calls");
        if (none) none.hidden = true;
      }
    });
  });
}

// Dates typed into the overview's form mean a custom period, whatever pill was selected.
function customOnDates() {
  var form = document.getElementById("range-form");
  if (!form) return;
  var custom = form.querySelector("input[name=range][value=custom]");
  form.querySelectorAll("input[type=date]").forEach(function (input) {
    input.addEventListener("change", function () { if (custom) custom.checked = true; });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  sizeBars(document);
  customOnDates();
  pollOverview();
  pollCalls();
});
