"""The lab's HTML report: one self-contained file with charts over time.

Python decides what to chart (:func:`chart_specs`); a small inline script draws each
chart as SVG from the embedded JSON, with phase bands, a legend that toggles series and a
hover read-out. No network access, no external script or font: the file can be mailed,
attached to a CI run or opened years later.

The page marks itself when it has drawn: ``<html data-charts="N" data-errors="0">``, so
a headless browser can check that it rendered (see ``tests/lab/test_html.py``).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
from typing import Any

from .._version import __version__
from ._results import ArmResult, LabReport, ScenarioResult, Summary

__all__ = ["chart_specs", "render_html", "write_html"]

NAKED = "#d1495b"
PROTECTED = "#2e86ab"
PALETTE = ("#edae49", "#66a182", "#8d6a9f", "#00798c", "#f08a4b", "#6c757d", "#c45ab3")

BREAKER_TICKS = {"0": "closed", "1": "half-open", "2": "open", "3": "isolated"}


def _series(
    name: str, values: tuple[float | None, ...] | None, color: str, *, dash: bool = False
) -> dict[str, Any] | None:
    if values is None:
        return None
    return {
        "name": name,
        "color": color,
        "dash": dash,
        "values": [None if v is None else float(f"{v:.4g}") for v in values],
    }


def _get(arm: ArmResult, key: str) -> tuple[float | None, ...] | None:
    return None if arm.timeline is None else arm.timeline.series.get(key)


def _percent(values: tuple[float | None, ...] | None) -> tuple[float | None, ...] | None:
    if values is None:
        return None
    return tuple(None if v is None else v * 100 for v in values)


def _answered(arm: ArmResult) -> tuple[float | None, ...] | None:
    success, degraded = _get(arm, "success"), _get(arm, "degraded")
    if success is None or degraded is None:
        return None
    return tuple(
        None if s is None or d is None else (s + d) * 100
        for s, d in zip(success, degraded, strict=True)
    )


def _chart(
    chart_id: str, title: str, unit: str, series: list[dict[str, Any] | None], **extra: Any
) -> dict[str, Any] | None:
    kept = [s for s in series if s is not None]
    if not kept:
        return None
    return {"id": chart_id, "title": title, "unit": unit, "series": kept, **extra}


def chart_specs(result: ScenarioResult) -> list[dict[str, Any]]:
    """The charts of one scenario, as JSON-ready specs for the page's script.

    Always: success rate, latency (p50 and p99, log scale) and upstream load, naked beside
    protected. When the protected arm's policies reported them through OpenTelemetry:
    breaker states, adaptive limits, and policy activity (rejections by kind, retries,
    hedges, timeouts, fallbacks per second).
    """
    naked, protected = result.naked, result.protected
    slug = result.name
    charts: list[dict[str, Any] | None] = []
    charts.append(
        _chart(
            f"{slug}-success",
            "Success rate",
            "%",
            [
                _series("naked", _percent(_get(naked, "success")), NAKED),
                _series("protected", _percent(_get(protected, "success")), PROTECTED),
                _series(
                    "protected answered (incl. fallback)",
                    _answered(protected) if protected.summary.degraded else None,
                    PROTECTED,
                    dash=True,
                ),
            ],
            ymin=0,
            ymax=100,
        )
    )
    charts.append(
        _chart(
            f"{slug}-latency",
            "Latency from scheduled arrival",
            "ms",
            [
                _series("naked p99", _get(naked, "p99 ms"), NAKED),
                _series("naked p50", _get(naked, "p50 ms"), NAKED, dash=True),
                _series("protected p99", _get(protected, "p99 ms"), PROTECTED),
                _series("protected p50", _get(protected, "p50 ms"), PROTECTED, dash=True),
            ],
            log=True,
        )
    )
    charts.append(
        _chart(
            f"{slug}-upstream",
            "Upstream load (requests it received)",
            "req/s",
            [
                _series("offered", _get(naked, "requests/s"), "#9aa0a6", dash=True),
                _series("naked", _get(naked, "upstream/s"), NAKED),
                _series("protected", _get(protected, "upstream/s"), PROTECTED),
            ],
            ymin=0,
        )
    )
    series = protected.timeline.series if protected.timeline is not None else {}
    breakers = sorted(k for k in series if k.startswith("breaker:"))
    if breakers:
        charts.append(
            _chart(
                f"{slug}-breaker",
                "Circuit breaker state (protected)",
                "",
                [
                    _series(k.partition(":")[2], series[k], PALETTE[i % len(PALETTE)])
                    for i, k in enumerate(breakers)
                ],
                step=True,
                ymin=0,
                ymax=2 if all(max(v or 0 for v in series[k]) <= 2 for k in breakers) else 3,
                ticks=BREAKER_TICKS,
            )
        )
    limits = sorted(k for k in series if k.startswith("limit:"))
    if limits:
        charts.append(
            _chart(
                f"{slug}-limit",
                "Adaptive concurrency limit (protected)",
                "calls",
                [
                    _series(k.partition(":")[2], series[k], PALETTE[i % len(PALETTE)])
                    for i, k in enumerate(limits)
                ],
                step=True,
                ymin=0,
            )
        )
    activity = sorted(
        k
        for k in series
        if k.endswith("/s")
        and k not in ("requests/s", "rejected/s", "upstream/s")
        and any(v for v in series[k])
    )
    if activity:
        charts.append(
            _chart(
                f"{slug}-activity",
                "Policy activity (protected)",
                "/s",
                [
                    _series(k.removesuffix("/s"), series[k], PALETTE[i % len(PALETTE)])
                    for i, k in enumerate(activity)
                ],
                ymin=0,
            )
        )
    return [c for c in charts if c is not None]


def _summary(summary: Summary, arm: ArmResult) -> dict[str, Any]:
    return {**summary.to_dict(), "amplification": arm.amplification}


def _scenario(result: ScenarioResult) -> dict[str, Any]:
    spans = result.protected.spans
    timeline = result.protected.timeline
    return {
        "name": result.name,
        "description": result.description,
        "verdict": result.verdict,
        "duration": spans[-1].end if spans else 0.0,
        "bucket": timeline.bucket if timeline is not None else None,
        "phases": [
            {"name": s.name, "start": s.start, "end": s.end, "faults": s.faults.describe()}
            for s in spans
        ],
        "hypotheses": [
            {"text": c.hypothesis, "held": c.held, "detail": c.detail} for c in result.checks
        ],
        "arms": {
            "naked": _summary(result.naked.summary, result.naked),
            "protected": _summary(result.protected.summary, result.protected),
        },
        "charts": chart_specs(result),
    }


def _data(report: LabReport, generated: str) -> dict[str, Any]:
    return {
        "meta": {
            "seed": report.seed,
            "rate": report.rate,
            "concurrency": report.concurrency,
            "arms": report.arms,
            "wall": report.wall,
            "generated": generated,
            "version": __version__,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "scenarios": [_scenario(result) for result in report.scenarios],
    }


def _json_for_script(data: dict[str, Any]) -> str:
    # Inside <script>, "</" would end the element and "<!--" would open a comment.
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    ms = value * 1000
    return f"{ms:.0f}" if ms >= 1000 else f"{ms:.1f}"


def _summary_rows(report: LabReport) -> str:
    rows = []
    for result in report.scenarios:
        badge = "held" if result.held else "broken"
        for index, arm in enumerate((result.naked, result.protected)):
            s = arm.summary
            name = (
                f'<a href="#{html.escape(result.name)}">{html.escape(result.name)}</a>'
                if index == 0
                else ""
            )
            verdict = f'<span class="badge {badge}">{result.verdict}</span>' if index else ""
            rows.append(
                f'<tr class="{arm.arm}"><td>{name}</td><td><span class="dot {arm.arm}"></span>'
                f"{arm.arm}</td><td>{s.requests}</td><td>{s.success_rate * 100:.1f} %</td>"
                f"<td>{s.degraded_rate * 100:.1f} %</td><td>{s.failed_rate * 100:.1f} %</td>"
                f"<td>{s.rejected}</td><td>{_ms(s.p50)}</td><td>{_ms(s.p99)}</td>"
                f"<td>{arm.amplification:.2f}</td><td>{verdict}</td></tr>"
            )
    return "\n".join(rows)


def render_html(report: LabReport, *, generated: str | None = None) -> str:
    """The report as one self-contained HTML page (charts drawn by an inline script).

    ``generated`` is the timestamp shown on the page (default: now, UTC).

    Example::

        page = lab.render_html(report)
    """
    stamp = (
        generated
        if generated is not None
        else _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    )
    held = sum(1 for r in report.scenarios if r.held)
    total = len(report.scenarios)
    verdict_class = "held" if held == total else "broken"
    arms = "one after the other" if report.arms == "sequential" else "at the same time"
    return _TEMPLATE.format(
        title=f"buttress lab: {held}/{total} held",
        held=held,
        total=total,
        verdict_class=verdict_class,
        settings=html.escape(
            f"seed {report.seed} · {report.rate:g} req/s · concurrency {report.concurrency}"
            f" · arms run {arms} · {report.wall:.1f} s · buttress {__version__} · {stamp}"
        ),
        rows=_summary_rows(report),
        seed=report.seed,
        css=_CSS,
        script=_SCRIPT,
        data=_json_for_script(_data(report, stamp)),
    )


def write_html(report: LabReport, path: str | os.PathLike[str]) -> None:
    """Write :func:`render_html` of ``report`` to ``path`` (UTF-8)."""
    page = render_html(report)
    with open(path, "w", encoding="utf-8") as file:
        file.write(page)


_TEMPLATE = """<!doctype html>
<html lang="en" data-charts="0" data-errors="0">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
  <h1>buttress lab <span class="badge big {verdict_class}">{held} / {total} held</span></h1>
  <p class="settings">{settings}</p>
  <p class="legend-line"><span class="dot naked"></span> naked: a plain client
  &nbsp; <span class="dot protected"></span> protected: the same client through a buttress
  pipeline. Same arrivals, same faults.</p>
</header>
<main>
<section class="card">
<h2>Summary</h2>
<table class="summary">
<thead><tr><th>scenario</th><th>arm</th><th>requests</th><th>success</th><th>degraded</th>
<th>failed</th><th>rejected fast</th><th>p50 ms</th><th>p99 ms</th><th>ampl.</th>
<th>verdict</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</section>
<div id="scenarios"></div>
<noscript><p class="card">The charts need JavaScript; the summary above does not.</p></noscript>
</main>
<footer>Repeat this run with <code>buttress lab --seed {seed}</code>.
Latency is measured from each request's scheduled arrival, queueing included;
ampl. is upstream requests per logical request.</footer>
<script id="lab-data" type="application/json">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_CSS = """
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2433; --muted:#6b7280; --grid:#e5e7eb;
  --naked:#d1495b; --protected:#2e86ab; --held:#1f8a4c; --broken:#c0392b; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#111418; --card:#1b2027; --ink:#e6e8eb; --muted:#9aa3ad; --grid:#2c333c; }
}
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
header, main, footer { max-width:1180px; margin:0 auto; padding:0 20px; }
header { padding-top:24px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:0 0 10px; display:flex; gap:10px; align-items:center; }
.settings, footer, .muted { color:var(--muted); }
footer { padding:16px 20px 40px; font-size:13px; }
.card { background:var(--card); border-radius:10px; padding:16px 18px; margin:16px 0;
  box-shadow:0 1px 2px rgba(0,0,0,.06), 0 2px 10px rgba(0,0,0,.04); }
.badge { font-size:12px; font-weight:600; padding:2px 8px; border-radius:999px; color:#fff;
  vertical-align:middle; }
.badge.big { font-size:14px; }
.badge.held { background:var(--held); } .badge.broken { background:var(--broken); }
.dot { display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:6px; }
.dot.naked { background:var(--naked); } .dot.protected { background:var(--protected); }
table.summary { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
table.summary th, table.summary td { padding:5px 8px; text-align:right; white-space:nowrap; }
table.summary th:nth-child(-n+2), table.summary td:nth-child(-n+2) { text-align:left; }
table.summary thead th { color:var(--muted); font-weight:500; border-bottom:1px solid var(--grid); }
table.summary tr.protected td { border-bottom:1px solid var(--grid); }
a { color:var(--protected); }
.phases { display:flex; height:26px; border-radius:6px; overflow:hidden; margin:8px 0 4px;
  font-size:12px; }
.phases div { display:flex; align-items:center; justify-content:center; overflow:hidden;
  white-space:nowrap; color:var(--ink); border-right:2px solid var(--card); padding:0 6px; }
.hyps { list-style:none; padding:0; margin:8px 0 4px; }
.hyps li { padding:2px 0; }
.hyps .mark { display:inline-block; width:64px; font-weight:600; }
.hyps .ok { color:var(--held); } .hyps .ko { color:var(--broken); }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(520px, 1fr)); gap:14px;
  margin-top:10px; }
.chart h3 { font-size:13px; font-weight:600; margin:0 0 2px; }
.chart svg { width:100%; height:auto; display:block; overflow:visible; }
.chart .legend { font-size:12px; display:flex; flex-wrap:wrap; gap:4px 12px; margin-top:2px; }
.chart .legend span { cursor:pointer; user-select:none; }
.chart .legend span.off { opacity:.35; text-decoration:line-through; }
.chart .legend i { display:inline-block; width:14px; height:3px; margin-right:5px;
  vertical-align:middle; }
.chart .legend i.dash { background-image:linear-gradient(90deg, currentColor 60%, transparent 0);
  background-size:6px 3px; }
.axis text, .band text { fill:var(--muted); font-size:11px; }
.gridline { stroke:var(--grid); stroke-width:1; }
.tip { position:fixed; pointer-events:none; background:var(--card); color:var(--ink);
  border:1px solid var(--grid); border-radius:6px; padding:6px 8px; font-size:12px;
  box-shadow:0 2px 8px rgba(0,0,0,.15); display:none; z-index:10;
  font-variant-numeric:tabular-nums; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var root = document.documentElement;
  var errors = [];
  function noteError(message) {
    errors.push(String(message));
    root.setAttribute("data-errors", String(errors.length));
    root.setAttribute("data-error-list", errors.join(" | "));
  }
  window.addEventListener("error", function (e) { noteError(e.message); });

  var SVG = "http://www.w3.org/2000/svg";
  var W = 560, H = 220, M = { l: 50, r: 12, t: 10, b: 26 };
  var PHASE_FILLS = ["rgba(46,134,171,0.07)", "rgba(237,174,73,0.13)", "rgba(102,161,130,0.11)",
                     "rgba(141,106,159,0.11)", "rgba(209,73,91,0.09)"];

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function h(tag, cls, text, parent) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function niceStep(span, count) {
    var raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  }
  function fmt(v) {
    if (v === null || v === undefined) { return "-"; }
    var a = Math.abs(v);
    if (a >= 100) { return v.toFixed(0); }
    if (a >= 10) { return v.toFixed(1); }
    return v.toFixed(2);
  }
  function tick(v) {  // axis labels: as few digits as needed (0.5, 1, 2.5, 100)
    return String(parseFloat(v.toPrecision(3)));
  }

  var tip = h("div", "tip", null, document.body);

  function drawChart(container, spec, scenario) {
    var duration = scenario.duration, bucket = scenario.bucket;
    var pw = W - M.l - M.r, ph = H - M.t - M.b;
    var values = [];
    spec.series.forEach(function (s) {
      s.values.forEach(function (v) { if (v !== null && isFinite(v)) { values.push(v); } });
    });
    var log = !!spec.log;
    var ymin = spec.ymin !== undefined ? spec.ymin : Math.min.apply(null, values.concat([0]));
    var ymax = spec.ymax !== undefined ? spec.ymax : Math.max.apply(null, values.concat([1]));
    if (log) {
      var positive = values.filter(function (v) { return v > 0; });
      var low = Math.max(0.1, Math.min.apply(null, positive.concat([1])));
      ymin = Math.pow(10, Math.floor(Math.log10(low)));
      var high = Math.max.apply(null, positive.concat([ymin * 10]));
      ymax = Math.pow(10, Math.ceil(Math.log10(high)));
    } else if (spec.ymax === undefined) {
      ymax = ymax <= ymin ? ymin + 1 : ymax * 1.08;
    }
    function x(t) { return M.l + (t / duration) * pw; }
    function y(v) {
      if (log) {
        var lv = Math.log10(Math.max(v, ymin));
        return M.t + ph - (lv - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin)) * ph;
      }
      return M.t + ph - (v - ymin) / (ymax - ymin) * ph;
    }
    var box = h("div", "chart", null, container);
    box.setAttribute("data-chart", spec.id);
    var unit = spec.unit ? " (" + spec.unit + (log ? ", log scale" : "") + ")" : "";
    h("h3", null, spec.title + unit, box);
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": spec.title }, box);
    // phase bands
    scenario.phases.forEach(function (p, i) {
      var g = el("g", { "class": "band" }, svg);
      el("rect", { x: x(p.start), y: M.t, width: Math.max(0, x(p.end) - x(p.start)), height: ph,
                   fill: PHASE_FILLS[i % PHASE_FILLS.length] }, g);
      var label = el("text", { x: x(p.start) + 4, y: M.t + 12 }, g);
      label.textContent = p.name;
    });
    // y grid and labels
    var axis = el("g", { "class": "axis" }, svg);
    var ticks = [];
    if (spec.ticks) {
      Object.keys(spec.ticks).forEach(function (k) {
        if (+k >= ymin && +k <= ymax) { ticks.push([+k, spec.ticks[k]]); }
      });
    } else if (log) {
      for (var d = ymin; d <= ymax * 1.0001; d *= 10) { ticks.push([d, tick(d)]); }
    } else {
      var step = niceStep(ymax - ymin, 4);
      for (var v = Math.ceil(ymin / step) * step; v <= ymax + 1e-9; v += step) {
        ticks.push([v, tick(v)]);
      }
    }
    ticks.forEach(function (t) {
      el("line", { x1: M.l, x2: M.l + pw, y1: y(t[0]), y2: y(t[0]), "class": "gridline" }, axis);
      var label = el("text", { x: M.l - 6, y: y(t[0]) + 4, "text-anchor": "end" }, axis);
      label.textContent = t[1];
    });
    var xstep = niceStep(duration, 6);
    for (var t = 0; t <= duration + 1e-9; t += xstep) {
      var lx = el("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, axis);
      lx.textContent = tick(t) + " s";
    }
    // series
    var paths = [];
    spec.series.forEach(function (s) {
      var d = "", pen = false;
      s.values.forEach(function (v, i) {
        if (v === null || !isFinite(v)) { pen = false; return; }
        var x0 = x(i * bucket), x1 = x(Math.min(duration, (i + 1) * bucket));
        if (spec.step) {
          d += (pen ? "L" : "M") + x0.toFixed(1) + "," + y(v).toFixed(1) +
               "L" + x1.toFixed(1) + "," + y(v).toFixed(1);
        } else {
          var xm = (x0 + x1) / 2;
          d += (pen ? "L" : "M") + xm.toFixed(1) + "," + y(v).toFixed(1);
        }
        pen = true;
      });
      var path = el("path", { d: d || "M0,0", fill: "none", stroke: s.color, "stroke-width": 2,
                              "stroke-linejoin": "round", "stroke-linecap": "round" }, svg);
      if (s.dash) { path.setAttribute("stroke-dasharray", "5 4"); }
      paths.push(path);
    });
    // hover read-out
    var cursor = el("line", { y1: M.t, y2: M.t + ph, stroke: "currentColor", "stroke-opacity": 0.35,
                              visibility: "hidden" }, svg);
    var hit = el("rect", { x: M.l, y: M.t, width: pw, height: ph, fill: "transparent" }, svg);
    hit.addEventListener("mousemove", function (ev) {
      var r = svg.getBoundingClientRect();
      var t = ((ev.clientX - r.left) / r.width * W - M.l) / pw * duration;
      var i = Math.max(0, Math.min(spec.series[0].values.length - 1, Math.floor(t / bucket)));
      var cx = x((i + 0.5) * bucket);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      cursor.setAttribute("visibility", "visible");
      var phase = "";
      scenario.phases.forEach(function (p) {
        if (i * bucket >= p.start - 1e-9) { phase = p.name; }
      });
      var lines = ["<b>" + fmt(i * bucket) + "-" + fmt((i + 1) * bucket) + " s</b> · " + phase];
      spec.series.forEach(function (s) {
        var v = s.values[i];
        var shown = spec.ticks && v !== null ? (spec.ticks[String(v)] || fmt(v)) : fmt(v);
        lines.push('<span style="color:' + s.color + '">●</span> ' + s.name + ": " + shown);
      });
      tip.innerHTML = lines.join("<br>");
      tip.style.display = "block";
      tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 10) + "px";
    });
    hit.addEventListener("mouseleave", function () {
      tip.style.display = "none"; cursor.setAttribute("visibility", "hidden");
    });
    // legend (click toggles a series)
    var legend = h("div", "legend", null, box);
    spec.series.forEach(function (s, i) {
      var item = h("span", null, null, legend);
      var swatch = h("i", s.dash ? "dash" : null, null, item);
      swatch.style.background = s.dash ? "" : s.color;
      swatch.style.color = s.color;
      item.appendChild(document.createTextNode(s.name));
      item.addEventListener("click", function () {
        var off = item.classList.toggle("off");
        paths[i].style.display = off ? "none" : "";
      });
    });
    return paths.length;
  }

  function drawScenario(parent, scenario) {
    var card = h("section", "card", null, parent);
    card.id = scenario.name;
    var title = h("h2", null, scenario.name, card);
    var held = scenario.verdict === "HELD";
    h("span", "badge " + (held ? "held" : "broken"), scenario.verdict, title);
    h("div", "muted", scenario.description, card);
    var strip = h("div", "phases", null, card);
    scenario.phases.forEach(function (p, i) {
      var cell = h("div", null, p.name + " · " + p.faults, strip);
      cell.style.flex = String(Math.max(0.001, p.end - p.start));
      cell.style.background = PHASE_FILLS[i % PHASE_FILLS.length].replace(/0\.\d+\)$/, "0.25)");
      cell.title = p.name + ": " + p.faults + " (" + fmt(p.end - p.start) + " s)";
    });
    var list = h("ul", "hyps", null, card);
    scenario.hypotheses.forEach(function (c) {
      var li = h("li", null, null, list);
      h("span", "mark " + (c.held ? "ok" : "ko"), c.held ? "HELD" : "BROKEN", li);
      li.appendChild(document.createTextNode(c.text + " — "));
      h("span", "muted", c.detail, li);
    });
    var grid = h("div", "grid", null, card);
    var drawn = 0;
    scenario.charts.forEach(function (spec) {
      try {
        drawChart(grid, spec, scenario);
        drawn += 1;
      } catch (e) {
        noteError(scenario.name + "/" + spec.id + ": " + e);
      }
    });
    return drawn;
  }

  try {
    var data = JSON.parse(document.getElementById("lab-data").textContent);
    var parent = document.getElementById("scenarios");
    var total = 0;
    data.scenarios.forEach(function (s) { total += drawScenario(parent, s); });
    root.setAttribute("data-charts", String(total));
  } catch (e) {
    noteError(e);
  }
})();
"""
