"""The benchmark's results (what run.py records) and the markdown tables printed from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The goals for turnout: one core, the realistic request.
GOAL_RPS = 2500.0
GOAL_ADDED_P50_MS = 0.7
GOAL_ADDED_P99_MS = 2.0
GOAL_TTFB_MS = 1.0
GOAL_RSS_MIB = 80.0
# The translated path (OpenAI client → Anthropic upstream) against the same-format path, @ ref rate.
GOAL_TRANSLATED_EXTRA_MS = 0.3
SATURATED = 0.95  # achieved below this share of the offered rate: the target could not keep up


@dataclass
class Load:
    """One load generator run: an open loop at `rate` req/s, or the closed loop when rate is None."""

    label: str
    rate: float | None
    report: dict[str, Any] = field(default_factory=dict)
    cpu_ms_per_req: float | None = None
    error: str | None = None

    def ok(self) -> int:
        return int(self.report.get("ok", 0))

    def errors(self) -> int:
        return int(self.report.get("errors", 0))

    def ms(self, metric: str, q: str) -> float | None:
        """A latency figure ("latency_ms" or "ttfb_ms", q in p50/p90/p99/max), None without answers."""
        return float(self.report[metric][q]) if self.ok() else None

    def saturated(self) -> bool:
        rps = float(self.report.get("achieved_rps", 0))
        return self.rate is not None and rps < SATURATED * self.rate


@dataclass
class TargetMode:
    """Every load run against one target in one mode ("json" or "stream"), with its memory."""

    target: str
    mode: str
    version: str = ""
    loads: list[Load] = field(default_factory=list)
    rss_idle_mib: float | None = None
    rss_peak_mib: float | None = None
    rss_after_mib: float | None = None
    error: str | None = None
    log: str | None = None

    def at(self, rate: float | None) -> Load | None:
        return next((x for x in self.loads if x.rate == rate and not x.error), None)


@dataclass
class PairedRounds:
    """The goal measurements: at one rate, `direct` then `turnout` back to back, several times, so
    that each round's difference is taken under the same machine conditions."""

    mode: str
    rate: float
    direct: list[Load] = field(default_factory=list)
    turnout: list[Load] = field(default_factory=list)
    bare: list[Load] = field(default_factory=list)
    weighted: list[Load] = field(default_factory=list)  # turnout-3: three deployments, weighted
    translated: list[Load] = field(default_factory=list)  # turnout-anthropic: an Anthropic upstream
    baseline: list[Load] = field(default_factory=list)  # turnout-baseline: as committed at --baseline
    # with a baseline: each round also runs turnout and the baseline closed-loop, one after the other
    closed_turnout: list[Load] = field(default_factory=list)
    closed_baseline: list[Load] = field(default_factory=list)

    def throughput_change(self) -> list[float]:
        """Each round's closed-loop throughput of turnout over the baseline's, minus one."""
        return [
            float(a.report["achieved_rps"]) / float(b.report["achieved_rps"]) - 1
            for a, b in zip(self.closed_turnout, self.closed_baseline, strict=False)
            if a.ok() and b.ok() and not a.errors() and not b.errors()
        ]

    def of(self, target: str) -> list[Load]:
        field_name = {
            "turnout-3": "weighted",
            "turnout-anthropic": "translated",
            "turnout-baseline": "baseline",
        }.get(target, target)
        return list(getattr(self, field_name))

    def added(self, metric: str, q: str, target: str = "turnout") -> list[float]:
        out = []
        for base, mine in zip(self.direct, self.of(target), strict=False):
            delta = _delta(mine.ms(metric, q), base.ms(metric, q))
            if delta is not None and not mine.errors() and not base.errors():
                out.append(delta)
        return out

    def errors(self, target: str = "turnout") -> int:
        return sum(x.errors() for x in self.direct + self.of(target))

    def yardstick(self, metric: str, q: str) -> str:
        """The bare proxy's figure from the same rounds, for comparison."""
        values = self.added(metric, q, "bare")
        return (
            f"; bare Python proxy, same rounds: median {_num(median(values), signed=True)} ms"
            if values
            else ""
        )


def median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    sign = "+" if signed and v >= 0 else ""
    if abs(v) >= 100:
        return f"{sign}{v:,.0f}"
    return f"{sign}{v:.1f}" if abs(v) >= 10 else f"{sign}{v:.2f}"


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _added(load: Load, base: Load | None, metric: str, q: str) -> float | None:
    if load.rate is None or base is None:
        return None
    return _delta(load.ms(metric, q), base.ms(metric, q))


def mode_table(results: list[TargetMode], mode: str) -> str:
    """One markdown table for a mode: a row per target and load, then the errors seen."""
    stream = mode == "stream"
    direct = next((r for r in results if r.target == "direct" and r.mode == mode), None)
    head = ["target", "load", "req/s", "errors", "p50", "p90", "p99", "max", "+p50", "+p99"]
    if stream:
        head += ["TTFB p50", "TTFB p99", "+TTFB p50", "+TTFB p99"]
    head += ["CPU ms/req", "RSS MiB peak / after"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for tm in (r for r in results if r.mode == mode):
        name = f"{tm.target} {tm.version}".strip()
        if tm.error and not tm.loads:
            lines.append(f"| {name} | failed: {tm.error} |" + " |" * (len(head) - 2))
            continue
        for i, load in enumerate(tm.loads):
            last = i == len(tm.loads) - 1
            rss = f"{_num(tm.rss_peak_mib)} / {_num(tm.rss_after_mib)}" if last and tm.rss_peak_mib else "-"
            if load.error:
                lines.append(f"| {name} | {load.label} | failed: {load.error} |" + " |" * (len(head) - 3))
                continue
            base = direct.at(load.rate) if direct and tm is not direct else None
            rps = _num(float(load.report["achieved_rps"])) + ("*" if load.saturated() else "")
            row = [name, load.label, rps, str(load.errors())]
            row += [_num(load.ms("latency_ms", q)) for q in ("p50", "p90", "p99", "max")]
            row += [_num(_added(load, base, "latency_ms", q), signed=True) for q in ("p50", "p99")]
            if stream:
                row += [_num(load.ms("ttfb_ms", q)) for q in ("p50", "p99")]
                row += [_num(_added(load, base, "ttfb_ms", q), signed=True) for q in ("p50", "p99")]
            row += [_num(load.cpu_ms_per_req), rss]
            lines.append("| " + " | ".join(row) + " |")
            if load.errors():
                kinds = ", ".join(f"{n} {k}" for k, n in sorted(load.report["error_samples"].items()))
                notes.append(f"- {name} {mode} {load.label}: {load.errors()} errors ({kinds})")
        if tm.error:
            notes.append(f"- {name} {mode}: {tm.error} (log: {tm.log})")
    legend = (
        "Latencies in ms, measured from each request's intended send time. +p50/+p99: added to the "
        "same percentile calling the mock directly at the same rate. * achieved below "
        f"{SATURATED:.0%} of the offered rate (saturated). CPU: the gateway's user+system time per "
        "answered request over the measured window. RSS: whole process tree, peak over the mode's "
        "runs / after them."
    )
    return "\n".join([*lines, "", legend, *(["", *notes] if notes else [])])


def _check(label: str, value: float | None, unit: str, goal: str, ok: bool, errors: int = 0) -> str:
    shown = f"{_num(value)} {unit}" if value is not None else "not measured"
    if errors:
        shown += f" ({errors} errors)"
    verdict = "PASS" if value is not None and ok and not errors else "MISS"
    return f"| {label} | {shown} | {goal} | {verdict} |"


def goals(
    results: list[TargetMode],
    ref_rate: float,
    paired: list[PairedRounds] | None = None,
    target: str = "turnout",
) -> str:
    """The issue's goals for turnout, measured value and PASS/MISS each. Latency goals use the
    paired rounds when they were run (median of the per-round differences)."""

    def load(target: str, mode: str, rate: float | None) -> Load | None:
        tm = next((r for r in results if r.target == target and r.mode == mode), None)
        return tm.at(rate) if tm else None

    notes: list[str] = []

    def added(mode: str, metric: str, q: str) -> tuple[float | None, int]:
        value, errors, values, rounds = _added_at(results, paired, ref_rate, mode, metric, q, target)
        if rounds is not None and values:
            notes.append(
                f"{mode} {metric.removesuffix('_ms')} {q}: median of {len(values)} paired rounds "
                f"({', '.join(_num(v, signed=True) for v in values)} ms){rounds.yardstick(metric, q)}"
            )
        return value, errors

    closed = load(target, "json", None)
    rps = float(closed.report["achieved_rps"]) if closed else None
    p50, p50_errors = added("json", "latency_ms", "p50")
    p99, p99_errors = added("json", "latency_ms", "p99")
    ttfb, ttfb_errors = added("stream", "ttfb_ms", "p50")
    peaks = [r.rss_peak_mib for r in results if r.target == target and r.rss_peak_mib]
    rss = max(peaks) if peaks else None
    at = f"@ {ref_rate:g} req/s"
    rows = [
        f"| goal ({target}, gateway on one core) | measured | target | result |",
        "|---|---|---|---|",
        _check(
            "non-streaming throughput, closed loop",
            rps,
            "req/s",
            f"≥ {GOAL_RPS:,.0f} req/s",
            rps is not None and rps >= GOAL_RPS,
            closed.errors() if closed else 0,
        ),
        _check(
            f"added latency p50 {at} (json)",
            p50,
            "ms",
            f"≤ {GOAL_ADDED_P50_MS:g} ms",
            p50 is not None and p50 <= GOAL_ADDED_P50_MS,
            p50_errors,
        ),
        _check(
            f"added latency p99 {at} (json)",
            p99,
            "ms",
            f"≤ {GOAL_ADDED_P99_MS:g} ms",
            p99 is not None and p99 <= GOAL_ADDED_P99_MS,
            p99_errors,
        ),
        _check(
            f"stream TTFB overhead p50 {at}",
            ttfb,
            "ms",
            f"≤ {GOAL_TTFB_MS:g} ms",
            ttfb is not None and ttfb <= GOAL_TTFB_MS,
            ttfb_errors,
        ),
        _check(
            "RSS, peak over all runs",
            rss,
            "MiB",
            f"≤ {GOAL_RSS_MIB:g} MiB",
            rss is not None and rss <= GOAL_RSS_MIB,
        ),
    ]
    return "\n".join(rows) + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def _added_at(
    results: list[TargetMode],
    paired: list[PairedRounds] | None,
    ref_rate: float,
    mode: str,
    metric: str,
    q: str,
    target: str,
) -> tuple[float | None, int, list[float], PairedRounds | None]:
    """What `target` adds to calling the mock directly @ ref rate: (the median of the paired rounds'
    differences, errors in those rounds, the differences, the rounds), or without paired rounds
    for it the difference in the per-target tables (no rounds then)."""
    rounds = next((p for p in paired or [] if p.mode == mode and p.rate == ref_rate), None)
    if rounds is not None and rounds.of(target):
        values = rounds.added(metric, q, target)
        return median(values), rounds.errors(target), values, rounds

    def load(name: str) -> Load | None:
        tm = next((r for r in results if r.target == name and r.mode == mode), None)
        return tm.at(ref_rate) if tm else None

    mine, base = load(target), load("direct")
    if mine is None or base is None:
        return None, 0, [], None
    return _delta(mine.ms(metric, q), base.ms(metric, q)), mine.errors() + base.errors(), [], None


def _direct_errors(
    results: list[TargetMode], paired: list[PairedRounds] | None, ref_rate: float, mode: str
) -> int:
    """Errors calling the mock directly @ ref rate: in the paired rounds, else in the tables."""
    rounds = next((p for p in paired or [] if p.mode == mode and p.rate == ref_rate), None)
    if rounds is not None:
        return sum(x.errors() for x in rounds.direct)
    tm = next((r for r in results if r.target == "direct" and r.mode == mode), None)
    base = tm.at(ref_rate) if tm else None
    return base.errors() if base else 0


def translated_goals(
    results: list[TargetMode], ref_rate: float, paired: list[PairedRounds] | None = None
) -> str:
    """The translated path (OpenAI client → turnout → Anthropic upstream) against the same-format
    path (→ OpenAI-format upstream): the difference of their added latencies @ ref rate, each the
    median over the paired rounds. The p50 rows are goals, the p99 rows information."""
    same, translated = "turnout", "turnout-anthropic"
    at = f"@ {ref_rate:g} req/s"
    rows = [
        "| goal (turnout-anthropic vs turnout, gateway on one core) | measured | target | result |",
        "|---|---|---|---|",
    ]
    notes: list[str] = []
    checks = [
        ("json", "latency_ms", "p50", True, "added latency p50"),
        ("json", "latency_ms", "p99", False, "added latency p99"),
        ("stream", "ttfb_ms", "p50", True, "added TTFB p50"),
        ("stream", "ttfb_ms", "p99", False, "added TTFB p99"),
    ]
    for mode, metric, q, is_goal, what in checks:
        # Both from the paired rounds, or (without turnout-anthropic in them) both from the tables.
        both = paired if any(p.mode == mode and p.translated for p in paired or []) else None
        mine, mine_err, mine_values, rounds = _added_at(results, both, ref_rate, mode, metric, q, translated)
        base, base_err, base_values, _ = _added_at(results, both, ref_rate, mode, metric, q, same)
        extra = _delta(mine, base)
        errors = max(0, mine_err + base_err - _direct_errors(results, both, ref_rate, mode))  # direct: twice
        label = f"translated path (Anthropic upstream) {what} {at} ({mode})"
        if extra is None:
            shown = "not measured"
        else:
            shown = (
                f"{_num(extra, signed=True)} ms over same-format "
                f"({_num(mine, signed=True)} vs {_num(base, signed=True)} ms)"
            )
        if errors:
            shown += f" ({errors} errors)"
        if is_goal:
            ok = extra is not None and extra <= GOAL_TRANSLATED_EXTRA_MS and not errors
            goal, verdict = f"≤ same-format + {GOAL_TRANSLATED_EXTRA_MS:g} ms", "PASS" if ok else "MISS"
        else:
            goal, verdict = "(information)", "-"
        rows.append(f"| {label} | {shown} | {goal} | {verdict} |")
        if rounds is not None and mine_values:
            notes.append(
                f"{mode} {metric.removesuffix('_ms')} {q}: medians of {len(mine_values)} paired rounds; "
                f"translated {', '.join(_num(v, signed=True) for v in mine_values)} ms, same-format "
                f"{', '.join(_num(v, signed=True) for v in base_values)} ms"
            )
    if not any(p.translated for p in paired or []):
        notes.append("no paired rounds with turnout-anthropic: figures from the per-target tables")
    return "\n".join(rows) + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def render(
    results: list[TargetMode], ref_rate: float, preamble: str = "", paired: list[PairedRounds] | None = None
) -> str:
    parts = [
        *([preamble] if preamble else []),
        "## Non-streaming (json)",
        mode_table(results, "json"),
        "## Streaming (SSE)",
        mode_table(results, "stream"),
        "## Goals",
        goals(results, ref_rate, paired),
    ]
    if any(r.target == "turnout-3" for r in results):
        parts += [
            "## Goals with three deployments behind a weighted alias",
            goals(results, ref_rate, paired, "turnout-3"),
        ]
    if any(r.target == "turnout-anthropic" for r in results):
        parts += [
            "## Goals for the translated path (OpenAI client → Anthropic upstream)",
            translated_goals(results, ref_rate, paired),
        ]
    if any(r.target == "turnout-baseline" for r in results):
        parts += ["## Against the baseline (same run)", against_baseline(results, ref_rate, paired)]
    return "\n\n".join(parts) + "\n"


def against_baseline(
    results: list[TargetMode], ref_rate: float, paired: list[PairedRounds] | None = None
) -> str:
    """turnout against turnout as committed at --baseline: closed-loop throughput and CPU per
    request in each mode (the change: negative is a loss), and what each adds to the mock's latency
    @ ref rate (the paired rounds' medians, or the tables')."""
    rows = [
        "| measure | turnout | baseline | change |",
        "|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        now, then = (
            next((r.at(None) for r in results if r.target == t and r.mode == mode and r.at(None)), None)
            for t in ("turnout", "turnout-baseline")
        )
        if now is None or then is None:
            continue
        a, b = float(now.report["achieved_rps"]), float(then.report["achieved_rps"])
        rows.append(f"| {mode} req/s, closed loop | {_num(a)} | {_num(b)} | {(a / b - 1) * 100:+.1f}% |")
        rounds = next((p for p in paired or [] if p.mode == mode and p.throughput_change()), None)
        if rounds is not None:
            changes = rounds.throughput_change()
            listed = ", ".join(f"{c * 100:+.1f}%" for c in changes)
            rows.append(
                f"| {mode} req/s, closed loop, alternating rounds (median) | | | "
                f"{(median(changes) or 0.0) * 100:+.1f}% ({listed}) |"
            )
        if now.cpu_ms_per_req and then.cpu_ms_per_req:
            ca, cb = now.cpu_ms_per_req, then.cpu_ms_per_req
            rows.append(
                f"| {mode} CPU ms/req, closed loop | {_num(ca)} | {_num(cb)} | {(ca / cb - 1) * 100:+.1f}% |"
            )
        metric = "ttfb_ms" if mode == "stream" else "latency_ms"
        for q in ("p50", "p99"):
            mine, _, _, _ = _added_at(results, paired, ref_rate, mode, metric, q, "turnout")
            base, _, _, _ = _added_at(results, paired, ref_rate, mode, metric, q, "turnout-baseline")
            if mine is not None and base is not None:
                what = "TTFB" if mode == "stream" else "latency"
                rows.append(
                    f"| {mode} added {what} {q} @ {ref_rate:g} req/s | {_num(mine, signed=True)} ms | "
                    f"{_num(base, signed=True)} ms | {mine - base:+.2f} ms |"
                )
    return "\n".join(rows)
