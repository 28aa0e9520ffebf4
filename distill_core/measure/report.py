"""Readable lines of a run's measurements, for the `run` and `measure` commands."""
from __future__ import annotations


def _missing(n) -> bool:
    return n is None or n != n  # None or NaN (a pandas frame's missing figure)


def human_bytes(n) -> str:
    if _missing(n):
        return "unavailable"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_count(n) -> str:
    if _missing(n):
        return "unavailable"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n):,}"


def _ms(t: dict | None) -> str:
    if not t or "median_ms" not in t:
        if t and "turned off" in str(t.get("reason")):
            return "off"
        return "unavailable" + (f" ({t['reason']})" if t and t.get("reason") else "")
    return f"{t['median_ms']:.3f} ms (p95 {t['p95_ms']:.3f}, {t['reps']} reps)"


def _rate(t: dict | None) -> str:
    return f"{t['samples_per_s']:,.0f}/s" if t and "samples_per_s" in t else "-"


def format_measurements(result: dict) -> list[str]:
    """Lines for a terminal: size, compute, latency, int8, energy, exports, budgets."""
    m = result.get("measure")
    if not m:
        return ["measurements: none (this run was not measured)"]
    if m.get("available") is False:
        return [f"measurements: unavailable ({m.get('reason')})"]
    size, comp, lat = m.get("size") or {}, m.get("compute") or {}, m.get("latency") or {}
    i8 = m.get("int8") or {}
    lines = [
        "size      " + (f"{size['params']:,} params ({size.get('trainable_params', 0):,} trainable); " if "params" in size
                           else "params unavailable (not a network of this lab); ") +
        f"fp32 file {human_bytes(size.get('fp32_bytes'))}; ONNX {human_bytes(size.get('onnx_bytes'))}; "
        f"int8 ONNX {human_bytes(size.get('int8_bytes'))}",
        f"compute   {human_count(comp.get('flops'))} FLOPs / sample ({human_count(comp.get('macs'))} MACs)"
        if "flops" in comp else f"compute   unavailable ({comp.get('reason')})",
        f"latency   batch 1, {m.get('threads')} thread(s): PyTorch {_ms(lat.get('torch'))}",
        f"          ONNX Runtime fp32 {_ms(lat.get('onnx'))}; int8 {_ms(lat.get('onnx_int8'))}",
    ]
    tb = lat.get("torch_batch") or {}
    if tb.get("batch"):
        lines.append(f"throughput batch {tb['batch']}: PyTorch {_rate(tb)}, ONNX fp32 {_rate(lat.get('onnx_batch'))}, "
                     f"int8 {_rate(lat.get('onnx_int8_batch'))}")
    if i8.get("accuracy") is not None:
        lines.append(f"int8      test accuracy {i8['accuracy']:.4f} vs fp32 {i8['fp32_accuracy']:.4f} "
                     f"({-100 * i8['accuracy_drop']:+.2f} pts); agrees with fp32 on {100 * i8['agreement_with_fp32']:.1f}%; "
                     f"{i8.get('variant', 'int8')} ({i8.get('chosen_by', '')})")
        for name, v in (m.get("int8_variants") or {}).items():
            if name != i8.get("variant") and v.get("accuracy") is not None:
                lines.append(f"          {name}: accuracy {v['accuracy']:.4f}, {human_bytes(v.get('bytes'))}, "
                             f"batch 1 {_ms(v.get('latency'))} (not deployed)")
    elif i8:
        lines.append(f"int8      unavailable ({i8.get('reason')})")
    e = result.get("energy") or {}
    if e.get("available"):
        lines.append(f"energy    {e['label']} by CodeCarbon ({e.get('method')}), country {e.get('country')}")
        for name, p in e.get("phases", {}).items():
            if p.get("available"):
                extra = " (reused: not spent by this run)" if p.get("reused") else ""
                if p.get("kwh_per_1000") is not None:
                    extra += f"; {p['kwh_per_1000']:.3g} kWh per 1,000 predictions"
                lines.append(f"          {name:<18} {p['kwh']:.3g} kWh, {p['kg_co2eq']:.3g} kg CO2eq, {p['seconds']:.2f} s{extra}")
            else:
                lines.append(f"          {name:<18} unavailable ({p.get('reason')})")
        lines.append(f"          total this run {e['total_kwh']:.3g} kWh, {e['total_kg_co2eq']:.3g} kg CO2eq"
                     + (f"; reuse saved {e['saved_kwh']:.3g} kWh" if e.get("saved_kwh") else ""))
    elif e:
        lines.append(f"energy    unavailable ({e.get('reason')})")
    ex = m.get("exports") or {}
    onnx = m.get("onnx") or {}
    if onnx.get("verified") is not None:
        check = f"verified, max diff {onnx['max_abs_diff']:.2g}" if onnx["verified"] else "NOT verified"
    else:
        check = onnx.get("reason", "")
    names = [f"{k} ({check})" if k == "onnx" else k for k in ex if k != "weights"]
    lines.append("exports   " + ", ".join(["weights"] + names) + f" in {str(ex.get('weights', '')).rsplit('/', 1)[0]}")
    for k, why in (m.get("export_errors") or {}).items():
        if why:
            lines.append(f"          {k} failed: {why}")
    budgets = m.get("budgets") or []
    if budgets:
        word = {True: "fits", False: "no", None: "unknown"}
        lines.append("budgets   " + ", ".join(f"{b['profile']} {word[b['fits']]}" for b in budgets))
    if "seconds" in m:
        lines.append(f"measuring took {m['seconds']:.2f} s")
    return lines
