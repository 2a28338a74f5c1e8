"use strict";
// The coordinator's dashboard: shows the feeds of GET /events (docs/dashboard.md).
// Everything from the server is set as text or as an attribute value, never parsed as HTML.

const SVG = "http://www.w3.org/2000/svg";
const CHART_ROUNDS = 30;    // rounds on the charts
const TABLE_ROUNDS = 8;     // rounds in the table
const TABLE_REJECTIONS = 10;  // refused messages in the table
const LIVE_SECONDS = 5;     // a gateway heard from within this long is live; later, late
const SILENT_SECONDS = 30;  // ... and after this long, silent
const STALE_SECONDS = 3;    // no status for this long: say so

const feeds = {status: null, rounds: [], gateways: [], rejections: []};
let lastEvent = 0;

// -- helpers ------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                      : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);  // strings become text nodes
  return node;
}

function show(id, text) {
  document.getElementById(id).textContent = text;
}

// Replace a table's rows; the note saying it is empty shows when there are none.
function fill(id, emptyId, rows) {
  document.getElementById(id).replaceChildren(...rows);
  document.getElementById(emptyId).hidden = rows.length > 0;
}

function fmt(value) {
  if (typeof value !== "number") return "–";
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

function seconds(s) {
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function relative(t, now) {
  if (typeof t !== "number") return "–";
  return t >= now ? "in " + seconds(t - now) : seconds(now - t) + " ago";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

function figures(evaluation) {
  return Object.entries(evaluation || {}).map(([name, value]) => `${name} ${fmt(value)}`).join(", ");
}

// -- the current round --------------------------------------------------------------------------

function renderStatus(s) {
  show("round-id", s.round_id);
  show("phase", s.phase);
  document.getElementById("phase").dataset.phase = s.phase;
  for (const li of document.getElementById("phases").children) {
    li.classList.toggle("current", li.dataset.phase === s.phase);
  }
  show("phase-started", relative(s.phase_started, s.now));
  show("deadline-min", relative(s.deadline_min, s.now));
  show("deadline-max", relative(s.deadline_max, s.now));
  show("needed", s.needed === null ? "–" : `${s.accepted} / ${s.needed}`);

  show("sums", s.sum_participants);
  show("updates", s.updates);
  show("sum2", s.sum2);

  for (const kind of ["accepted", "rejected", "discarded"]) show(kind, s.counters[kind]);
  fill("reasons", "reasons-empty", Object.entries(s.reasons).sort((a, b) => b[1] - a[1]).map(
    ([reason, count]) => el("tr", {}, el("td", {}, reason), el("td", {class: "num"}, count))));

  show("mask-config", s.mask_config);
  show("model-size", `${s.model_length} weights (${bytes(4 * s.model_length)} as float32)`);
  show("pending-chunks", s.pending_chunks);
  const latest = s.latest_model;
  show("latest-model", latest ? `round ${latest.round_id}, ${relative(latest.created, s.now)}` : "none yet");
  document.getElementById("latest-figures").replaceChildren(
    ...Object.entries((latest && latest.evaluation) || {}).flatMap(
      ([name, value]) => [el("dt", {}, name), el("dd", {class: "figure"}, fmt(value))]));
}

// -- past rounds --------------------------------------------------------------------------------

function niceTop(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map(f => f * magnitude).find(top => top >= value);
}

// One SVG chart of rounds: stacked bars, or lines with a point per round.
function chart(rounds, series, kind, label) {
  const W = 360, H = 130, left = 34, right = 6, top = 8, bottom = 20;
  const width = W - left - right, height = H - top - bottom;
  const value = (s, r) => (typeof s.value(r) === "number" ? s.value(r) : null);
  const totals = rounds.map(r => series.map(s => value(s, r) || 0).reduce((a, b) => a + b, 0));
  const all = kind === "bars" ? totals : rounds.flatMap(r => series.map(s => value(s, r)));
  const max = niceTop(Math.max(0, ...all.filter(v => v !== null)));
  const y = v => top + height - (v / max) * height;
  const step = width / Math.max(rounds.length, 1);
  const x = i => left + (i + 0.5) * step;
  const svg = el("svg:svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label});

  for (const tick of [0, max / 2, max]) {
    svg.append(el("svg:line", {x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: "grid"}),
               el("svg:text", {x: left - 5, y: y(tick) + 4, class: "tick", "text-anchor": "end"},
                  String(Number(tick.toPrecision(3)))));
  }
  const every = Math.ceil(rounds.length / 10);
  rounds.forEach((r, i) => {
    if (i % every === 0 || i === rounds.length - 1) {
      svg.append(el("svg:text", {x: x(i), y: H - 5, class: "tick", "text-anchor": "middle"}, r.round_id));
    }
  });

  if (kind === "bars") {
    const barWidth = Math.min(20, step * 0.6);
    rounds.forEach((r, i) => {
      const bar = el("svg:g", {class: `bar ${r.outcome}`, "data-round": r.round_id});
      let base = 0;
      for (const s of series) {
        const v = value(s, r) || 0;
        bar.append(el("svg:rect", {x: x(i) - barWidth / 2, y: y(base + v), width: barWidth,
                                   height: y(base) - y(base + v), class: s.name},
                      el("svg:title", {}, `round ${r.round_id} (${r.outcome}): ${v} ${s.name}`)));
        base += v;
      }
      svg.append(bar);
    });
  } else {
    for (const s of series) {
      const points = rounds.map((r, i) => [r, i, value(s, r)]).filter(([, , v]) => v !== null);
      svg.append(el("svg:polyline", {class: "line", points: points.map(([, i, v]) => `${x(i)},${y(v)}`).join(" ")}));
      for (const [r, i, v] of points) {
        svg.append(el("svg:circle", {cx: x(i), cy: y(v), r: 3, class: `point ${r.outcome}`, "data-round": r.round_id},
                      el("svg:title", {}, `round ${r.round_id} (${r.outcome}): ${fmt(v)}`)));
      }
    }
  }
  return svg;
}

function renderRounds(rounds) {
  const shown = rounds.slice(-CHART_ROUNDS);
  document.getElementById("chart-participants").replaceChildren(chart(shown, [
    {name: "update", value: r => r.updates}, {name: "sum", value: r => r.sums}], "bars", "participants per round"));
  document.getElementById("chart-duration").replaceChildren(
    chart(shown, [{name: "duration", value: r => r.duration}], "line", "duration of each round in seconds"));

  const names = [...new Set(shown.flatMap(r => Object.keys(r.evaluation || {})))];
  document.getElementById("figure-charts").replaceChildren(...names.map(name => el("figure", {class: "figure-chart"},
    el("figcaption", {}, name),
    chart(shown, [{name, value: r => (r.evaluation || {})[name]}], "line", `${name} of each global model`))));
  document.getElementById("no-figures").hidden = names.length > 0;

  fill("round-rows", "rounds-empty", rounds.slice(-TABLE_ROUNDS).reverse().map(r => el("tr", {class: r.outcome},
    el("td", {class: "num"}, r.round_id), el("td", {}, r.outcome),
    el("td", {class: "num"}, fmt(r.sums)), el("td", {class: "num"}, fmt(r.updates)),
    el("td", {class: "num"}, fmt(r.sum2)), el("td", {class: "num"}, seconds(r.duration)),
    el("td", {class: "num"}, r.messages ? r.messages.rejected + r.messages.discarded : "–"),
    el("td", {}, r.outcome === "failed" ? `${r.phase}: ${r.failure}` : figures(r.evaluation)))));
}

// -- gateways and refused messages --------------------------------------------------------------

function renderGateways(gateways, now) {
  fill("gateway-rows", "gateways-empty", gateways.map(g => {
    const age = now - g.last_seen;
    const state = age < LIVE_SECONDS ? "live" : age < SILENT_SECONDS ? "late" : "silent";
    return el("tr", {class: state},
      el("td", {}, g.id), el("td", {}, el("span", {class: "dot"}), state),
      el("td", {}, g.mqtt || "–"), el("td", {class: "num"}, fmt(g.queued)),
      el("td", {}, relative(g.last_seen, now)), el("td", {}, g.address || "–"));
  }));
}

function renderRejections(rejections) {
  fill("rejection-rows", "rejections-empty", rejections.slice(0, TABLE_REJECTIONS).map(r => el("tr", {},
    el("td", {}, new Date(r.time * 1000).toLocaleTimeString()), el("td", {class: "num"}, r.round_id),
    el("td", {}, r.phase), el("td", {}, r.reason), el("td", {class: "detail"}, r.detail))));
}

// -- the event stream ---------------------------------------------------------------------------

function setLink(state, text) {
  const link = document.getElementById("link");
  link.dataset.state = state;
  link.textContent = text;
}

function render(name) {
  const now = feeds.status ? feeds.status.now : Date.now() / 1000;
  if (name === "status" && feeds.status) renderStatus(feeds.status);
  if (name === "rounds") renderRounds(feeds.rounds);
  if (name === "status" || name === "gateways") renderGateways(feeds.gateways, now);
  if (name === "rejections") renderRejections(feeds.rejections);
}

function connect() {
  const source = new EventSource("events");
  for (const name of Object.keys(feeds)) {
    source.addEventListener(name, event => {
      feeds[name] = JSON.parse(event.data);
      lastEvent = Date.now();
      setLink("live", "live");
      render(name);
    });
  }
  source.onerror = () => {
    setLink("down", "reconnecting");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
}

setInterval(() => {
  const quiet = (Date.now() - lastEvent) / 1000;
  if (lastEvent && quiet > STALE_SECONDS) setLink("down", `no news for ${seconds(quiet)}`);
}, 1000);
connect();
