"""Run detail's Files tab: a download button for each file the run folder holds, the model card,
and the exports made on demand (the .pt2 program: measure/on_demand.py)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from distill_core import paths
from distill_core.constants import DONE
from distill_core.errors import DistillError
from distill_core.jobs import queue

from . import state
from .format import fmt_bytes, unavailable

FILES = [  # what a run folder may hold, as the page offers it
    (paths.ONNX, "ONNX model (fp32)", "application/octet-stream"),
    (paths.INT8, "ONNX model (int8, deployed)", "application/octet-stream"),
    (paths.int8_variant("static"), "ONNX model (static int8, not deployed)", "application/octet-stream"),
    (paths.int8_variant("dynamic"), "ONNX model (dynamic int8, not deployed)", "application/octet-stream"),
    (paths.WEIGHTS, "weights (.safetensors)", "application/octet-stream"),
    (paths.PT2, "torch.export program (.pt2)", "application/octet-stream"),
    (paths.CARD_MD, "model card (Markdown)", "text/markdown"),
    (paths.CARD_JSON, "model card (JSON)", "application/json"),
    (paths.CONFIG, "run config (JSON)", "application/json"),
    (paths.RESULT, "full result (JSON)", "application/json"),
    (paths.EMISSIONS, "CodeCarbon log (CSV)", "text/csv"),
]

def make_pt2_button(run: dict) -> None:
    """A torch.export program is made on demand (measure.pt2 is off for sweeps' sake)."""
    cols = st.columns([2, 5], vertical_alignment="center")
    dynamic = cols[1].checkbox("any batch size (about 3x slower to make)", key="pt2_dynamic")
    if cols[0].button("Make the .pt2 program", key="make_pt2", icon=":material/build:"):
        try:
            with st.spinner("Exporting with torch.export..."):
                pt2 = queue.make_pt2(state.store(), run["id"], dynamic)
        except DistillError as exc:
            st.error(str(exc))
            return
        if pt2.get("ok"):
            st.rerun()
        st.error(f"torch.export could not export this model: {pt2.get('reason')}")


def files(run: dict, result: dict, home: Path) -> None:
    folder = Path(run.get("folder") or paths.run_folder(home, run["hash"]))
    present = [(f, what, mime) for f, what, mime in FILES if (folder / f).is_file()]
    if not present:
        unavailable("Files", f"nothing in {folder} (deleted?)")
    for f, what, mime in present:
        path = folder / f
        cols = st.columns([2, 5], vertical_alignment="center")
        cols[0].download_button(f"Download {what}", data=partial(path.read_bytes), file_name=f"run{run['id']}-{f}", mime=mime,
                                on_click="ignore", key=f"dl_{f}", icon=":material/download:")
        cols[1].caption(fmt_bytes(path.stat().st_size))
    for what, why in ((result.get("measure") or {}).get("export_errors") or {}).items():
        if why:
            st.warning(f"{what} export failed: {why}")
    if run["status"] == DONE and (folder / paths.WEIGHTS).is_file() and not (folder / paths.PT2).is_file():
        make_pt2_button(run)
    card = folder / paths.CARD_MD
    if card.is_file():
        with st.expander("Model card"):
            st.markdown(card.read_text(encoding="utf-8"))
    st.caption(f"Folder: `{folder}`")
