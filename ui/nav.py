"""Page addresses, links between pages, and the set-up every page makes first."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
PAGES = {  # short name -> page file, for st.page_link and st.switch_page (app.py registers them)
    "home": "pages/home.py",
    "new": "pages/new_experiment.py",
    "runs": "pages/runs.py",
    "detail": "pages/run_detail.py",
    "compare": "pages/compare.py",
    "search": "pages/search.py",
    "learn": "pages/learn.py",
    "settings": "pages/settings.py",
}


def page_setup() -> None:
    """Every page calls this first: the first-visit routing fix, then the lab's stylesheet."""
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
    (tests/test_browser.py checks this on a fresh server.)
    """
    first_run = not st.session_state.get("_lab_seen")  # a rerun later would drop a click
    st.session_state["_lab_seen"] = True
    if first_run and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def detail_link(run_id: int, label: str | None = None) -> None:
    st.page_link(PAGES["detail"], label=label or f"Open run #{run_id}", query_params={"run": str(run_id)},
                 icon=":material/search:")
