"""Settings: device, concurrency, threads, CodeCarbon country, home folder, upload limit, and
who trains the runs (local processes or a Ray cluster, with a connection check).

Saved in <home>/settings.json. Device and threads apply to runs launched from now on; workers,
threads, country and the executor are the worker pool's arguments when it (re)starts.
"""
import os

import streamlit as st

from distill_core import paths, settings as lab_settings
from distill_core.constants import RUNNING
from distill_core.engine.device import available_devices
from distill_core.errors import DistillError
from distill_core.jobs.executor import stop_pool
from distill_core.jobs.host import HOST
from distill_core.jobs.ray_executor import check_connection
from distill_core.jobs.workers import live_pools
from ui import forms, nav, state

nav.page_setup()
st.title("Settings")
s = state.store()
current = state.settings()

# -- home folder ---------------------------------------------------------------------------------
st.subheader("Home folder")
st.markdown(f"Runs, weights, exports and this page's settings live in `{s.home}`.")


def switch_home() -> None:
    try:
        path = paths.usable_home(st.session_state.get("set_home", ""))
    except DistillError as exc:
        st.session_state["home_note"] = ("error", str(exc))
        return
    st.session_state["home_override"] = str(path)
    st.session_state["home_note"] = ("success", f"This browser session now uses {path}.")


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
params = lab_settings.settings_params()
if "settings_loaded_from" not in st.session_state or st.session_state["settings_loaded_from"] != str(s.home):
    forms.set_param_values(params, "set", current)  # fill the form from this home's settings.json
    st.session_state["settings_loaded_from"] = str(s.home)

devices = available_devices()
st.caption(f"This machine: {os.cpu_count()} CPU cores; devices available to torch: {', '.join(devices)}.")
LABELS = {"device": "Device", "workers": "Workers (runs side by side)", "threads": "Threads per worker",
          "country": "CodeCarbon country", "upload_mb": "Upload limit (MB)", "autostart": "Start workers automatically",
          "refresh_seconds": "Refresh interval while runs are active (s)", "executor": "Executor",
          "ray_address": "Ray cluster address", "ray_retries": "Retries when a node dies", "ray_gpus": "GPUs per run"}
executor_names = tuple(p.name for p in lab_settings.EXECUTOR_PARAMS)
values, errors = forms.param_form(params, "set", "settings", skip=executor_names, columns=3, labels=LABELS)
if values.get("device") not in (None, "auto", *devices):
    st.warning(f"{values['device']} is not available on this machine: runs asking for it will fail.")

st.subheader("Executor")
st.caption("Local: worker processes on this machine. Ray: the same queue served by a Ray cluster; the data, "
           "teachers and results travel through Ray (see docs/cluster.md). With Ray, *workers* is the CPU count of "
           "a local instance and *threads* the CPUs of each run.")
more, more_errors = forms.param_form(lab_settings.EXECUTOR_PARAMS, "set", "settings", columns=4, labels=LABELS)
values, errors = {**values, **more}, {**errors, **more_errors}
if values.get("executor") == "ray" and "ray_address" in values:
    if st.button("Check the connection", key="set_ray_check",
                 help="connects from a separate process; an empty address starts a local Ray instance for the check"):
        with st.spinner("Connecting to Ray…"):
            try:
                cluster = check_connection(values["ray_address"], values.get("workers"))
            except DistillError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                st.success(f"Ray {cluster['ray']}: {cluster['alive']} live node(s), {cluster['cpus']:g} CPU(s), "
                           f"{cluster['gpus']:g} GPU(s).")
                st.dataframe(cluster["nodes"], hide_index=True, key="set_ray_nodes")

if st.button("Save settings", type="primary", disabled=bool(errors), key="set_save"):
    current = lab_settings.save_settings(s.home, values)
    st.success(f"Saved to {s.home / paths.SETTINGS}.")

# -- worker pool ---------------------------------------------------------------------------------
st.subheader("Worker pool")
pools = live_pools(s)
if pools:
    p = pools[0]
    info = p.get("info") or {}
    if info.get("executor") == "ray":
        st.markdown(f"Running: Ray driver pid {p['pid']} serving {info.get('address') or 'a local Ray instance'}: "
                    f"{info.get('nodes', '?')} node(s), {info.get('cpus', 0):g} CPU(s), {info.get('gpus', 0):g} GPU(s) "
                    f"when it started; {info.get('threads', 1)} CPU(s) per run.")
    else:
        st.markdown(f"Running: pool pid {p['pid']}, {info.get('workers', '?')} worker(s), "
                    f"{info.get('threads', '?')} thread(s) each.")
    if not lab_settings.pool_matches(info, current):
        st.info("The pool runs with other settings than the saved ones; restart it to apply them.")
    running = s.queue_state()[RUNNING]
    if p.get("host") != HOST:
        st.caption(f"This pool runs on {p.get('host')}; restart it there.")
    elif st.button("Restart the pool", key="set_restart",
                   help="runs in progress stop and are marked interrupted (retry them on the Runs page)" if running else None):
        try:
            stop_pool(p["pid"])
        except OSError as exc:
            st.error(f"could not stop pool {p['pid']}: {exc}")
        else:
            st.success("Stopping the pool; it starts again with the saved settings when runs are launched.")
else:
    st.markdown("No pool is running. It starts when you launch runs"
                + (" (autostart is on)." if current["autostart"] else "; autostart is off, start it here."))
    if st.button("Start the pool now", key="set_start"):
        state.start_workers({**current, "autostart": True})
        st.success("Starting the worker pool.")
