// cdrhub charts: time charts drawn by uPlot (static/vendor/uplot, MIT) from numbers the page
// embeds, under the strict Content-Security-Policy (no inline script or style, no eval: uPlot
// draws on a canvas and positions its elements through the CSSOM, which the policy allows).
//
// API (all of it):
//   cdrhubCharts(root)          draw every element under `root` with a data-chart="ID"
//                               attribute from the JSON in <script type="application/json"
//                               id="ID">; read with textContent + JSON.parse, never innerHTML.
//                               Called on DOMContentLoaded and after a live refresh.
//   cdrhubChart(element, spec)  draw one chart into `element`; returns the uPlot instance.
//
// spec (built by cdrhub.web.charts.*_spec in Python from the same statistics as /api/stats):
//   kind     "bars"
//   zone     IANA zone of the call center: axis ticks and tooltip times are in it
//   unit     "hour" | "day" | "month": the bucket size (tooltip says "10:00–11:00", a day...)
//   x        bucket starts, Unix seconds
//   keys     bucket names exactly as /api/stats groups them (shown nowhere; for tests)
//   series   [{label, color, values: [number|null]}], stacked when `stacked` is true
//            (the first series on top, as the legend reads top to bottom)
//   stacked  bool
//   format   "count" | "percent" (values 0..1, axis 0-100%)
//   target   number|null: a dashed line at that value (the service-level target)
//   text     {target: "Target", total: "Total", clipped: "...", none: "–"}
//
// A scale for one busy day: when the tallest bucket is more than 3x the next one, the axis
// stops at 1.5x the next one (the other buckets stay readable), the clipped bars end in a
// white break mark, a note under the chart says so, and the tooltip gives the true figures.
// A log axis was the other choice; it was rejected because stacked bars on a log scale
// misstate the parts (the top segment of a stack looks tiny whatever its size).
//
// Nothing here builds HTML from data: labels and figures go in with textContent.
"use strict";

(function () {
  var CLIP_RATIO = 3;    // tallest / next tallest above which the scale is clipped
  var CLIP_ROOM = 1.5;   // the clipped axis ends at this many times the next tallest

  function fmtTime(zone, lang, options) {
    var o = { timeZone: zone };
    for (var k in options) o[k] = options[k];
    try {
      return new Intl.DateTimeFormat(lang, o);
    } catch (e) {  // an unknown zone in an old browser: UTC rather than nothing
      o.timeZone = "UTC";
      return new Intl.DateTimeFormat(lang, o);
    }
  }

  function number(v, format, lang) {
    if (v === null || v === undefined) return null;
    if (format === "percent") return (v * 100).toFixed(1) + "%";
    return v.toLocaleString(lang);
  }

  // The stacked heights of the shown series: series i reaches the sum of the shown series
  // from i down (the last series sits at the bottom).
  function stackedData(spec, shown) {
    var n = spec.x.length;
    var out = [spec.x];
    for (var i = 0; i < spec.series.length; i++) {
      var col = new Array(n);
      for (var d = 0; d < n; d++) {
        if (!spec.stacked) { col[d] = spec.series[i].values[d]; continue; }
        var sum = null;
        for (var j = i; j < spec.series.length; j++) {
          var v = spec.series[j].values[d];
          if (shown[j] && v !== null) sum = (sum || 0) + v;
        }
        col[d] = shown[i] ? sum : null;
      }
      out.push(col);
    }
    return out;
  }

  // The highest visible bar of each bucket, and the axis top that keeps the rest readable.
  function scaleTop(data) {
    var tops = [];
    for (var d = 0; d < data[0].length; d++) {
      var top = 0;
      for (var i = 1; i < data.length; i++) top = Math.max(top, data[i][d] || 0);
      tops.push(top);
    }
    var sorted = tops.slice().sort(function (a, b) { return b - a; });
    var first = sorted[0] || 0, second = sorted[1] || 0;
    if (second > 0 && first > CLIP_RATIO * second) return { cap: CLIP_ROOM * second, tops: tops };
    return { cap: null, tops: tops };
  }

  function cdrhubChart(el, spec) {
    var lang = document.documentElement.lang || "en";
    var text = spec.text || {};
    var percent = spec.format === "percent";
    var step = spec.x.length > 1 ? spec.x[1] - spec.x[0] : 3600;
    var tipTime = {
      hour: fmtTime(spec.zone, lang, { weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }),
      day: fmtTime(spec.zone, lang, { weekday: "short", year: "numeric", month: "short", day: "numeric" }),
      month: fmtTime(spec.zone, lang, { year: "numeric", month: "long" })
    }[spec.unit];
    var hourOnly = fmtTime(spec.zone, lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    var tickTime = {
      hour: hourOnly,
      day: fmtTime(spec.zone, lang, { month: "short", day: "numeric" }),
      month: fmtTime(spec.zone, lang, { year: "numeric", month: "short" })
    }[spec.unit];
    var shown = spec.series.map(function () { return true; });
    var state = { cap: null, tops: [] };
    var ticks = { x: [], y: [] };

    var note = document.createElement("p");
    note.className = "chart-note";
    note.hidden = true;
    var tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.hidden = true;

    function bucketName(d) {
      var start = new Date(spec.x[d] * 1000);
      if (spec.unit !== "hour") return tipTime.format(start);
      var next = new Date((d + 1 < spec.x.length ? spec.x[d + 1] : spec.x[d] + 3600) * 1000);
      return tipTime.format(start) + "–" + hourOnly.format(next);
    }

    function showTip(u) {
      var d = u.cursor.idx;
      if (d === null || d === undefined) { tip.hidden = true; return; }
      tip.replaceChildren();
      var head = document.createElement("b");
      head.textContent = bucketName(d);
      tip.appendChild(head);
      var total = 0, any = false;
      spec.series.forEach(function (s, i) {
        if (!shown[i]) return;
        var v = s.values[d];
        if (v !== null) { total += v; any = true; }
        var row = document.createElement("span");
        var mark = document.createElement("i");
        mark.style.background = s.color;
        row.appendChild(mark);
        row.appendChild(document.createTextNode(s.label + ": " + (number(v, spec.format, lang) || text.none || "–")));
        tip.appendChild(row);
      });
      if (spec.stacked && spec.series.length > 1) {
        var sum = document.createElement("span");
        sum.textContent = (text.total || "Total") + ": " + (any ? number(total, spec.format, lang) : "0");
        tip.appendChild(sum);
      }
      if (spec.target !== null && spec.target !== undefined) {
        var goal = document.createElement("span");
        goal.className = "target";
        goal.textContent = (text.target || "Target") + ": " + number(spec.target, spec.format, lang);
        tip.appendChild(goal);
      }
      tip.hidden = false;
      var left = u.valToPos(spec.x[d], "x");
      var wide = u.over.clientWidth;
      var w = tip.offsetWidth;
      tip.style.left = Math.max(0, Math.min(wide - w, left + 12 > wide - w ? left - w - 12 : left + 12)) + "px";
      tip.style.top = "4px";
    }

    function drawExtras(u) {
      var ctx = u.ctx, dpr = window.devicePixelRatio || 1;
      var box = u.bbox;
      ctx.save();
      if (state.cap !== null) {  // a break mark at the top of each clipped bar
        var clipped = 0;
        var half = (u.valToPos(spec.x[0] + step * 0.4, "x", true) - u.valToPos(spec.x[0], "x", true));
        state.tops.forEach(function (top, d) {
          if (top <= state.cap) return;
          clipped += 1;
          var cx = u.valToPos(spec.x[d], "x", true);
          var y = box.top + 6 * dpr;
          ctx.fillStyle = "#fff";
          ctx.fillRect(cx - half, y, 2 * half, 3 * dpr);
        });
        el.dataset.clipped = String(clipped);
      } else {
        el.dataset.clipped = "0";
      }
      if (spec.target !== null && spec.target !== undefined) {
        var y = Math.round(u.valToPos(spec.target, "y", true)) + 0.5;
        ctx.strokeStyle = "#1d2733";
        ctx.lineWidth = 2 * dpr;
        ctx.setLineDash([6 * dpr, 4 * dpr]);
        ctx.beginPath();
        ctx.moveTo(box.left, y);
        ctx.lineTo(box.left + box.width, y);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = "#1d2733";
        ctx.font = (11 * dpr) + "px system-ui, sans-serif";
        ctx.textAlign = "right";
        ctx.textBaseline = "bottom";
        var label = (text.target || "Target") + " " + number(spec.target, spec.format, lang);
        var lw = ctx.measureText(label).width;
        var lx = box.left + box.width - 4 * dpr;
        ctx.fillStyle = "rgba(255,255,255,.85)";  // readable over the bars behind it
        ctx.fillRect(lx - lw - 3 * dpr, y - 16 * dpr, lw + 6 * dpr, 13 * dpr);
        ctx.fillStyle = "#1d2733";
        ctx.fillText(label, lx, y - 3 * dpr);
        el.dataset.targetY = String(u.valToPos(spec.target, "y"));  // CSS px from the plot's top
      }
      ctx.restore();
      el.dataset.xTicks = JSON.stringify(ticks.x);
      el.dataset.yTicks = JSON.stringify(ticks.y);
      el.dataset.drawn = String((Number(el.dataset.drawn) || 0) + 1);
    }

    function rescale(u) {
      var got = scaleTop(u.data);
      state.cap = got.cap;
      state.tops = got.tops;
      note.hidden = got.cap === null;
      note.textContent = got.cap === null ? "" : (text.clipped || "");
    }

    var opts = {
      width: Math.max(200, el.clientWidth),
      height: 200,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), spec.zone); },
      padding: [12, 16, 0, 0],
      cursor: { points: { show: false }, drag: { x: false, y: false }, y: false },
      legend: { live: false },
      scales: {
        x: {
          time: true,
          range: function () {
            var last = spec.x[spec.x.length - 1];
            return [spec.x[0] - step / 2, last + step / 2];
          }
        },
        y: {
          range: function (u, min, max) {
            if (percent) return [0, 1];
            var top = state.cap !== null ? state.cap : Math.max(max || 0, 1);
            return uPlot.rangeNum(0, top, 0.1, true);
          }
        }
      },
      axes: [
        {
          stroke: "#5c6b7a",
          grid: { show: false },
          values: function (u, splits) {
            ticks.x = splits.map(function (s) { return tickTime.format(new Date(s * 1000)); });
            return ticks.x;
          }
        },
        {
          stroke: "#5c6b7a",
          size: 48,
          grid: { stroke: "#eef2f6" },
          values: function (u, splits) {
            ticks.y = splits.map(function (s) {
              return percent ? Math.round(s * 100) + "%" : Math.round(s) === s ? s.toLocaleString(lang) : "";
            });
            return ticks.y;
          }
        }
      ],
      series: [{ label: "" }].concat(spec.series.map(function (s) {
        return {
          label: s.label,
          stroke: s.color,
          fill: s.color,
          width: 0,
          paths: uPlot.paths.bars({ size: [0.8, 64], gap: 1 }),
          points: { show: false }
        };
      })),
      hooks: {
        setData: [rescale],
        draw: [drawExtras],
        setCursor: [showTip],
        setSeries: [function (u, i) {
          if (i === null || i === undefined) return;
          shown = u.series.slice(1).map(function (s) { return s.show; });
          u.setData(stackedData(spec, shown));
        }]
      }
    };
    el.replaceChildren();
    var data = stackedData(spec, shown);
    state = scaleTop(data);
    var u = new uPlot(opts, data, el);
    u.over.appendChild(tip);
    u.over.addEventListener("mouseleave", function () { tip.hidden = true; });
    el.appendChild(note);
    rescale(u);
    u.redraw(false);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        var w = Math.max(200, el.clientWidth);
        if (Math.abs(w - u.width) > 1) u.setSize({ width: w, height: 200 });
      }).observe(el);
    }
    el.cdrhubChart = u;
    return u;
  }

  function cdrhubCharts(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      var island = document.getElementById(el.getAttribute("data-chart"));
      if (!island || !window.uPlot) return;  // no data or no library: the table stays the figures
      cdrhubChart(el, JSON.parse(island.textContent));
    });
  }

  window.cdrhubChart = cdrhubChart;
  window.cdrhubCharts = cdrhubCharts;
  document.addEventListener("DOMContentLoaded", function () { cdrhubCharts(document); });
})();
