"""Tables copied from the benchmark reports into a README, between named markers, so they never go stale.

A README keeps a block such as::

    <!-- headline:magnetic_tile -->
    | detector | ... |
    <!-- /headline:magnetic_tile -->

and ``replace_marked_block`` swaps what lies between the markers for the report's current table.
Text outside the markers is never touched, and a README without the markers is left as it is.

Example:
    >>> text = replace_marked_block(readme.read_text(), "headline:magnetic_tile", table)
"""

from __future__ import annotations

import re
from pathlib import Path

from anomaly_synth_aug.errors import InvalidInputError


def replace_marked_block(text: str, name: str, content: str) -> str:
    """``text`` with the lines between ``<!-- name -->`` and ``<!-- /name -->`` replaced by ``content``.

    Returns ``text`` unchanged when the markers are absent; refuses an opening marker without its end.
    """
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text:
        return text
    pattern = re.compile(re.escape(start) + r"\r?\n.*?" + re.escape(end), flags=re.DOTALL)
    if not pattern.search(text):
        raise InvalidInputError(f"the marker {start} has no closing {end}", fix=f"add {end} after the table")
    body = content if content.endswith("\n") else content + "\n"
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text, count=1)


def sync_readme(readme: str | Path, name: str, content: str) -> bool:
    """Rewrite ``readme``'s block ``name`` with ``content``; returns whether the file changed."""
    path = Path(readme)
    if not path.is_file():
        raise InvalidInputError("no such README", path=path, fix="pass the README that holds the markers")
    before = path.read_text()
    after = replace_marked_block(before, name, content)
    if after != before:
        path.write_text(after)
    return after != before


__all__ = ["replace_marked_block", "sync_readme"]
