"""Errors a user can cause. Each carries a message meant to be shown as it is."""


class DistillError(ValueError):
    """Base class: a problem with the user's input, not a bug in the program."""


class DataError(DistillError):
    """A data set or data file cannot be used (says which file and why)."""


class ModelError(DistillError):
    """An architecture, its knobs or a checkpoint do not fit."""


class ConfigError(DistillError):
    """An experiment description is invalid."""


class Cancelled(Exception):
    """Raised inside training when the caller asked to stop."""
