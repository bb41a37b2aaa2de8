// The report page's script: unpacks the embedded plotly.js, draws the curve charts from the
// records' numbers and the static figures, and wires the controls and the sortable tables.
// No network, no library but the embedded plotly.js. Display only: every number of the runs
// comes from the records.
"use strict";
let OPTIMLAB;  // the page's data, once unpacked (see the end of this script)
const PLOT_CONFIG = {displaylogo: false, responsive: true};

// plotly puts its toolbar in the chart's top right corner, where a long title ran under it:
// the title sits on the plot area's top edge instead, and the top margin above it holds
// the toolbar alone.
const TOP_MARGIN = 64;
function placeTitle(layout) {
  layout.title = Object.assign({x: 0, xref: "paper", xanchor: "left", y: 1, yref: "paper",
                                yanchor: "bottom", pad: {b: 8}}, layout.title);
  layout.margin = Object.assign({}, layout.margin);
  layout.margin.t = Math.max(layout.margin.t || 0, TOP_MARGIN);
  return layout;
}

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

// A long curve arrives as means of g.per steps (interactive.bucketed): the window, in
// steps, then spans whole buckets.
function curveTraces(spec) {
  const traces = [], k = spec.percent ? 100 : 1;
  const scale = a => a.map(v => v === null ? null : k * v);
  for (const g of spec.groups) {
    const w = spec.smooth ? Math.max(1, Math.round(state.w / g.per)) : 1;
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
  const per = Math.max(...spec.groups.map(g => g.per));
  const window = Math.max(1, Math.round(state.w / per)) * per;
  const smoothed = (per > 1 ? `, means of ${per} steps` : "") +
    (spec.smooth && window > per ? ` (moving average of ${window} steps)` : "");
  const layout = placeTitle({
    title: {text: spec.title + smoothed, font: {size: 13}},
    margin: {l: 55, r: 10, b: 45}, hovermode: "x unified",
    legend: {font: {size: 10}, orientation: "h", y: -0.22},
    xaxis: {title: {text: state.x === "sec" ? "training seconds" : "step"}},
    yaxis: {title: {text: spec.ytitle}, type: spec.log && state.log ? "log" : "linear"}});
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
  return Promise.all(Array.from(document.querySelectorAll("div.figure"), async d => {
    const f = JSON.parse(await unpack(d.dataset.figure));
    Plotly.newPlot(d, f.data, f.layout.title ? placeTitle(f.layout) : f.layout, PLOT_CONFIG);
  }));
}

// Linked figures (a sweep's parallel coordinates and its runs' curves, each naming the other
// in layout.meta.link): a click on a run in either draws that run's line, gathered from the
// vertices its "runs" traces tag with its index, in the last trace of both, and names it.
function runLine(gd, i) {
  const x = [], y = [];
  gd.data.forEach(t => t.meta === "runs" && t.customdata.forEach((c, k) => {
    if (c === i) { x.push(t.x[k]); y.push(t.y[k]); }
  }));
  return {x, y};
}

function selectRun(figures, i) {
  for (const gd of figures) {
    const {x, y} = runLine(gd, i), name = gd.layout.meta.names[i];
    gd.dataset.selected = name;
    Plotly.restyle(gd, {x: [x], y: [y]}, [gd.data.length - 1]);
    Plotly.relayout(gd, {"title.text": gd.dataset.title + " — selected: " + name});
  }
}

function linkFigures() {
  document.querySelectorAll("div.figure").forEach(gd => {
    const link = gd.layout.meta && gd.layout.meta.link;
    if (!link) return;
    gd.dataset.title = gd.layout.title.text;
    gd.on("plotly_click", e => {
      const i = e.points[0].customdata;
      if (typeof i === "number") selectRun([gd, document.getElementById(link)], i);
    });
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

// The landscape: every path of the η grid is in the data; the sliders pick which and how far.
const land = {lr: 0, step: 0, timer: null};

function landPath(run) {  // slider 0: the optimizer's chosen η; k: the grid's k-th η
  const i = land.lr === 0 ? run.chosen : Math.min(land.lr - 1, run.paths.length - 1);
  const p = run.paths[i], reached = run.reached[i];
  return {x: p[0].slice(0, land.step + 1), y: p[1].slice(0, land.step + 1),
          name: `${run.name} η=${run.lrs[i]} (${reached === null ? "not reached" :
                 "on target from step " + reached})`};
}

function drawLandscape(first) {
  for (const fn of OPTIMLAB.landscape.functions) {
    const paths = fn.runs.map(landPath), gd = document.getElementById(fn.div);
    if (first) {
      const c = fn.contour, traces = [{type: "contour", x: c.x, y: c.y, z: c.z, ncontours: 30,
        colorscale: "Greys", reversescale: true, showscale: false, hoverinfo: "skip",
        contours: {coloring: "heatmap"}, opacity: 0.7}];
      fn.runs.forEach((r, i) => traces.push({type: "scatter", mode: "lines+markers",
        x: paths[i].x, y: paths[i].y, name: paths[i].name, legendgroup: r.name,
        line: {color: r.color, width: 1.5}, marker: {size: 3},
        hovertemplate: "(%{x:.3g}, %{y:.3g})<extra>" + r.name + "</extra>"}));
      if (fn.minimum) traces.push({type: "scatter", mode: "markers", x: [fn.minimum[0]],
        y: [fn.minimum[1]], name: "minimum", hoverinfo: "name",
        marker: {symbol: "star", size: 14, color: "gold", line: {width: 1}}});
      const [x0, x1, y0, y1] = fn.bounds;
      Plotly.newPlot(gd, traces, placeTitle({title: {text: fn.title, font: {size: 12}},
        margin: {l: 40, r: 10, b: 30}, xaxis: {range: [x0, x1]}, yaxis: {range: [y0, y1]},
        legend: {font: {size: 10}, orientation: "h", y: -0.12}}), PLOT_CONFIG);
    } else {
      const idx = fn.runs.map((_, i) => i + 1);
      Plotly.restyle(gd, {x: paths.map(p => p.x), y: paths.map(p => p.y),
                          name: paths.map(p => p.name)}, idx);
    }
  }
}

function wireLandscape() {
  const L = OPTIMLAB.landscape, lr = document.getElementById("land-lr");
  const step = document.getElementById("land-step"), play = document.getElementById("land-play");
  land.step = +step.value;
  lr.addEventListener("input", () => {
    land.lr = +lr.value;
    document.getElementById("land-lr-value").textContent = land.lr === 0 ?
      "each optimizer's chosen η" : "η = " + L.lr_grid[land.lr - 1];
    drawLandscape(false);
  });
  const setStep = k => {
    land.step = k; step.value = k;
    document.getElementById("land-step-value").textContent = k;
    drawLandscape(false);
  };
  step.addEventListener("input", () => setStep(+step.value));
  play.addEventListener("click", () => {
    if (land.timer) {
      clearInterval(land.timer); land.timer = null; play.textContent = "play"; return;
    }
    if (land.step >= L.steps) setStep(0);
    play.textContent = "pause";
    land.timer = setInterval(() => {
      setStep(Math.min(L.steps, land.step + Math.max(1, Math.round(L.steps / 100))));
      if (land.step >= L.steps) { clearInterval(land.timer); land.timer = null;
                                  play.textContent = "play"; }
    }, 60);
  });
}

// plotly.js and the page's data travel gzip-compressed in base64 (a third of their size);
// the browser unpacks them, runs plotly.js as a global script, and the page draws. body's
// data-drawn and the "optimlab-drawn" mark say when (tests and the opening-time measurement
// wait for them).
async function unpack(packed) {
  const bytes = Uint8Array.from(atob(packed), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).text();
}

function noLibrary(error) {
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = "The interactive charts could not be drawn in this browser (" + error +
    "); the PNG figures next to this file show the same results.";
  document.body.prepend(note);
  throw error;
}

const packedText = id => document.getElementById(id).textContent;
Promise.all([unpack(packedText("optimlab-plotly")), unpack(packedText("optimlab-data"))]).then(
  async ([library, data]) => {
    (0, eval)(library);
    OPTIMLAB = JSON.parse(data);
    if (OPTIMLAB.landscape) { wireLandscape(); drawLandscape(true); }
    wireControls();
    drawAll();
    await drawFigures();
    linkFigures();
    wireTables();
    document.body.dataset.drawn = "1";
    performance.mark("optimlab-drawn");
  }, noLibrary);
