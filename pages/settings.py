"""Settings: device, concurrency, threads, CodeCarbon country, home folder, upload limit.

Saved in <home>/settings.json. Device and threads apply to runs launched from now on; workers,
threads and country apply when the worker pool (re)starts.
"""
import os
import signal
from pathlib import Path

import streamlit as st

from distill_core.errors import DistillError
from pages import common as c

c.page_style()
st.title("Settings")
s = c.store()
current = c.load_settings()

# -- home folder ---------------------------------------------------------------------------------
st.subheader("Home folder")
st.markdown(f"Runs, weights, exports and this page's settings live in `{s.home}`.")


def switch_home() -> None:
    raw = st.session_state.get("set_home", "").strip()
    if not raw:
        st.session_state["home_note"] = ("error", "give a folder")
        return
    path = Path(raw).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        st.session_state["home_note"] = ("error", f"{path}: cannot use this folder ({exc.strerror or exc})")
        return
    st.session_state["home_override"] = str(path.resolve())
    st.session_state["home_note"] = ("success", f"This browser session now uses {path.resolve()}.")


st.session_state.setdefault("set_home", str(s.home))
a, b = st.columns([4, 1], vertical_alignment="bottom")
a.text_input("Use another home folder for this session", key="set_home",
             help="to make it the default, start the app with DISTILL_HOME=/that/folder")
b.button("Switch", on_click=switch_home, key="set_home_go")
note = st.session_state.pop("home_note", None)
if note:
    getattr(st, note[0])(note[1])

# -- settings ------------------------------------------------------------------------------------
st.subheader("Training and measurement")
params = c.settings_params()
if "settings_loaded_from" not in st.session_state or st.session_state["settings_loaded_from"] != str(s.home):
    c.set_param_values(params, "set", current)  # fill the form from this home's settings.json
    st.session_state["settings_loaded_from"] = str(s.home)

try:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
        ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
except Exception:  # torch missing a backend module
    devices = ["cpu"]
st.caption(f"This machine: {os.cpu_count()} CPU cores; devices available to torch: {', '.join(devices)}.")
LABELS = {"device": "Device", "workers": "Workers (runs side by side)", "threads": "Threads per worker",
          "country": "CodeCarbon country", "upload_mb": "Upload limit (MB)", "autostart": "Start workers automatically",
          "refresh_seconds": "Refresh interval while runs are active (s)"}
values, errors = c.param_form(params, "set", "settings", columns=3, labels=LABELS)
if not errors:
    try:
        c.validate_settings(values)
    except DistillError as exc:
        errors["country"] = str(exc)
        st.error(str(exc), icon=":material/error:")
if values.get("device") not in (None, "auto", *devices):
    st.warning(f"{values['device']} is not available on this machine: runs asking for it will fail.")

if st.button("Save settings", type="primary", disabled=bool(errors), key="set_save"):
    saved = c.save_settings(values)
    st.success(f"Saved to {s.home / c.SETTINGS_FILE}.")
    current = saved

# -- worker pool ---------------------------------------------------------------------------------
st.subheader("Worker pool")
pools = s.live_pools()
if pools:
    p = pools[0]
    info = p.get("info") or {}
    st.markdown(f"Running: pool pid {p['pid']}, {info.get('workers', '?')} worker(s), {info.get('threads', '?')} thread(s) each.")
    if info.get("workers") not in (None, current["workers"]) or (current["threads"] and info.get("threads") != current["threads"]):
        st.info("The pool runs with other settings than the saved ones; restart it to apply them.")
    running = s.queue_state()["running"]
    from distill_core.jobs.store import HOST

    if p.get("host") != HOST:
        st.caption(f"This pool runs on {p.get('host')}; restart it there.")
    elif st.button("Restart the pool", key="set_restart",
                 help="runs in progress stop and are marked interrupted (retry them on the Runs page)" if running else None):
        try:
            os.kill(int(p["pid"]), signal.SIGTERM)  # the pool stops its workers and marks their runs interrupted
        except OSError as exc:
            st.error(f"could not stop pool {p['pid']}: {exc}")
        else:
            st.success("Stopping the pool; it starts again with the saved settings when runs are launched.")
else:
    st.markdown("No pool is running. It starts when you launch runs"
                + (" (autostart is on)." if current["autostart"] else "; autostart is off, start it here."))
    if st.button("Start the pool now", key="set_start"):
        c.start_workers({**current, "autostart": True})
        st.success("Starting the worker pool.")
