"""Registries of data sets, architectures and methods.

Every entry declares its knobs as `Param`s (default, range, help). The CLI lists them and the
dashboard builds its forms from them, so adding an entry needs no change anywhere else.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One knob of a registry entry."""

    name: str
    default: Any
    help: str = ""
    kind: str = "float"  # float | int | bool | str | choice | ints (list of ints)
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    # A rule beyond type and range: takes the typed value, returns it (normalised) or raises
    # ValueError with the reason, e.g. "must be a 3-letter ISO code ...".
    check: Callable[[Any], Any] | None = None

    def coerce(self, value: Any, owner: str = "") -> Any:
        """Return `value` converted to this knob's type, or raise ConfigError saying why."""
        where = f"{owner}: " if owner else ""
        try:
            if self.kind == "float":
                value = float(value)
            elif self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = value.lower() in ("true", "1", "yes")
                else:
                    value = bool(value)
            elif self.kind == "ints":
                if isinstance(value, str):
                    # "64,32", "64x32" and "64-32" all mean [64, 32]; "64, -3" keeps its minus sign.
                    value = [int(v) for v in re.split(r"[,x\s]+|(?<=\d)-(?=\d)", value) if v.strip()]
                value = [int(v) for v in value]
            elif self.kind in ("str", "choice"):
                value = str(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}{self.name} must be of type {self.kind}, got {value!r}") from None
        if self.kind == "choice" and value not in self.choices:
            raise ConfigError(f"{where}{self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        values = value if self.kind == "ints" else [value]
        if self.kind in ("float", "int", "ints"):
            if self.kind == "float" and value != value:  # NaN
                raise ConfigError(f"{where}{self.name} must be a number, got NaN")
            for v in values:
                if self.min is not None and v < self.min:
                    raise ConfigError(f"{where}{self.name} must be >= {self.min}, got {v}")
                if self.max is not None and v > self.max:
                    raise ConfigError(f"{where}{self.name} must be <= {self.max}, got {v}")
        if self.check is not None:
            try:
                value = self.check(value)
            except ValueError as exc:
                raise ConfigError(f"{where}{self.name} {exc}") from None
        return value

    def __get__(self, obj, owner=None):
        """Declared as a class attribute (`temperature = TEMPERATURE` in a Method), a Param reads
        an instance's value from its validated `knobs`; on the class it is the Param itself."""
        if obj is None:
            return self
        return obj.knobs[self.name]

    def describe(self) -> str:
        rng = ""
        if self.choices:
            rng = f" one of {{{', '.join(map(str, self.choices))}}}"
        elif self.min is not None or self.max is not None:
            rng = f" in [{self.min if self.min is not None else ''}, {self.max if self.max is not None else ''}]"
        return f"{self.name}={self.default!r}{rng}: {self.help}"


def coerce_knobs(params: tuple[Param, ...] | list[Param], given: dict, owner: str) -> dict:
    """Fill defaults, convert types, check ranges; unknown knobs are an error naming the known ones."""
    known = {p.name: p for p in params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        names = ", ".join(known) or "none"
        raise ConfigError(f"{owner}: unknown setting(s) {', '.join(unknown)}; known: {names}")
    return {name: p.coerce(given.get(name, p.default), owner) for name, p in known.items()}


@dataclass
class Entry:
    """A registry entry: what the CLI lists and the dashboard shows."""

    name: str
    description: str
    params: tuple[Param, ...] = ()
    factory: Callable[..., Any] | None = None
    extra: dict = field(default_factory=dict)


T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, in insertion order, with a helpful error for unknown names."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.what} {name!r}; available: {', '.join(self._items)}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
