"""Plots drawn as inline SVG by the server: stacked bars with their coordinates as attributes (the
Content-Security-Policy allows no inline style or script), a tooltip (`<title>`) on each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 720, 160


@dataclass(frozen=True, slots=True)
class Layer:
    """One part of each bar: its name, its colour class (`s0`...`s8`), and its value in a bucket."""

    name: str
    series: int
    value: Callable[[dict[str, int]], int]


def stacked_bars(
    buckets: Sequence[tuple[str, dict[str, int]]],
    layers: Sequence[Layer],
    shown: Callable[[int], str] = str,
) -> dict[str, Any]:
    """`buckets`: (label, figures) oldest first; each bar stacks the layers' values, bottom first."""
    values = [[max(layer.value(figures), 0) for layer in layers] for _, figures in buckets]
    peak = max((sum(v) for v in values), default=0)
    width = WIDTH / max(len(buckets), 1)
    bars = []
    for i, ((label, _), parts) in enumerate(zip(buckets, values, strict=True)):
        y = float(HEIGHT)
        for layer, value in zip(layers, parts, strict=True):
            if not value:
                continue
            height = HEIGHT * value / peak
            y -= height
            bars.append(
                {
                    "x": round(i * width + 1, 2),
                    "y": round(y, 2),
                    "width": round(max(width - 2, 1), 2),
                    "height": round(height, 2),
                    "series": layer.series,
                    "label": f"{label} · {layer.name}: {shown(value)}",
                }
            )
    legend = [{"series": layer.series, "name": layer.name} for layer in layers]
    first, last = (buckets[0][0], buckets[-1][0]) if buckets else ("", "")
    return {
        "bars": bars,
        "legend": legend,
        "peak": shown(peak),
        "buckets": len(buckets),
        "first": first,  # the labels of the first and last bars, under the chart's ends
        "last": last,
    }
