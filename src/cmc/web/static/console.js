// The merchant console's charts: each <canvas data-series="{labels, datasets}"> is drawn by Chart.js
// when the page loads and whenever htmx swaps new content in. (The data is an attribute, not a JSON
// <script>: htmx drops the script elements of what it swaps in.)
(function () {
  "use strict";
  var palette = ["--primary", "#e07a2f", "#3b6fb6", "#8a5cc2", "#c23b5a", "#4d9a9a", "#777"];

  function colour(i) {
    var c = palette[i % palette.length];
    return c.startsWith("--") ? getComputedStyle(document.documentElement).getPropertyValue(c).trim() : c;
  }

  function draw(canvas) {
    if (typeof Chart === "undefined") return;
    var data = JSON.parse(canvas.dataset.series);
    var kind = canvas.dataset.kind || "line";
    data.datasets.forEach(function (set, i) {
      var c = kind === "bar" && data.datasets.length === 1 ? data.labels.map(function (_, j) { return colour(j); }) : colour(i);
      set.borderColor = c;
      set.backgroundColor = c;
      set.tension = 0.25;
      set.pointRadius = data.labels.length > 40 ? 0 : 3;
      set.maxBarThickness = 56;
    });
    var old = Chart.getChart(canvas);
    if (old) old.destroy();
    new Chart(canvas, {
      type: kind,
      data: data,
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: data.datasets.length > 1, position: "bottom" } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }
      }
    });
  }

  function drawAll(root) {
    root.querySelectorAll("canvas[data-series]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof htmx !== "undefined") {
      htmx.onLoad(drawAll);  // called for the page, then for every swapped-in part
    } else {
      drawAll(document);
    }
  });
})();
