"""Read the README's code blocks by section and run them as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    """The text of the README section whose heading is ``title`` (up to the next heading of the
    same or a higher level)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^(#+) {re.escape(title)}\n", text, re.MULTILINE)
    if match is None:
        raise LookupError(f"README.md has no section {title!r}")
    level = len(match.group(1))
    rest = text[match.end() :]
    # A `# comment` line inside a code block is no heading: skip fenced blocks.
    outside = _FENCE.sub(lambda block: re.sub(r"[^\n]", " ", block.group(0)), rest)
    end = re.search(rf"^#{{1,{level}}} ", outside, re.MULTILINE)
    return rest[: end.start()] if end else rest


def code_blocks(title: str, language: str = "python") -> list[str]:
    """The fenced code blocks of one language in a README section, in order."""
    return [body for lang, body in _FENCE.findall(section(title)) if lang == language]


def run_snippet(code: str, folder: Path, name: str) -> dict[str, Any]:
    """Run ``code`` as the script ``folder/name.py`` (``__name__ == "__main__"``), as a user who
    pasted it into a file would; return its globals."""
    path = folder / f"{name}.py"
    path.write_text(code, encoding="utf-8")
    return runpy.run_path(str(path), run_name="__main__")


def exec_snippet(code: str) -> dict[str, Any]:
    """Run ``code`` in this process, its tracebacks naming README.md; return its globals."""
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace
