"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import re
from pathlib import Path


def write_section(path: str | Path, title: str, body: str) -> None:
    """Add or replace the `## title` section of a Markdown file, leaving the others alone."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured by the scripts in bench/; each section names its machine.\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text)


def cpu_model() -> str:
    """The CPU's model name, for the 'machine' line of each benchmark section."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
