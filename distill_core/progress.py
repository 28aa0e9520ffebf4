"""A run's progress from its status and progress events (what the training loop reports)."""
from __future__ import annotations

from .constants import DONE, RUNNING


def progress_fraction(status: str, event: dict | None) -> float:
    """How far a run is, 0..1, from its status and latest progress event."""
    if status == DONE:
        return 1.0
    if not event or status != RUNNING:
        return 0.0
    if event.get("phase") == "measuring":  # trained: its figures and exports are being made
        return 0.99
    if event.get("steps"):
        return max(0.0, min(0.99, event.get("step", 0) / event["steps"]))
    if event.get("epochs"):
        return max(0.0, min(0.99, event.get("epoch", 0) / event["epochs"]))
    return 0.0


def progress_text(status: str, event: dict | None) -> str:
    """A short line for a run's progress: 'student epoch 12/30, val 0.953'."""
    if status != RUNNING:
        return status
    if not event or event.get("phase") == "start":
        return "starting"
    if event.get("phase") == "retry":  # its node died: the executor runs it again elsewhere
        return f"running again: {event.get('reason', '')}".rstrip(": ")
    bits = [str(event.get("phase", ""))]
    if event.get("epochs"):
        bits.append(f"epoch {event.get('epoch', 0)}/{event['epochs']}")
    if event.get("val_accuracy") is not None:
        bits.append(f"val {event['val_accuracy']:.3f}")
    return " ".join(b for b in bits if b)


def curves_from_events(events: list[dict]) -> dict:
    """Live curves from progress events: loss per step and validation accuracy per epoch,
    separately for each phase (a student run may train its teacher first)."""
    out: dict[str, dict] = {}
    for e in events:
        phase = e.get("phase")
        if phase in (None, "start") or "step" not in e:
            continue
        c = out.setdefault(phase, {"step": [], "loss": [], "epoch": [], "val_accuracy": []})
        losses = e.get("losses") or {}
        if "loss" in losses:
            c["step"].append(e["step"])
            c["loss"].append(losses["loss"])
        if e.get("epoch_end") and e.get("val_accuracy") is not None:
            c["epoch"].append(e["epoch"])
            c["val_accuracy"].append(e["val_accuracy"])
    return out
