// The console's only script of its own (no inline code: the CSP allows script files from this
// origin only). Draws the charts whose data the server put in data-chart attributes, redraws
// them after htmx swaps a fragment, and shows a range input's value next to it.
(function () {
  "use strict";

  function draw(el) {
    if (typeof uPlot === "undefined" || el.dataset.drawn === el.dataset.chart) return;
    var spec;
    try {
      spec = JSON.parse(el.dataset.chart);
    } catch (e) {
      return;
    }
    el.textContent = "";
    el.dataset.drawn = el.dataset.chart;
    var width = Math.max(320, el.clientWidth || 640);
    var series = [{}];
    var data = [spec.t];
    spec.series.forEach(function (s) {
      series.push({ label: s.label, stroke: "#1f5fae", width: 2, spanGaps: true });
      data.push(s.values);
    });
    new uPlot({ width: width, height: 180, series: series, axes: [{}, { size: 50 }] }, data, el);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
  }

  function outputs(root) {
    (root || document).querySelectorAll("input[type=range][data-output]").forEach(function (input) {
      var out = document.getElementById(input.dataset.output);
      if (!out || input.dataset.bound) return;
      input.dataset.bound = "1";
      input.addEventListener("input", function () {
        out.textContent = input.value + "%";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    outputs(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawAll(event.target);
    outputs(event.target);
  });
})();
