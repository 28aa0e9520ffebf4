"""Shared page helpers: the store, settings, caching, forms from registry Params, formatting,
and the few figures more than one page draws.

Pages stay thin: they read the store through these helpers, draw, and submit. Nothing here
trains; computation beyond drawing lives in distill_core (see distill_core/report.py).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import streamlit as st

from distill_core.errors import ConfigError, DistillError
from distill_core.registry import Param, coerce_knobs
from distill_core.measure.report import human_bytes, human_count

ROOT = Path(__file__).resolve().parents[1]

ASSETS = ROOT / "assets"
PAGES = {  # short name -> page file, for st.page_link and st.switch_page (app.py registers them)
    "home": "pages/home.py",
    "new": "pages/new_experiment.py",
    "runs": "pages/runs.py",
    "detail": "pages/run_detail.py",
    "compare": "pages/compare.py",
    "learn": "pages/learn.py",
    "settings": "pages/settings.py",
}
ACTIVE = ("queued", "running")
STATUS_ICON = {"queued": "○", "running": "▸", "done": "✓", "failed": "✗", "cancelled": "■", "interrupted": "!"}


# ------------------------------------------------------------------------------- home and store


def home() -> Path:
    """The home folder of this browser session: chosen on Settings, else DISTILL_HOME."""
    from distill_core.paths import home_dir

    chosen = st.session_state.get("home_override")
    return home_dir(chosen or None)


@st.cache_resource(show_spinner=False)
def _store(path: str):
    from distill_core.jobs import Store

    return Store(path)


def store():
    """The store of the current home folder (one object per folder, shared by sessions)."""
    return _store(str(home()))


def store_version(s=None) -> int:
    """The store's change counter: it grows on every write, so it keys page caches. Asking for
    the changes after a cursor far in the future returns only the current cursor (cheap)."""
    s = s or store()
    return int(s.changes_since(2**62)["cursor"])


@st.cache_data(show_spinner=False, max_entries=4)
def _results_frame(path: str, version: int):
    return _store(path).results_frame()


def results_frame():
    """All finished runs, one row each (cached until the store changes)."""
    s = store()
    return _results_frame(str(s.home), store_version(s))


@st.cache_data(show_spinner=False, max_entries=64)
def _get_run(path: str, run_id: int, version: int):
    return _store(path).get_run(run_id)


def get_run(run_id: int) -> dict | None:
    s = store()
    return _get_run(str(s.home), int(run_id), store_version(s))


@st.cache_data(show_spinner="Loading the data set…", max_entries=16)
def cached_preview(name: str, knobs_json: str, per_class: int = 2) -> dict:
    """report.data_preview, cached per data set and knobs (raises its DistillError)."""
    from distill_core.report import data_preview

    return data_preview(name, json.loads(knobs_json), per_class=per_class)


def cached_data_info(dataset: dict) -> dict:
    """Shape, classes and split sizes of a run config's data set."""
    from distill_core.config import dataset_name_and_knobs

    name, knobs = dataset_name_and_knobs(dataset)
    return cached_preview(name, json.dumps(knobs, sort_keys=True), 0)


@st.cache_data(show_spinner="Running the models on a few samples…", max_entries=32)
def _sample_logits(path: str, run_hash: str, config: dict, n: int, seed: int) -> dict:
    from distill_core.report import sample_logits

    return sample_logits(config, path, n=n, seed=seed)


def cached_sample_logits(run_hash: str, config: dict, n: int, seed: int) -> dict:
    """Logits of a run's saved model and of its teacher on n test samples (inference only)."""
    return _sample_logits(str(home()), run_hash, config, n, seed)


# ------------------------------------------------------------------------------- settings

SETTINGS_FILE = "settings.json"


def _default_workers() -> int:
    from distill_core.jobs import default_workers

    return default_workers()


def settings_params() -> tuple[Param, ...]:
    from distill_core.measure.settings import default_country

    return (
        Param("device", "auto", "where runs train: auto picks a GPU when there is one", "choice",
              choices=("auto", "cpu", "cuda", "mps")),
        Param("workers", _default_workers(), "runs trained side by side (worker processes)", "int", 1, 64),
        Param("threads", 0, "torch threads per worker (0 = cores / workers)", "int", 0, 256),
        Param("country", default_country(), "ISO 3166 alpha-3 code CodeCarbon uses for carbon intensity (USA, FRA, DEU...)", "str"),
        Param("upload_mb", 200, "largest file accepted on the New experiment page, in MB", "int", 1, 10000),
        Param("autostart", True, "start the worker pool when runs are launched from the dashboard", "bool"),
        Param("refresh_seconds", 2.0, "how often pages refresh while runs are active", "float", 0.5, 60.0),
    )


def validate_settings(values: dict) -> dict:
    """Typed settings with defaults; ConfigError naming the bad one."""
    s = coerce_knobs(settings_params(), values, "settings")
    country = s["country"].strip().upper()
    if len(country) != 3 or not country.isalpha():
        raise ConfigError(f"settings: country must be a 3-letter ISO code such as USA, FRA or DEU; got {s['country']!r}")
    s["country"] = country
    return s


def load_settings(folder: Path | None = None) -> dict:
    """<home>/settings.json over the defaults; a broken file gives the defaults (and a warning)."""
    path = (folder or home()) / SETTINGS_FILE
    given = {}
    if path.is_file():
        try:
            given = json.loads(path.read_text(encoding="utf-8"))
            known = {p.name for p in settings_params()}
            given = {k: v for k, v in given.items() if k in known} if isinstance(given, dict) else {}
            return validate_settings(given)
        except (ValueError, DistillError) as exc:
            st.warning(f"{path}: ignored ({exc}); using the default settings")
    return validate_settings({})


def save_settings(values: dict, folder: Path | None = None) -> dict:
    s = validate_settings(values)
    path = (folder or home()) / SETTINGS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(s, indent=1))
    os.replace(tmp, path)
    return s


def start_workers(settings: dict | None = None) -> dict | None:
    """Make sure a worker pool serves this home (when autostart is on). Returns what
    `ensure_workers` said, or None when autostart is off."""
    from distill_core.jobs import ensure_workers

    s = settings or load_settings()
    if not s["autostart"]:
        return None
    os.environ["DISTILL_COUNTRY"] = s["country"]  # read by the pool's measurement settings
    return ensure_workers(str(home()), workers=s["workers"], threads=s["threads"] or None)


def pool_alive() -> bool:
    try:
        return bool(store().live_pools())
    except Exception:
        return False


def apply_run_settings(spec: dict, settings: dict) -> dict:
    """Put the device and thread settings into an experiment's training settings (they do not
    change a run's numbers, so they are left out of its hash)."""
    spec = dict(spec)
    for key in ("train", "teacher_train"):
        if key == "teacher_train" and spec.get(key) is None:
            continue
        t = dict(spec.get(key) or {})
        t["device"] = settings["device"]
        if settings["threads"]:
            t["threads"] = settings["threads"]
        spec[key] = t
    return spec


def submit(spec: dict, force: bool = False) -> tuple[int, list[int]]:
    """Queue an experiment with this session's settings and start workers if asked to.
    Raises the store's ConfigError (a message for the page) before anything is queued."""
    s = load_settings()
    exp_id, run_ids = store().submit(apply_run_settings(spec, s), force=force)
    start_workers(s)
    return exp_id, run_ids


# ------------------------------------------------------------------------------- formatting


fmt_bytes = human_bytes  # one formatter for the CLI and the pages
fmt_count = human_count


def fmt_pct(x, digits: int = 1) -> str:
    return "unavailable" if x is None or x != x else f"{100 * x:.{digits}f} %"


def fmt_ms(x) -> str:
    if x is None or x != x:
        return "unavailable"
    return f"{x * 1000:.1f} µs" if x < 0.1 else f"{x:.3g} ms"


def _in_unit(value: float, ladder: tuple, suffix: str = "") -> str:
    """`value` in the first unit of `ladder` ((name, scale), largest first) it reaches."""
    for unit, scale in ladder:
        if abs(value) >= scale or unit == ladder[-1][0]:
            return f"{value / scale:.3g} {unit}{suffix}"


def fmt_energy(kwh) -> str:
    """kWh in a readable unit (mWh for the tiny figures small models cost)."""
    if kwh is None or kwh != kwh:
        return "unavailable"
    return _in_unit(kwh * 1000, (("kWh", 1e3), ("Wh", 1.0), ("mWh", 1e-3), ("µWh", 1e-6)))


def fmt_co2(kg) -> str:
    if kg is None or kg != kg:
        return "unavailable"
    return _in_unit(kg, (("kg", 1.0), ("g", 1e-3), ("mg", 1e-6), ("µg", 1e-9)), " CO2eq")


def fmt_seconds(s) -> str:
    if s is None or s != s:
        return "unavailable"
    if s < 60:
        return f"{s:.2f} s" if s < 1 else f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def fmt_ratio(x) -> str:
    return "unavailable" if x is None or x != x else f"{x:.1f}x"


def fmt_time(t) -> str:
    if t is None or t != t:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def unavailable(what: str, reason: str | None) -> None:
    """A figure that could not be obtained: say so and why, never draw zeros."""
    st.info(f"**{what}** unavailable: {reason or 'no reason recorded'}")


def status_label(status: str) -> str:
    return f"{STATUS_ICON.get(status, '')} {status}"


def detail_link(run_id: int, label: str | None = None) -> None:
    st.page_link(PAGES["detail"], label=label or f"Open run #{run_id}", query_params={"run": str(run_id)}, icon=":material/search:")


def page_style() -> None:
    """The lab's small stylesheet (assets/style.css); every page calls this first."""
    _through_app_navigation()
    css = ASSETS / "style.css"
    if css.is_file():
        st.html(f"<style>{css.read_text()}</style>")


def _through_app_navigation() -> None:
    """Make a deep link on a freshly started server run through app.py's navigation.

    Streamlit treats an app with a `pages/` folder as an old-style multipage app until the
    entry point's `st.navigation` has run once in the process; until then a first visit to
    e.g. /compare runs pages/compare.py alone (no app navigation, wrong layout). Switching
    that mode off and rerunning sends the visit through app.py, which picks the same page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    first_run = not st.session_state.get("_lab_seen")  # a rerun later would drop a click
    st.session_state["_lab_seen"] = True
    if first_run and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


# ------------------------------------------------------------------------------- forms from Params


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


def parse_numbers(text: str, what: str, kind=float) -> list:
    """'2, 4, 8' -> [2.0, 4.0, 8.0]; a bad entry raises ConfigError naming it."""
    parts = [t for t in str(text).replace(";", ",").replace(" ", ",").split(",") if t.strip()]
    if not parts:
        raise ConfigError(f"{what}: give at least one value")
    out = []
    for t in parts:
        try:
            v = float(t)
        except ValueError:
            raise ConfigError(f"{what}: {t.strip()!r} is not a number") from None
        if kind is int:
            if not v.is_integer():
                raise ConfigError(f"{what}: {t.strip()!r} is not a whole number")
            v = int(v)
        out.append(v)
    return out


# ------------------------------------------------------------------------------- figures


def curves_figure(history: list[dict] | None = None, live: dict | None = None, title: str = ""):
    """Loss and validation accuracy side by side: from a finished run's per-epoch history, or
    from live curves (report.curves_from_events)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation accuracy"))
    if history:
        epochs = [h["epoch"] for h in history]
        skip = {"epoch", "val_accuracy", "lr", "elapsed"}
        names = [k for k in history[0] if k not in skip]
        for k in names:
            fig.add_trace(go.Scatter(x=epochs, y=[h.get(k) for h in history], mode="lines", name=k,
                                     line=dict(width=3 if k == "loss" else 1.5)), 1, 1)
        fig.add_trace(go.Scatter(x=epochs, y=[h["val_accuracy"] for h in history], mode="lines+markers",
                                 name="val accuracy", marker=dict(size=4)), 1, 2)
        fig.update_xaxes(title_text="epoch")
    for phase, c in (live or {}).items():
        fig.add_trace(go.Scatter(x=c["step"], y=c["loss"], mode="lines", name=f"{phase} loss"), 1, 1)
        fig.add_trace(go.Scatter(x=c["epoch"], y=c["val_accuracy"], mode="lines+markers", name=f"{phase} val accuracy"), 1, 2)
        fig.update_xaxes(title_text="step", row=1, col=1)
        fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), title=title or None,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def plot(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def runs_table(runs: list[dict]):
    """Run summaries as a display frame (status, progress, accuracy, timing, error)."""
    import pandas as pd

    from distill_core.report import progress_fraction, progress_text

    now = time.time()
    rows = []
    for r in runs:
        started, finished = r.get("started"), r.get("finished")
        took = (finished or now) - started if started else None
        rows.append({
            "id": r["id"], "run": r["label"], "status": status_label(r["status"]),
            "progress": progress_fraction(r["status"], r.get("progress")),
            "now": progress_text(r["status"], r.get("progress")) if r["status"] == "running" else "",
            "accuracy": r.get("accuracy"), "time": fmt_seconds(took) if took is not None else "",
            "error": (r.get("error") or "").splitlines()[0][:160] if r.get("error") else "",
            "detail": f"run?run={r['id']}",
        })
    frame = pd.DataFrame(rows, columns=["id", "run", "status", "progress", "now", "accuracy", "time", "error", "detail"])
    for col in ("now", "error"):  # only when some run has one
        if not frame[col].astype(bool).any():
            frame = frame.drop(columns=col)
    return frame


RUNS_COLUMNS = {
    "id": st.column_config.NumberColumn("id", format="%d", width="small"),
    "status": st.column_config.TextColumn("status", width=95),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent", width=110),
    "accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
    "run": st.column_config.TextColumn("run", width="large"),
    "time": st.column_config.TextColumn("time", help="training time so far, or the whole run's"),
    "detail": st.column_config.LinkColumn("detail", display_text="open", width="small"),
}


def show_runs_table(runs: list[dict], key: str | None = None, height: int | str = "auto") -> None:
    if not runs:
        st.caption("No runs yet.")
        return
    st.dataframe(runs_table(runs), hide_index=True, column_config=RUNS_COLUMNS, key=key, height=height, placeholder="")


# ------------------------------------------------------------------------------- models and uploads


CUSTOM = "custom: "


def model_options() -> list[str]:
    """Named sizes first, then every architecture with its own knobs ("custom: mlp")."""
    from distill_core.models import ARCHITECTURES, NAMED_SIZES

    return list(NAMED_SIZES) + [CUSTOM + a for a in ARCHITECTURES.names()]


def set_model_state(prefix: str, spec) -> None:
    """Put a model spec into a model_picker's session state (before it is drawn)."""
    from distill_core.models import ARCHITECTURES, NAMED_SIZES, normalise_spec

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


def model_picker(prefix: str, label: str, kind: str | None, default: str = "mlp-small") -> tuple[dict | None, list[str]]:
    """A named size or an architecture with its knobs (forms from the registry).

    Returns (normalised spec or None, error messages shown under the widgets)."""
    from distill_core.models import ARCHITECTURES, NAMED_SIZES, check_input_kind, describe_spec, normalise_spec

    key = f"{prefix}_choice"
    options = model_options()
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


def save_upload(uploaded, limit_mb: float, folder: str = "uploads") -> Path:
    """Write an uploaded file into <home>/uploads/ under a content-hashed name and return the
    path; DataError when it is empty or larger than the limit."""
    import hashlib
    import re

    from distill_core.errors import DataError

    data = uploaded.getvalue()
    if not data:
        raise DataError(f"{uploaded.name}: the file is empty")
    if len(data) > limit_mb * 1024 * 1024:
        raise DataError(f"{uploaded.name}: {len(data) / 1024 / 1024:.1f} MB, more than the {limit_mb:g} MB upload limit "
                        "(raise it on the Settings page)")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(uploaded.name).name).strip("._") or "upload"
    target = home() / folder / f"{hashlib.sha256(data).hexdigest()[:12]}-{safe}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target


@st.cache_data(show_spinner=False, max_entries=256)
def model_summary(spec_json: str, input_shape: tuple, num_classes: int) -> dict:
    """report.model_summary, cached per spec and input."""
    from distill_core.report import model_summary as summary

    return summary(json.loads(spec_json), tuple(input_shape), num_classes)


@st.cache_data(show_spinner="Checking the experiment…", max_entries=32)
def expand_spec(spec_json: str) -> dict:
    """{"runs": the run configs an experiment expands into} or {"error": message}
    (config.expand loads the data set, so an answer, good or bad, is cached)."""
    from distill_core.config import ExperimentSpec, expand

    try:
        return {"runs": expand(ExperimentSpec.from_dict(json.loads(spec_json)))}
    except DistillError as exc:
        return {"error": str(exc)}
