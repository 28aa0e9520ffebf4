"""Budget-driven search: the most accurate student of a teacher that fits a device.

Optuna (multi-objective TPE or NSGA-II, with the budget as constraints) proposes students from a
space built from the registries; each trial is an ordinary run in the store, so it shows on
Runs, Run detail and Compare and runs on whatever executor serves the queue.

    spec.py     SearchSpec (what the user asks for) and make_plan (the same, checked)
    space.py    the search space: families, size knobs, methods, temperature, alpha, lr
    costs.py    architecture-only costs measured before training; the budget as constraints
    pruning.py  stopping a trial that trails the finished trials that cost no more
    driver.py   the process that runs a search (ask, reject, queue, prune, tell, twins)
    study.py    the Optuna studies in <home>/search.sqlite
    report.py   what a search found: trials, front, the best student and its scratch twin
    cli.py      `python -m distill_core search`
"""
