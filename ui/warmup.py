"""Warm the dashboard's first-use costs when the server starts, once per server process.

A page's first render pays for what nothing has used yet: importing torch, pandas, Plotly and the
lab's modules (every page), scikit-learn (New experiment's digits preview), the first FLOP count
(torch's FlopCounterMode), Plotly's figure classes. app.py's `st.App` runs `lifespan` when the
server starts: it imports the modules every page needs before the server takes its first visitor
(about as long as the first page would otherwise have waited), then does the rest in a daemon
thread while the visitor reads the first page, so the next page they open finds it done.
That thread starts its work once the first page is drawn (app.py calls `page_drawn`), or after
FIRST_VISIT_WAIT seconds without a visit: running beside the first page's script, it held the
GIL for its imports and the first page took 1.5-1.7 s instead of 1.1 s on a 2-core Xeon.
It never raises into a page.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import threading

_started = False
_lock = threading.Lock()
_first_page = threading.Event()  # set when a visit's page script has finished
FIRST_VISIT_WAIT = 10.0  # seconds the background work waits for the first page before it starts anyway

# What the pages import at their top (the scripts themselves are run per visit, not imported).
PAGE_MODULES = ("ui.state", "ui.figures", "ui.format", "ui.forms", "ui.nav", "ui.experiment_form", "ui.run_tabs", "ui.run_files",
                "ui.compare_figures", "ui.learn_figures", "ui.learn_jobs", "distill_core.analysis",
                "distill_core.estimates", "distill_core.teaching", "distill_core.presets", "distill_core.grids")


def import_page_modules() -> None:
    for name in PAGE_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the page that needs it will show the error
            logging.getLogger(__name__).debug("warm-up import of %s failed", name, exc_info=True)


def _steps():
    def digits_preview():  # the New experiment page opens on digits: scikit-learn's loader
        from distill_core.previews import data_preview

        data_preview("digits", {}, per_class=0)

    def flop_count():  # the New experiment page's model table counts FLOPs
        from distill_core.config import ExperimentSpec
        from distill_core.estimates import model_summary

        spec = ExperimentSpec()
        for model in [spec.teacher, *spec.students]:
            model_summary(model, (1, 8, 8), 10)

    def plotly_figure():  # Plotly builds its validators on the first figure
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        make_subplots(rows=1, cols=2).add_trace(go.Scatter(x=[0, 1], y=[0, 1]), 1, 1).to_plotly_json()

    return {"digits preview": digits_preview, "FLOP count": flop_count, "plotly": plotly_figure}


def page_drawn() -> None:
    """A visit's page script has finished (app.py): the background warm-up may start now."""
    _first_page.set()


def _run() -> None:
    _first_page.wait(FIRST_VISIT_WAIT)  # not beside the first page's script: it would slow that page
    for name, step in _steps().items():
        try:
            step()
        except Exception:  # a warm-up that fails costs the page its first-use time, nothing more
            logging.getLogger(__name__).debug("warm-up step %s failed", name, exc_info=True)


def start() -> bool:
    """Start the warm-up thread unless it has started in this process; True if this call did."""
    global _started
    with _lock:
        if _started:
            return False
        _started = True
    threading.Thread(target=_run, name="distill-warmup", daemon=True).start()
    return True


@contextlib.asynccontextmanager
async def lifespan(app):
    """st.App's start-up hook (app.py): the pages' imports, then the rest in the background."""
    import_page_modules()
    start()
    yield
