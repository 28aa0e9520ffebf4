"""Widgets built from registry Params (so a new method or data set needs no page change),
model pickers, and uploads."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from distill_core.errors import DistillError
from distill_core.models import ARCHITECTURES, NAMED_SIZES, check_input_kind, describe_spec, normalise_spec
from distill_core.registry import Param
from distill_core.uploads import save_upload

from .state import home


def widget_key(prefix: str, name: str) -> str:
    return f"{prefix}__{name}"


def param_to_widget_value(p: Param, value):
    """A Param value as its widget holds it (lists of ints as '64, 64' text)."""
    if p.kind == "ints":
        return ", ".join(str(v) for v in (value or []))
    if p.kind == "float":
        return float(value)
    if p.kind == "int":
        return int(value)
    if p.kind == "bool":
        return bool(value)
    return value if p.kind == "choice" else str(value)


def param_widget(p: Param, prefix: str, label: str | None = None, disabled: bool = False):
    """One widget for one Param, its value kept in session state under widget_key(prefix, name).

    Numbers are free text-like number inputs without clamping bounds, so an out-of-range value
    reaches `Param.coerce` and its message is shown next to the widget (not silently clamped).
    """
    key = widget_key(prefix, p.name)
    if key not in st.session_state:
        st.session_state[key] = param_to_widget_value(p, p.default)
    label = label or p.name.replace("_", " ")
    help_text = p.describe().split(": ", 1)[-1] if p.help else None
    if p.kind == "bool":
        return st.checkbox(label, key=key, help=help_text, disabled=disabled)
    if p.kind == "choice":
        return st.selectbox(label, list(p.choices), key=key, help=help_text, disabled=disabled)
    if p.kind == "int":
        return st.number_input(label, step=1, key=key, help=_range_help(p, help_text), disabled=disabled)
    if p.kind == "float":
        return st.number_input(label, key=key, format="%g", step=_float_step(p), help=_range_help(p, help_text),
                               disabled=disabled)
    if p.kind == "ints":
        return st.text_input(label, key=key, help=(help_text or "") + " (comma-separated whole numbers)", disabled=disabled)
    return st.text_input(label, key=key, help=help_text, disabled=disabled)


def _range_help(p: Param, text: str | None) -> str | None:
    bits = []
    if p.min is not None:
        bits.append(f"min {p.min:g}")
    if p.max is not None:
        bits.append(f"max {p.max:g}")
    return f"{text or ''} ({', '.join(bits)})" if bits else text


def _float_step(p: Param) -> float:
    d = abs(float(p.default or 0))
    if d == 0:
        return 0.1 if (p.max or 1) <= 10 else 1.0
    return float(10 ** (int(f"{d:e}".split("e")[1])))


def param_form(params, prefix: str, owner: str, skip: tuple[str, ...] = (), columns: int = 3,
               disabled: bool = False, labels: dict | None = None) -> tuple[dict, dict]:
    """Widgets for a registry entry's Params (skipping `skip`), laid out in columns.

    Returns (values, errors): values coerced by the Params themselves, and for each knob that
    does not validate, its message (already shown under its widget).
    """
    shown = [p for p in params if p.name not in skip]
    values, errors = {}, {}
    if not shown:
        return values, errors
    cols = st.columns(min(columns, len(shown)))
    for i, p in enumerate(shown):
        with cols[i % len(cols)]:
            raw = param_widget(p, prefix, label=(labels or {}).get(p.name), disabled=disabled)
            try:
                values[p.name] = p.coerce(raw, owner)
            except DistillError as exc:
                errors[p.name] = str(exc)
                st.error(str(exc), icon=":material/error:")
    return values, errors


def set_param_values(params, prefix: str, values: dict) -> None:
    """Put values into the session state of a param_form (before it is drawn)."""
    for p in params:
        if p.name in values:
            st.session_state[widget_key(prefix, p.name)] = param_to_widget_value(p, values[p.name])


CUSTOM = "custom: "


def model_options(networks_only: bool = False) -> list[str]:
    """Named sizes first, then every architecture with its own knobs ("custom: mlp"); with
    `networks_only`, without the scikit-learn teachers (a student is a network)."""
    return list(NAMED_SIZES) + [CUSTOM + e.name for e in ARCHITECTURES if not (networks_only and e.extra.get("estimator"))]


def set_model_state(prefix: str, spec) -> None:
    """Put a model spec into a model_picker's session state (before it is drawn)."""
    if spec is None:
        return
    if isinstance(spec, str) and spec in NAMED_SIZES:
        st.session_state[f"{prefix}_choice"] = spec
        return
    full = normalise_spec(spec)  # raises ConfigError naming the problem
    for name in NAMED_SIZES:
        if normalise_spec(name) == full:
            st.session_state[f"{prefix}_choice"] = name
            return
    arch = full["arch"]
    st.session_state[f"{prefix}_choice"] = CUSTOM + arch
    set_param_values(ARCHITECTURES.get(arch).params, f"{prefix}_{arch}", full)


def model_picker(prefix: str, label: str, kind: str | None, default: str = "mlp-small",
                 networks_only: bool = False) -> tuple[dict | None, list[str]]:
    """A named size or an architecture with its knobs (forms from the registry); a student's
    picker (`networks_only`) leaves out the scikit-learn teachers.

    Returns (normalised spec or None, error messages shown under the widgets)."""
    key = f"{prefix}_choice"
    options = model_options(networks_only)
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    if kind and st.session_state.get(f"{prefix}_kind") != kind:
        # the data set's kind of input changed: a model that cannot take it goes back to the default
        choice = st.session_state[key]
        arch = choice[len(CUSTOM):] if choice.startswith(CUSTOM) else normalise_spec(choice)["arch"]
        if kind not in ARCHITECTURES.get(arch).extra["kinds"]:
            st.session_state[key] = default
        st.session_state[f"{prefix}_kind"] = kind

    def fmt(o: str) -> str:
        if o.startswith(CUSTOM):
            return f"{o} (choose its size)"
        return f"{o}: {NAMED_SIZES[o].get('_about', '')}"

    choice = st.selectbox(label, options, key=key, format_func=fmt)
    errors: list[str] = []
    if choice.startswith(CUSTOM):
        arch = choice[len(CUSTOM):]
        entry = ARCHITECTURES.get(arch)
        st.caption(entry.description)
        values, errs = param_form(entry.params, f"{prefix}_{arch}", f"architecture {arch}")
        errors += errs.values()
        spec = {"arch": arch, **values} if not errs else None
    else:
        spec = normalise_spec(choice)
        st.caption(f"{describe_spec(choice)}: " + ", ".join(f"{k}={v}" for k, v in spec.items() if k != "arch"))
    if spec is not None:
        try:
            spec = normalise_spec(spec)
            if kind:
                check_input_kind(spec, kind)
        except DistillError as exc:
            errors.append(str(exc))
            st.error(str(exc), icon=":material/error:")
            spec = None
    return spec, errors


def keep_upload(uploaded, limit_mb: float) -> Path:
    """Keep a file from st.file_uploader in <home>/uploads/; DataError when it is empty or too big."""
    return save_upload(home(), uploaded.name, uploaded.getvalue(), limit_mb)
