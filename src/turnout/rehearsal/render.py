"""A rehearsal report on the terminal (a table) and as one self-contained HTML page: latency
distributions side by side, cost and agreement rates as inline SVG (nothing fetched when it is
opened), and the worst disagreements with both answers for review."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

SIDES = ("baseline", "candidate")
COLOURS = {"baseline": "#57a", "candidate": "#d73"}
SHOWN = 400  # characters of an answer shown in the HTML


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def _rate(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "-"
    return f"{100 * rate['rate']:.1f}% ({rate['agree']}/{rate['of']})"


def as_table(report: dict[str, Any]) -> str:
    b, c = report["baseline"], report["candidate"]
    lines = [
        f"rehearsal: {report['from']} -> {report['to']}: {report['replayed']} of {report['planned']} "
        f"replayed ({report['missing']} no longer logged), {report['compared']} compared",
        "",
        f"{'':<24}{'as served':>16}{'candidate':>16}",
        f"{'answered':<24}{b['answered']:>16}{c['answered']:>16}",
    ]
    for p in ("p50", "p90", "p99"):
        lines.append(f"{'latency ' + p:<24}{_ms(b['latency_ms'][p]):>16}{_ms(c['latency_ms'][p]):>16}")
    for p in ("p50", "p90"):
        lines.append(f"{'first token ' + p:<24}{_ms(b['ttft_ms'][p]):>16}{_ms(c['ttft_ms'][p]):>16}")
    lines += [
        f"{'input tokens':<24}{b['input_tokens']:>16}{c['input_tokens']:>16}",
        f"{'output tokens':<24}{b['output_tokens']:>16}{c['output_tokens']:>16}",
        f"{'cost USD':<24}{b['cost_usd']:>16}{c['cost_usd']:>16}",
        "",
    ]
    if c["failed"]:
        lines.append("candidate failures: " + ", ".join(f"{k} {v}" for k, v in c["failed"].items()))
    names = {
        "finish_reason": "same finish reason",
        "same_tools": "same tools",
        "tool_arguments_valid": "tool arguments valid",
        "tool_arguments_equal": "tool arguments equal",
        "json_valid": "JSON valid (candidate)",
        "baseline_json_valid": "JSON valid (as served)",
    }
    for key, name in names.items():
        lines.append(f"{name:<24}{_rate(report['agreement'][key]):>32}")
    sim = report["similarity"]
    if sim["mean"] is not None:
        lines.append(f"{'similarity mean/min':<24}{sim['mean']:>24.4f} / {sim['min']:.4f}")
    if report["judge"]["mean"] is not None:
        lines.append(f"{'judge score mean':<24}{report['judge']['mean']:>32.4f}")
    if report["worst"]:
        lines += ["", "worst disagreements:"]
        for w in report["worst"]:
            lines.append(f"  {w['request_id']}  {w['disagreement']:.2f}  " + "; ".join(w["reasons"]))
    return "\n".join(lines)


def _histograms(report: dict[str, Any], key: str, title: str) -> str:
    """Both sides' distributions of `key` as side-by-side bars over the same buckets."""
    values = {side: report[side][key]["values"] for side in SIDES}
    every = [v for side in SIDES for v in values[side]]
    if not every:
        return f"<p>{html.escape(title)}: no values.</p>"
    top = max(every) or 1
    buckets = 12
    width = top / buckets
    counts = {side: [0] * buckets for side in SIDES}
    for side in SIDES:
        for v in values[side]:
            counts[side][min(buckets - 1, int(v / width))] += 1
    tallest = max(max(c) for c in counts.values()) or 1
    parts = []
    for i in range(buckets):
        for j, side in enumerate(SIDES):
            h = round(140 * counts[side][i] / tallest)
            x = 40 + i * 48 + j * 20
            parts.append(f'<rect x="{x}" y="{160 - h}" width="18" height="{h}" fill="{COLOURS[side]}"/>')
            if counts[side][i]:  # how many requests the bar stands for
                parts.append(f'<text x="{x + 4}" y="{156 - h}">{counts[side][i]}</text>')
        parts.append(f'<text x="{40 + i * 48}" y="176">{round(i * width)}</text>')
    legend = "".join(
        f'<rect x="{40 + 130 * j}" y="186" width="12" height="12" fill="{COLOURS[s]}"/>'
        f'<text x="{56 + 130 * j}" y="197">{"as served" if s == "baseline" else "candidate"}</text>'
        for j, s in enumerate(SIDES)
    )
    bars = "".join(parts)
    return f"<h3>{html.escape(title)}</h3><svg width='640' height='204' role='img'>{bars}{legend}</svg>"


def _bars(rows: Sequence[tuple[str, float | None, str]]) -> str:
    parts = []
    for i, (label, share, text) in enumerate(rows):
        y = 24 * i
        width = 0 if share is None else round(400 * share)
        parts.append(
            f'<text x="0" y="{y + 14}">{html.escape(label)}</text>'
            f'<rect x="200" y="{y}" width="400" height="18" fill="#eee"/>'
            f'<rect x="200" y="{y}" width="{width}" height="18" fill="#2a7"/>'
            f'<text x="610" y="{y + 14}">{html.escape(text)}</text>'
        )
    return f"<svg width='760' height='{24 * len(rows)}' role='img'>{''.join(parts)}</svg>"


def _costs(report: dict[str, Any]) -> str:
    amounts = {side: float(report[side]["cost_usd"]) for side in SIDES}
    top = max(amounts.values()) or 1.0
    rows = [
        (
            "as served" if side == "baseline" else "candidate",
            amounts[side] / top,
            f"${report[side]['cost_usd']}",
        )
        for side in SIDES
    ]
    return _bars(rows)


def _answer(doc: dict[str, Any]) -> str:
    if not doc["ok"]:
        return f"<em>failed: {html.escape(str(doc['error']))}</em>"
    calls = "".join(
        f"<br><code>{html.escape(t['name'])}({html.escape(t['arguments'][:SHOWN])})</code>"
        for t in doc["tool_calls"]
    )
    return f"{html.escape(doc['text'][:SHOWN])}{calls}"


def _cost(micros: int | None) -> str:
    return "-" if micros is None else f"${micros / 1_000_000:.6f}"


def _every_request(report: dict[str, Any]) -> str:
    """Every request's figures, folded away under the worst ones."""
    rows = []
    for r in report["requests"]:
        b, c, comparison = r["baseline"], r["candidate"], r["comparison"]
        tools = comparison["tool_calls"]
        agree = "-" if tools is None else "/".join("yes" if tools[k] else "no" for k in sorted(tools))
        cells = [
            f"<code>{html.escape(r['request_id'])}</code>",
            f"{r['disagreement']:.2f}",
            _ms(b["latency_ms"]),
            _ms(c["latency_ms"]),
            _ms(c["ttft_ms"]),
            _cost(b["cost_micros"]),
            _cost(c["cost_micros"]),
            html.escape(f"{b['finish_reason']} / {c['finish_reason'] if c['ok'] else c['error']}"),
            agree,
            {None: "-", True: "yes", False: "no"}[comparison["json_valid"]],
            "-" if comparison["similarity"] is None else f"{comparison['similarity']:.3f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = (
        "<tr><th>request</th><th>score</th><th>latency</th><th>candidate</th><th>first token</th>"
        "<th>cost</th><th>candidate</th><th>finish (as served / candidate)</th>"
        "<th>tools (equal/same/valid)</th><th>JSON valid</th><th>similarity</th></tr>"
    )
    table = f"<table id='every'>{head}{''.join(rows)}</table>"
    return f"<details><summary>Every request ({len(rows)})</summary>{table}</details>"


def as_html(report: dict[str, Any]) -> str:
    title = f"turnout rehearsal: {report['from']} -> {report['to']}"
    agreement = report["agreement"]
    names = [
        ("same finish reason", "finish_reason"),
        ("same tools", "same_tools"),
        ("tool arguments valid", "tool_arguments_valid"),
        ("tool arguments equal", "tool_arguments_equal"),
        ("JSON valid (candidate)", "json_valid"),
        ("JSON valid (as served)", "baseline_json_valid"),
    ]
    rates = [(label, agreement[key]["rate"], _rate(agreement[key])) for label, key in names]
    if report["similarity"]["mean"] is not None:
        mean = report["similarity"]["mean"]
        rates.append(("similarity (mean)", max(0.0, mean), f"{mean:.4f}"))
    if report["judge"]["mean"] is not None:
        rates.append(("judge score (mean)", report["judge"]["mean"], f"{report['judge']['mean']:.4f}"))
    worst = "".join(
        f"<tr><td><code>{html.escape(w['request_id'])}</code></td><td>{w['disagreement']:.2f}</td>"
        f"<td>{html.escape('; '.join(w['reasons']))}</td><td>{_answer(w['baseline'])}</td>"
        f"<td>{_answer(w['candidate'])}</td></tr>"
        for w in report["worst"]
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}svg text{font-size:12px}"
        "table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;"
        "vertical-align:top;text-align:left}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
        f"<pre>{html.escape(as_table({**report, 'worst': []}))}</pre>",
        "<h2>Latency</h2>",
        _histograms(report, "latency_ms", "latency (ms)"),
        _histograms(report, "ttft_ms", "time to first token (ms; as served: not logged)"),
        "<h2>Cost</h2>",
        _costs(report),
        "<h2>Agreement</h2>",
        _bars(rates),
        "<h2>Worst disagreements</h2>",
        "<table id='worst'><tr><th>request</th><th>score</th><th>why</th>"
        "<th>as served</th><th>candidate</th></tr>"
        f"{worst}</table>"
        if worst
        else "<p>None: every compared answer agrees.</p>",
        _every_request(report),
        f"<p><small>generated {datetime.now(UTC).isoformat(timespec='seconds')}</small></p>",
        "</body></html>",
    ]
    return "\n".join(parts)
