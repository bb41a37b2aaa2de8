// The report page's script: draws the curve charts from the records' numbers and the
// static figures, and wires the controls and the sortable tables. No network, no library
// but the embedded plotly.js. Display only: every number of the runs comes from the records.
"use strict";
const OPTIMLAB = JSON.parse(document.getElementById("optimlab-data").textContent);
const PLOT_CONFIG = {displaylogo: false, responsive: true};

// Trailing moving average, the definition of optimlab.report.plots.smooth (the browser
// tests hold this copy against it).
function smooth(y, w) {
  const c = [0];
  for (const v of y) c.push(c[c.length - 1] + (v === null ? NaN : v));
  return y.map((_, i) => {
    const lo = Math.max(i + 1 - w, 0);
    return (c[i + 1] - c[lo]) / (i + 1 - lo);
  });
}

// Mean, min and max over seeds at each point, ignoring gaps (a diverged seed's tail).
function seedStats(rows) {
  const n = Math.max(...rows.map(r => r.length)), mean = [], lo = [], hi = [];
  for (let j = 0; j < n; j++) {
    const v = rows.map(r => r[j]).filter(x => x !== undefined && x !== null && isFinite(x));
    mean.push(v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
    lo.push(v.length ? Math.min(...v) : null);
    hi.push(v.length ? Math.max(...v) : null);
  }
  return [mean, lo, hi];
}

const state = {w: 1, log: true, x: "step"};

function curveTraces(spec) {
  const traces = [], w = spec.smooth ? state.w : 1, k = spec.percent ? 100 : 1;
  const scale = a => a.map(v => v === null ? null : k * v);
  for (const g of spec.groups) {
    const [mean, lo, hi] = seedStats(g.seeds.map(s => smooth(s, w)));
    const x = state.x === "sec" ? g.sec : g.step;
    const band = {x: x, legendgroup: g.label, mode: "lines", hoverinfo: "skip",
                  showlegend: false, line: {width: 0, color: g.color}};
    if (g.seeds.length > 1) {
      traces.push({...band, name: "min", y: scale(lo)});
      traces.push({...band, name: "max", y: scale(hi), fill: "tonexty",
                   fillcolor: g.color + "33"});
    }
    traces.push({x: x, y: scale(mean), name: g.label, legendgroup: g.label, mode: "lines",
                 line: {color: g.color, width: 1.6},
                 hovertemplate: "%{y:.4g}<extra>" + g.label + "</extra>"});
  }
  return traces;
}

function drawCurves(spec) {
  const gd = document.getElementById(spec.div), visible = {};
  (gd.data || []).forEach(t => { visible[t.legendgroup + "/" + t.name] = t.visible; });
  const traces = curveTraces(spec);
  traces.forEach(t => {  // a series hidden from the legend stays hidden on redraw
    const v = visible[t.legendgroup + "/" + t.name];
    if (v !== undefined) t.visible = v;
  });
  const smoothed = spec.smooth && state.w > 1 ? ` (moving average of ${state.w} steps)` : "";
  const layout = {
    title: {text: spec.title + smoothed, font: {size: 13}, x: 0.02, xanchor: "left"},
    margin: {l: 55, r: 10, t: 40, b: 45}, hovermode: "x unified",
    legend: {font: {size: 10}, orientation: "h", y: -0.22},
    xaxis: {title: {text: state.x === "sec" ? "training seconds" : "step"}},
    yaxis: {title: {text: spec.ytitle}, type: spec.log && state.log ? "log" : "linear"}};
  Plotly.react(gd, traces, layout, PLOT_CONFIG);
}

function drawAll() { (OPTIMLAB.curves || []).forEach(drawCurves); }

function wireControls() {
  const slider = document.getElementById("smooth");
  if (!slider) return;
  state.w = +slider.value;
  slider.addEventListener("input", () => {
    state.w = +slider.value;
    document.getElementById("smooth-value").textContent = slider.value;
    drawAll();
  });
  document.querySelectorAll("input[name=yscale]").forEach(r => r.addEventListener("change",
    () => { if (r.checked) { state.log = r.value === "log"; drawAll(); } }));
  document.querySelectorAll("input[name=xaxis]").forEach(r => r.addEventListener("change",
    () => { if (r.checked) { state.x = r.value; drawAll(); } }));
}

function drawFigures() {
  document.querySelectorAll("div.figure").forEach(d => {
    const f = JSON.parse(d.dataset.figure);
    if (f.layout.title) Object.assign(f.layout.title, {x: 0.02, xanchor: "left"});
    Plotly.newPlot(d, f.data, f.layout, PLOT_CONFIG);
  });
}

// Sort a table by the clicked column: numbers (the text's leading number) before text.
function sortKey(row, col) {
  const text = row.cells[col].textContent, v = parseFloat(text);
  return isNaN(v) ? [1, text] : [0, v];
}

function wireTables() {
  document.querySelectorAll("table.sortable").forEach(table => {
    table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
      const body = table.tBodies[0], rows = Array.from(body.rows);
      const dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir > 0 ? "asc" : "desc";
      rows.sort((a, b) => {
        const [ka, va] = sortKey(a, col), [kb, vb] = sortKey(b, col);
        return ka - kb || (va < vb ? -dir : va > vb ? dir : 0);
      });
      rows.forEach(r => body.appendChild(r));
    }));
  });
}

wireControls();
drawAll();
drawFigures();
wireTables();
if (window.optimlabPage) window.optimlabPage(OPTIMLAB);
