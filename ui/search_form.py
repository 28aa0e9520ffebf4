"""The Search page's form: data set, teacher, budget, objectives, space, trials and time, built
into a `SearchSpec` and checked by `make_plan` (cached per spec), with each message next to the
section it concerns."""
from __future__ import annotations

import json

import streamlit as st
import yaml

from distill_core import teachers
from distill_core.data import DATASETS
from distill_core.errors import DistillError
from distill_core.measure.budgets import PROFILE_PARAMS, SIZE_OF, load_profiles
from distill_core.models import ARCHITECTURES, is_network
from distill_core.search.costs import OBJECTIVES, SIZE_COST
from distill_core.search.space import default_methods
from distill_core.search.spec import SEARCH_PARAMS, SearchSpec, check_time_limit, make_plan
from distill_core.train_params import TRAIN_PARAMS

from . import forms, state
from .format import fmt_pct, fmt_time

NEW, REUSE = "Train a new teacher", "Reuse a trained teacher"
CUSTOM = "custom limits"
# A ConfigError's first word -> the section of the form its message is shown in.
SECTIONS = {"name": "name", "budget": "budget", "objectives": "budget", "space": "space", "time_limit": "trials",
            "search": "trials", "training": "trials"}


@st.cache_data(show_spinner="Checking the search…", max_entries=32)
def _check(spec_json: str, home: str) -> dict:
    try:
        plan = make_plan(SearchSpec.from_dict(json.loads(spec_json)), home)
        return {"space": plan.space.as_given(), "summary": plan.space.size(), "notes": list(plan.space.notes)}
    except DistillError as exc:
        return {"error": str(exc)}


def section_of(message: str) -> str:
    """Which part of the form a ConfigError is about (its first word); else the data and teacher."""
    return SECTIONS.get(message.split(":", 1)[0].strip(), "teacher")


def form() -> tuple[SearchSpec | None, dict, dict]:
    """Draw the form. Returns (the spec, or None when something is wrong; the problems by
    section, each already shown in its section; the checked space, or {})."""
    problems: dict[str, list[str]] = {}
    slots = {}
    home = str(state.home())
    c1, c2 = st.columns(2)
    name = c1.text_input("Name", key="sr_name", placeholder="search-N", help="letters, digits, '.', '_' and '-'")
    dataset = c2.selectbox("Data set", [n for n in DATASETS.names() if n not in ("csv", "npz", "images")], key="sr_dataset")
    kind = DATASETS.get(dataset).extra.get("kind")
    slots["name"] = st.empty()

    st.markdown("**Teacher** (trained or loaded once, then every trial learns from it; a teacher of another kind, an ONNX model, a file of outputs or an ensemble, made on New experiment can be reused here)")
    mode = st.radio("Teacher", [NEW, REUSE], key="sr_teacher_mode", horizontal=True, label_visibility="collapsed")
    teacher, teacher_train, knobs, ensemble = None, None, {}, {}
    if mode == NEW:
        teacher, errs = forms.model_picker("sr_t", "Teacher model", kind, default="cnn-large" if kind == "image" else "mlp-medium")
        problems.setdefault("teacher", []).extend(errs)
    else:
        found = teachers.reusable(home, dataset=dataset)
        if not found:
            problems.setdefault("teacher", []).append(f"no trained teacher for {dataset} yet: train a new one")
            st.info(problems["teacher"][-1])
        else:
            by_hash = {t["hash"]: t for t in found}
            pick = st.selectbox("Trained teacher", list(by_hash), key="sr_t_reuse",
                                format_func=lambda h: f"{by_hash[h]['model']} ({by_hash[h]['kind']}) · test accuracy "
                                                      f"{fmt_pct(by_hash[h]['test_accuracy'])} · {fmt_time(by_hash[h]['created'])}")
            fields = by_hash[pick]["spec_fields"]
            teacher, teacher_train, knobs = fields.get("teacher", SearchSpec.teacher), fields["teacher_train"], fields["dataset_knobs"]
            if fields.get("teachers"):  # an ensemble: its members and their rule
                ensemble = {"teachers": fields["teachers"], "ensemble": fields["ensemble"]}
    slots["teacher"] = st.empty()

    st.markdown("**Budget and objectives**")
    profiles = load_profiles(home)
    b1, b2 = st.columns(2)
    choice = b1.selectbox("Deployment budget", [*profiles, CUSTOM], key="sr_budget",
                          format_func=lambda p: p if p == CUSTOM else f"{p}: {profiles[p]['description']}")
    budget = choice
    if choice == CUSTOM:
        limits, errs = forms.param_form([p for p in PROFILE_PARAMS if p.name != "description"], "sr_bud", "budget", columns=4)
        problems.setdefault("budget", []).extend(errs.values())
        budget = {"name": "custom", **limits}
    size_of = (budget if isinstance(budget, dict) else profiles[choice]).get("size_of", "int8")
    st.session_state.setdefault("sr_objectives", [SIZE_COST.get(size_of, "int8_bytes")])
    objectives = b2.multiselect("Minimise (one or two costs, beside maximising validation accuracy)", list(OBJECTIVES),
                                key="sr_objectives", max_selections=2, format_func=lambda k: OBJECTIVES[k].title)
    st.caption(f"Sizes are {SIZE_OF.get(size_of, size_of)} files; every cost is measured on the untrained "
               "architecture before a trial trains, so a candidate over the budget is rejected without training.")
    slots["budget"] = st.empty()

    st.markdown("**Space** (families and methods from the registries; narrow or fix any knob below)")
    s1, s2 = st.columns(2)
    archs = [e.name for e in ARCHITECTURES if kind in e.extra["kinds"] and is_network(e.name)]
    families = s1.multiselect("Student families", archs, default=archs, key=f"sr_families_{kind}")
    methods = s2.multiselect("Methods", default_methods(), default=default_methods(), key="sr_methods")
    raw = st.text_area("Narrow or fix knobs (YAML, optional)", key="sr_space", height=90,
                       placeholder="students: {mlp: {hidden: {depth: [1, 2], width: [16, 256]}}}\ntemperature: [1, 8]\nlr: 0.002",
                       help="a number fixes a knob, [low, high] is a range, {choices: [...]} a list; see docs/guide.md")
    space = {}
    try:
        given = yaml.safe_load(raw) if raw.strip() else {}
        if not isinstance(given, dict):
            raise DistillError(f"space: expected a mapping, got {type(given).__name__}")
        space = dict(given)
    except (yaml.YAMLError, DistillError) as exc:
        problems.setdefault("space", []).append(f"space: not usable YAML: {exc}" if isinstance(exc, yaml.YAMLError) else str(exc))
    space.setdefault("students", {f: None for f in families})
    space.setdefault("methods", list(methods))
    slots["space"] = st.empty()

    st.markdown("**Trials and training**")
    values, errs = forms.param_form(SEARCH_PARAMS, "sr", "search", columns=3)
    problems.setdefault("trials", []).extend(errs.values())
    t1, t2 = st.columns([1, 2])
    limit = t1.text_input("Time limit (minutes; empty: none)", key="sr_time", help="no trial starts after it")
    try:
        check_time_limit(limit)
    except DistillError as exc:
        problems.setdefault("time_limit", []).append(str(exc))
        t1.error(str(exc), icon=":material/error:")
    with t2:
        train, errs = forms.param_form([p for p in TRAIN_PARAMS if p.name in ("epochs", "batch_size", "lr")], "sr_tr",
                                       "training", columns=3, labels={"lr": "learning rate (the centre of its range)"})
    problems.setdefault("trials", []).extend(errs.values())
    slots["trials"] = st.empty()
    if problems.get("space"):
        slots["space"].error("\n\n".join(problems["space"]), icon=":material/error:")
    if any(problems.values()):
        return None, problems, {}
    spec = SearchSpec(name=name.strip(), dataset=dataset, dataset_knobs=knobs, teacher=teacher, teacher_train=teacher_train,
                      **ensemble, train=train, space=space, budget=budget, objectives=objectives, time_limit=check_time_limit(limit),
                      **values)
    checked = _check(json.dumps(spec.to_dict(), sort_keys=True, default=str), home)
    if "error" in checked:
        where = section_of(checked["error"])
        problems.setdefault(where, []).append(checked["error"])
        slots[where].error(checked["error"], icon=":material/error:")
        return None, problems, {}
    return spec, problems, checked
