"""Distillation Lab dashboard: `streamlit run app.py`. This file only declares the pages; each
page reads the store, draws and submits (see pages/).

`streamlit run` first imports this file as a module to find `app`, serves it, and then runs the
file as each visit's script (as `__main__`). The server's start-up hook warms the pages' imports
and first-use costs in the background (ui/warmup.py), so the first visitor does not pay for them.
"""
import streamlit as st

from ui import warmup

if __name__ != "__main__":  # imported by `streamlit run` (or uvicorn): the server
    app = st.App(__file__, lifespan=warmup.lifespan)
else:  # a visit
    # Each page's address is its file name (/new_experiment, /run_detail?run=12): a first visit to
    # such a link on a freshly started server then finds the same page (see ui/nav.py).
    st.set_page_config(page_title="Distillation Lab", page_icon=":material/science:", layout="wide")
    pages = [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/new_experiment.py", title="New experiment", icon=":material/science:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:"),
        st.Page("pages/run_detail.py", title="Run detail", icon=":material/search:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/balance:"),
        st.Page("pages/search.py", title="Search", icon=":material/travel_explore:"),
        st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
        st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
    ]
    try:
        st.navigation(pages).run()
    finally:  # also when the page stops or reruns (Streamlit raises to do that)
        warmup.page_drawn()  # the server's background warm-up waits for the first page (ui/warmup.py)
