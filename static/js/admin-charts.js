// Holdfast admin console scripts. The CSP forbids inline script, so pages only carry
// data-* attributes and this file does the rest.
//
// - Dashboard: every <canvas data-chart-url data-chart-type> is drawn with Chart.js
//   (static/vendor/chart.umd.min.js) from its JSON endpoint
//   {title, labels, values, links, total}. A bar or slice with a link opens the sessions
//   explorer filtered to it. Charts refresh every minute; the figures refresh through htmx.
// - Sessions explorer: "select all" ticks every live row on the page.
(function () {
  "use strict";

  var REFRESH_MS = 60000;
  var PALETTE = ["#1f6feb", "#15803d", "#d97706", "#9333ea", "#0891b2", "#db2777",
                 "#65a30d", "#dc2626", "#64748b"];

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function reducedMotion() {
    return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  }

  function load(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          // Signed out, or the admin sign-in is older than 15 minutes: let the page
          // itself take the person to the right place.
          window.location.reload();
          throw new Error("not signed in");
        }
        if (!response.ok) throw new Error("chart data: HTTP " + response.status);
        return response.json();
      });
  }

  function config(canvas, data) {
    var type = canvas.dataset.chartType || "bar";
    var pie = type === "doughnut" || type === "pie";
    var links = data.links || [];
    var colors = pie ? data.labels.map(function (_label, i) { return PALETTE[i % PALETTE.length]; })
                     : PALETTE[0];
    function linkAt(elements) {
      return elements && elements.length ? links[elements[0].index] : null;
    }
    return {
      type: type,
      data: {
        labels: data.labels,
        datasets: [{
          label: data.title,
          data: data.values,
          backgroundColor: colors,
          borderColor: pie ? cssVar("--pico-background-color", "#fff") : colors,
          borderWidth: pie ? 2 : 0,
          borderRadius: pie ? 0 : 3,
          maxBarThickness: 42,
        }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reducedMotion() ? false : {
          duration: 500,
          onComplete: function () { canvas.dataset.drawn = "true"; },
        },
        cutout: type === "doughnut" ? "58%" : undefined,
        plugins: {
          // Beside a wide pie, under a narrow one (phones).
          legend: { display: pie, position: canvas.clientWidth < 420 ? "bottom" : "right",
                    labels: { boxWidth: 12, padding: 10 } },
          tooltip: { callbacks: { footer: function (items) {
            return linkAt(items.map(function (item) { return { index: item.dataIndex }; }))
              ? (canvas.dataset.clickWords || "Click to see these sessions") : "";
          } } },
        },
        scales: pie ? {} : {
          // A few labels (buckets) are all shown; many (days, hours) thin out to fit.
          x: { grid: { display: false },
               ticks: { autoSkip: data.labels.length > 12,
                        maxRotation: data.labels.length > 12 ? 0 : 50 } },
          y: { beginAtZero: true, ticks: { precision: 0 },
               grid: { color: cssVar("--pico-muted-border-color", "#e5e7eb") } },
        },
        onHover: function (event, elements) {
          event.native.target.style.cursor = linkAt(elements) ? "pointer" : "default";
        },
        onClick: function (_event, elements) {
          var link = linkAt(elements);
          if (link) window.location.assign(link);
        },
      },
    };
  }

  function show(canvas, data) {
    var card = canvas.closest(".chart-card");
    var empty = card && card.querySelector(".chart-empty");
    var nothing = !data.total;
    canvas.hidden = nothing;
    if (empty) empty.hidden = !nothing;
    canvas.setAttribute("aria-label", data.title + ": " + data.labels.map(function (label, i) {
      return label + " " + data.values[i];
    }).join(", "));
    if (nothing) {
      canvas.dataset.drawn = "true";
      return;
    }
    if (canvas._chart) {
      canvas._chart.data.labels = data.labels;
      canvas._chart.data.datasets[0].data = data.values;
      canvas._chart.update("none");
      return;
    }
    canvas._chart = new window.Chart(canvas, config(canvas, data));
    if (reducedMotion()) canvas.dataset.drawn = "true";
  }

  function drawAll() {
    document.querySelectorAll("canvas[data-chart-url]").forEach(function (canvas) {
      load(canvas.dataset.chartUrl).then(function (data) { show(canvas, data); })
        .catch(function (error) { if (window.console) console.warn(error); });
    });
  }

  function setUpCharts() {
    if (!document.querySelector("canvas[data-chart-url]")) return;
    if (!window.Chart) {
      if (window.console) console.warn("Chart.js did not load");
      return;
    }
    window.Chart.defaults.color = cssVar("--pico-muted-color", "#475569");
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    drawAll();
    window.setInterval(function () {
      if (document.visibilityState === "visible") drawAll();
    }, REFRESH_MS);
  }

  function setUpSelectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll("input.pick").forEach(function (box) { box.checked = all.checked; });
    });
    // After "End selected" the ended rows have no box left: start the next choice afresh.
    document.body.addEventListener("htmx:afterRequest", function () { all.checked = false; });
  }

  function ready() {
    setUpCharts();
    setUpSelectAll();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
