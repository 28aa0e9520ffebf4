"""Distillation Lab dashboard: `streamlit run app.py`. This file only declares the pages;
each page reads the store, draws and submits (see pages/)."""
from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Distillation Lab", page_icon=":material/science:", layout="wide")

here = Path(__file__).parent
pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/new_experiment.py", title="New experiment", icon=":material/science:", url_path="new"),
    st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs"),
    st.Page("pages/run_detail.py", title="Run detail", icon=":material/search:", url_path="run"),
]
# Pages built separately join the navigation once their files exist.
for file, title, icon, path in (("compare.py", "Compare", ":material/balance:", "compare"), ("learn.py", "Learn", ":material/school:", "learn")):
    if (here / "pages" / file).is_file():
        pages.append(st.Page(f"pages/{file}", title=title, icon=icon, url_path=path))
pages.append(st.Page("pages/settings.py", title="Settings", icon=":material/settings:", url_path="settings"))

st.navigation(pages).run()
