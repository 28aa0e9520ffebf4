"""Distillation Lab dashboard: `streamlit run app.py`. This file only declares the pages;
each page reads the store, draws and submits (see pages/)."""
import streamlit as st

st.set_page_config(page_title="Distillation Lab", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/new_experiment.py", title="New experiment", icon=":material/science:", url_path="new"),
    st.Page("pages/runs.py", title="Runs", icon=":material/list_alt:", url_path="runs"),
    st.Page("pages/run_detail.py", title="Run detail", icon=":material/search:", url_path="run"),
    st.Page("pages/compare.py", title="Compare", icon=":material/balance:", url_path="compare"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", url_path="learn"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:", url_path="settings"),
]

st.navigation(pages).run()
