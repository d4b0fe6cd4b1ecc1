/* Draws the server-built plotly figures, sorts tables, and runs the savings calculator.
   Figures arrive as JSON in <script type="application/json" id="...-figures"> elements
   (Django's json_script): {"element id": {"data": [...], "layout": {...}}}. */
(function () {
  "use strict";
  var CONFIG = { displayModeBar: false, responsive: true };

  function readJson(el) {
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function drawFigures() {
    if (typeof Plotly === "undefined") { return; }
    document.querySelectorAll('script[type="application/json"][id$="-figures"]').forEach(function (holder) {
      var figures = readJson(holder) || {};
      Object.keys(figures).forEach(function (id) {
        var target = document.getElementById(id);
        if (!target) { return; }
        var fig = figures[id];
        Plotly.newPlot(target, fig.data || [], fig.layout || {}, CONFIG).then(function () {
          scalable(target);
          target.on("plotly_afterplot", function () { scalable(target); });
        });
      });
    });
  }

  /* A viewBox on each of a chart's SVG layers (plotly draws them at a fixed pixel size): the
     print stylesheet can then shrink a chart into its box on paper instead of cutting it. */
  function scalable(el) {
    el.querySelectorAll("svg.main-svg").forEach(function (svg) {
      var w = svg.getAttribute("width"), h = svg.getAttribute("height");
      if (w && h) { svg.setAttribute("viewBox", "0 0 " + w + " " + h); }
    });
  }

  /* Paper: printing lays the page out again at the paper's width, but plotly keeps the pixel
     width it drew at on screen, so a chart would run off the page. Before printing (the
     beforeprint event: window.print, the browser's Print, printing to PDF) every chart is
     redrawn at PRINT_WIDTH, which fits A4 and Letter portrait with the print stylesheet's
     margins, inside a card too (about 650 CSS px there); after printing it takes its
     screen width again. Not in the print media query's change event: by then the browser
     has counted the pages, and a chart that grows there is cut off the last page. A browser
     that prints without beforeprint gets the print stylesheet's fallback: the SVG, with
     the viewBox scalable() gave it, shrinks into its box. */
  var PRINT_WIDTH = 640;
  function sizeForPrint() {
    if (typeof Plotly === "undefined") { return; }
    document.querySelectorAll(".js-plotly-plot").forEach(function (el) {
      Plotly.relayout(el, { width: PRINT_WIDTH });
    });
  }

  function sizeForScreen() {
    if (typeof Plotly === "undefined") { return; }
    document.querySelectorAll(".js-plotly-plot").forEach(function (el) {
      Plotly.relayout(el, { width: null, autosize: true });
    });
  }

  /* Tables with class "sortable": a click on a header sorts by that column, using the
     cell's data-sort value when it has one (the raw number behind "2.1 mJ"). */
  function sortable(table) {
    var headers = table.querySelectorAll("thead th");
    headers.forEach(function (th, index) {
      th.classList.add("sort");
      th.setAttribute("tabindex", "0");
      th.setAttribute("role", "button");
      function sort() {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        function key(row) {
          var cell = row.cells[index];
          if (!cell) { return ""; }
          var raw = cell.getAttribute("data-sort");
          if (raw === null) { return cell.textContent.trim().toLowerCase(); }
          var n = parseFloat(raw);
          return isNaN(n) ? Infinity : n;  // unknown values go last
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          if (x === y) { return 0; }
          if (x === Infinity) { return 1; }
          if (y === Infinity) { return -1; }
          return (x < y ? -1 : 1) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }

  function fmt(value, digits) {
    if (!isFinite(value)) { return "—"; }
    if (Math.abs(value) >= 1000) { return Math.round(value).toLocaleString("en-US"); }
    return Number(value.toPrecision(digits || 3)).toLocaleString("en-US", { maximumFractionDigits: 6 });
  }

  /* An amount of money as the server writes it (formatting.money): cents, and "< 0.01" for a
     smaller amount rather than "0.00", which reads as free. */
  function money(value) {
    if (!isFinite(value)) { return "—"; }
    if (value > 0 && value < 0.005) { return "< 0.01"; }
    if (value < 0 && value > -0.005) { return "> −0.01"; }
    return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  /* The savings calculator: queries per day in; kWh, kgCO2e and cost per year out, for the
     chosen variant and against the baseline. The server renders the same numbers for the
     default volume, so the page reads right without JavaScript. */
  function savings(form) {
    var data = readJson(document.getElementById("savings-data"));
    if (!data || !data.variants || !data.variants.length) { return; }
    var input = form.querySelector("[name=queries_per_day]");
    var select = form.querySelector("[name=variant]");
    function byKey(key) { return data.variants.filter(function (v) { return v.key === key; })[0]; }
    function year(v, q) {
      var kwh = v.j_per_query * q * 365 / 3.6e6 * data.pue;
      return { kwh: kwh, kg: kwh * data.grid / 1000, cost: kwh * data.price };
    }
    function update() {
      var q = parseFloat(input.value);
      var chosen = byKey(select ? select.value : data.variants[0].key) || data.variants[0];
      var base = data.variants.filter(function (v) { return v.baseline; })[0];
      if (!(q >= 0)) { return; }
      var y = year(chosen, q);
      form.querySelector("[data-out=kwh]").textContent = fmt(y.kwh) + " kWh";
      form.querySelector("[data-out=kg]").textContent = fmt(y.kg) + " kg";
      form.querySelector("[data-out=cost]").textContent = money(y.cost) + " " + data.currency;
      var saved = form.querySelector("[data-out=saved]");
      if (saved) {
        if (base && base.key !== chosen.key) {
          var b = year(base, q);
          saved.textContent = "Against the baseline: " + fmt(b.kwh - y.kwh) + " kWh, " + fmt(b.kg - y.kg) + " kgCO₂e and " +
            money(b.cost - y.cost) + " " + data.currency + " saved per year.";
        } else {
          saved.textContent = "";
        }
      }
    }
    input.addEventListener("input", update);
    if (select) { select.addEventListener("change", update); }
    form.addEventListener("submit", function (e) { e.preventDefault(); update(); });
    update();
  }

  /* Charts drawn inside a closed <details> have no width yet: size them when it opens. */
  function foldedCharts() {
    document.querySelectorAll("details").forEach(function (d) {
      d.addEventListener("toggle", function () {
        if (d.open && typeof Plotly !== "undefined") {
          d.querySelectorAll(".js-plotly-plot").forEach(function (el) { Plotly.Plots.resize(el); });
        }
      });
    });
  }

  /* Paper gets everything: the folded evidence opens before printing, and every chart is
     drawn at the paper's width. */
  function openForPrint() {
    document.querySelectorAll("details.fold").forEach(function (d) { d.setAttribute("open", ""); });
    sizeForPrint();
  }

  /* A select with data-autosubmit sends its form when changed (axis pickers). */
  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { if (el.form) { el.form.submit(); } });
    });
  }

  function init() {
    drawFigures();
    foldedCharts();
    autosubmit();
    document.querySelectorAll("table.sortable").forEach(sortable);
    var form = document.getElementById("savings-form");
    if (form) { savings(form); }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
  window.addEventListener("beforeprint", openForPrint);
  window.addEventListener("afterprint", sizeForScreen);
})();
