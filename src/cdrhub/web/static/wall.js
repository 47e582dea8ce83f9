// The wallboard (/wall): fetch /wall/data every data-refresh seconds and put the figures in
// place. Every value goes in with textContent or an SVG attribute, never as markup: agent
// names and alert texts come from outside. The theme (dark/light) is remembered here.
"use strict";

var DASH = "\u2013";

// The same formatting as the server's i18n.duration() and percent() (web/i18n.py, routes.py),
// in the page's language: "3m 14s" / "1h 06m" in English, "3分14秒" / "1小时06分" in Chinese.
var UNITS = (document.documentElement.lang || "en").indexOf("zh") === 0
  ? {h: "小时", m: "分", mm: "分", s: "秒"}
  : {h: "h ", m: "m ", mm: "m", s: "s"};
function duration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  var whole = Math.round(seconds);
  function two(n) { return (n < 10 ? "0" : "") + n; }
  if (whole >= 3600) return Math.floor(whole / 3600) + UNITS.h + two(Math.floor(whole % 3600 / 60)) + UNITS.mm;
  if (whole >= 60) return Math.floor(whole / 60) + UNITS.m + two(whole % 60) + UNITS.s;
  return whole + UNITS.s;
}

function percent(value) {
  return value === null || value === undefined ? DASH : (value * 100).toFixed(1) + "%";
}

function shown(name, value) {
  if (name === "service_level") return percent(value);
  if (name === "asa_seconds" || name === "longest_wait_seconds") return duration(value);
  return String(value);
}

function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }

function render(root, data) {
  var today = data.today;
  root.querySelectorAll("#today .fig").forEach(function (fig) {
    var name = fig.dataset.figure;
    setText(fig.querySelector("b"), shown(name, today[name]));
    if (name === "service_level") {
      fig.classList.toggle("below", today.service_level !== null && today.service_level < data.sl_target);
    }
  });
  setText(document.getElementById("sl-target"), percent(data.sl_target));
  var top = Math.max.apply(null, data.last_hour.map(function (q) { return q.calls; }).concat([0])) || 1;
  data.last_hour.forEach(function (q, i) {
    var row = root.querySelector("#quarters tr[data-index='" + i + "']");
    if (row) {
      row.querySelectorAll("td").forEach(function (td) {
        var name = td.dataset.figure;
        setText(td, name === "from" ? q.from.slice(11, 16) : shown(name, q[name]));
      });
    }
    var bar = root.querySelector("#hour-chart .bar[data-index='" + i + "']");
    if (bar) {
      var height = Math.round(100 * q.calls / top * 100) / 100;
      var rect = bar.querySelector("rect");
      rect.setAttribute("y", String(100 - height));
      rect.setAttribute("height", String(height));
      var value = bar.querySelector(".value");
      value.setAttribute("y", String(100 - height - 2));
      setText(value, String(q.calls));
      setText(bar.querySelector(".label"), q.from.slice(11, 16));
    }
  });
  var list = document.getElementById("alert-list");
  var alerts = data.alerts || [];
  while (list.firstChild) list.removeChild(list.firstChild);
  alerts.forEach(function (alert) {
    var li = document.createElement("li");
    li.className = "alert";
    li.textContent = typeof alert === "string" ? alert : (alert.message || alert.name || "");
    list.appendChild(li);
  });
  document.getElementById("no-alerts").classList.toggle("hidden", alerts.length > 0);
  setText(document.getElementById("updated"), data.generated_at.slice(11, 19));
}

function applyTheme(theme) {
  var html = document.documentElement;
  html.dataset.theme = theme;
  var button = document.getElementById("theme-toggle");
  if (button) button.textContent = theme === "dark" ? button.dataset.light : button.dataset.dark;
}

function storedTheme() {
  try { return window.localStorage.getItem("cdrhub-wall-theme"); } catch (e) { return null; }
}

function rememberTheme(theme) {
  try { window.localStorage.setItem("cdrhub-wall-theme", theme); } catch (e) { /* private mode */ }
}

document.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("wall");
  if (!root) return;
  var asked = document.documentElement.dataset.themeAsked;
  var theme = asked || storedTheme() || "dark";
  if (asked) rememberTheme(asked);
  applyTheme(theme);
  document.getElementById("theme-toggle").addEventListener("click", function () {
    var next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    rememberTheme(next);
    applyTheme(next);
  });
  var stale = document.getElementById("wall-stale");
  var busy = false;
  setInterval(function () {
    if (busy) return;
    busy = true;
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("wallboard data: HTTP " + r.status);
        return r.json();
      })
      .then(function (data) { render(root, data); stale.classList.add("hidden"); })
      .catch(function () { stale.classList.remove("hidden"); })
      .then(function () { busy = false; });
  }, Number(root.dataset.refresh) * 1000);
});
