"""Numbers, bytes, times and statuses as the pages write them; a missing figure is
"unavailable", never 0."""
from __future__ import annotations

import time

import streamlit as st

from distill_core.constants import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING
from distill_core.measure.report import human_bytes, human_count

STATUS_ICON = {QUEUED: "○", RUNNING: "▸", DONE: "✓", FAILED: "✗", CANCELLED: "■", INTERRUPTED: "!"}

fmt_bytes = human_bytes  # one formatter for the CLI and the pages
fmt_count = human_count


def _missing(x) -> bool:
    return x is None or x != x  # None or NaN


def fmt_pct(x, digits: int = 1) -> str:
    return "unavailable" if _missing(x) else f"{100 * x:.{digits}f} %"


def fmt_ms(x) -> str:
    if _missing(x):
        return "unavailable"
    return f"{x * 1000:.1f} µs" if x < 0.1 else f"{x:.3g} ms"


def _in_unit(value: float, ladder: tuple, suffix: str = "") -> str:
    """`value` in the first unit of `ladder` ((name, scale), largest first) it reaches."""
    for unit, scale in ladder:
        if abs(value) >= scale or unit == ladder[-1][0]:
            return f"{value / scale:.3g} {unit}{suffix}"


def fmt_energy(kwh) -> str:
    """kWh in a readable unit (mWh for the tiny figures small models cost)."""
    if _missing(kwh):
        return "unavailable"
    return _in_unit(kwh * 1000, (("kWh", 1e3), ("Wh", 1.0), ("mWh", 1e-3), ("µWh", 1e-6)))


def fmt_co2(kg) -> str:
    if _missing(kg):
        return "unavailable"
    return _in_unit(kg, (("kg", 1.0), ("g", 1e-3), ("mg", 1e-6), ("µg", 1e-9)), " CO2eq")


def fmt_seconds(s) -> str:
    if _missing(s):
        return "unavailable"
    if s < 60:
        return f"{s:.2f} s" if s < 1 else f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def fmt_ratio(x) -> str:
    return "unavailable" if _missing(x) else f"{x:.1f}x"


def fmt_time(t) -> str:
    return "" if _missing(t) else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def plural(n: int, word: str) -> str:
    """'1 run', '3 runs'."""
    return f"{n} {word}{'s' if n != 1 else ''}"


def status_label(status: str) -> str:
    return f"{STATUS_ICON.get(status, '')} {status}"


def unavailable(what: str, reason: str | None) -> None:
    """A figure that could not be obtained: say so and why, never draw zeros."""
    st.info(f"**{what}** unavailable: {reason or 'no reason recorded'}")
