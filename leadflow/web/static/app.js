// Leadflow web UI behaviour: charts from JSON islands, select-all checkboxes, kanban drag and
// drop. No inline scripts (the Content-Security-Policy forbids them); HTMX does the requests.
(function () {
  "use strict";
  var PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#ea580c", "#4b5563", "#0d9488", "#9333ea"];

  function drawCharts(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var island = document.getElementById(canvas.dataset.chart);
      if (!island) return;
      var spec = JSON.parse(island.textContent);
      var multi = spec.series.length > 1 || spec.type === "line";
      var datasets = spec.series.map(function (s, i) {
        var color = s.color || PALETTE[i % PALETTE.length];
        var ds = { label: s.label, data: s.data, borderColor: color, borderWidth: 2, tension: 0.2, pointRadius: 2 };
        ds.backgroundColor = (spec.type === "bar" && !multi) || spec.type === "doughnut"
          ? spec.series[0].data.map(function (_v, j) { return PALETTE[j % PALETTE.length]; })
          : color;
        if (s.stack) ds.stack = s.stack;
        if (s.type) ds.type = s.type;
        return ds;
      });
      var options = {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: spec.legend !== false && (datasets.length > 1 || spec.type === "doughnut") } },
        scales: {}
      };
      if (spec.type !== "doughnut") {
        options.scales.y = { beginAtZero: true };
        if (spec.max) options.scales.y.max = spec.max;
        if (spec.horizontal) { options.indexAxis = "y"; }
        if (spec.stacked) { options.scales.x = { stacked: true }; options.scales.y.stacked = true; }
      }
      canvas.dataset.drawn = "1";
      new Chart(canvas, { type: spec.type, data: { labels: spec.labels, datasets: datasets }, options: options });
    });
  }

  function selectAll(root) {
    root.querySelectorAll("#select-all").forEach(function (box) {
      if (box.dataset.bound) return;
      box.dataset.bound = "1";
      box.addEventListener("change", function () {
        var form = box.closest("form");
        form.querySelectorAll("input[name=ids]").forEach(function (b) { b.checked = box.checked; });
      });
    });
  }

  // Kanban: drag a card onto a column (or pick the column in the card's select, for keyboards and
  // touch screens); the column's form posts the move with HTMX. Closing columns (won, lost) ask for
  // the reason in a dialog first.
  function moveTo(col, id) {
    var form = col.querySelector("form.move");
    form.querySelectorAll("[name=card]").forEach(function (f) { f.value = id; });
    var dialog = form.querySelector("dialog");
    if (dialog) {
      if (!dialog.dataset.bound) {
        dialog.dataset.bound = "1";
        dialog.querySelector("button.cancel").addEventListener("click", function () { dialog.close(); });
      }
      dialog.showModal();
      return;
    }
    if (window.htmx) { window.htmx.trigger(form, "submit"); } else { form.submit(); }
  }

  function kanban(root) {
    root.querySelectorAll("[data-card]").forEach(function (card) {
      if (card.dataset.bound) return;
      card.dataset.bound = "1";
      card.addEventListener("dragstart", function (e) {
        e.dataTransfer.setData("text/plain", card.dataset.card);
        e.dataTransfer.effectAllowed = "move";
        card.classList.add("dragging");
      });
      card.addEventListener("dragend", function () { card.classList.remove("dragging"); });
    });
    root.querySelectorAll("select.move-select").forEach(function (sel) {
      if (sel.dataset.bound) return;
      sel.dataset.bound = "1";
      sel.addEventListener("change", function () {
        var col = document.querySelector('[data-column="' + sel.value + '"]');
        if (col) moveTo(col, sel.dataset.cardId);
      });
    });
    root.querySelectorAll("[data-column]").forEach(function (col) {
      if (col.dataset.bound) return;
      col.dataset.bound = "1";
      col.addEventListener("dragover", function (e) { e.preventDefault(); col.classList.add("over"); });
      col.addEventListener("dragleave", function () { col.classList.remove("over"); });
      col.addEventListener("drop", function (e) {
        e.preventDefault();
        col.classList.remove("over");
        var id = e.dataTransfer.getData("text/plain");
        if (id) moveTo(col, id);
      });
    });
  }

  // Long filter panels start folded on a phone, so the list comes first.
  function foldOnPhone(root) {
    if (window.innerWidth >= 800) return;
    root.querySelectorAll("details[data-collapse-on-phone]").forEach(function (d) { d.removeAttribute("open"); });
  }

  function init(root) { drawCharts(root); selectAll(root); kanban(root); foldOnPhone(root); }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  // Every init step skips what it already handled, so the whole document is cheap to rescan.
  document.addEventListener("htmx:afterSettle", function () { init(document); });
})();
