"""Streamlit helpers the pages share, by purpose:

    nav       page addresses and links, and the one set-up call every page makes first
    state     this session's home folder, the store, settings, cached reads, submitting
    forms     widgets built from registry Params, model pickers, uploads
    format    numbers, bytes, times and statuses as text
    figures   the figures and tables more than one page draws

Page-specific drawing that would make a page script long lives beside these, named for its
page (compare_figures, learn_figures, run_tabs, experiment_form). Nothing here trains or
decides: what a page computes comes from distill_core.
"""
