from pathlib import Path

import pytest

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.readme_tables import replace_marked_block, sync_readme

README = """# Title

<!-- headline:a -->
| old | table |
<!-- /headline:a -->

Prose that stays.

<!-- headline:b -->
| b |
<!-- /headline:b -->
"""


def test_only_the_named_block_changes() -> None:
    text = replace_marked_block(README, "headline:a", "| new |\n|---|\n")
    assert "| old | table |" not in text and "| new |\n|---|\n<!-- /headline:a -->" in text
    assert text.replace("| new |\n|---|\n", "| old | table |\n") == README
    assert replace_marked_block(README, "headline:c", "| c |") == README  # no markers: untouched


def test_an_unclosed_marker_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no closing"):
        replace_marked_block("<!-- headline:a -->\n| x |\n", "headline:a", "| y |")


def test_sync_readme_writes_only_on_change(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert sync_readme(readme, "headline:b", "| b2 |")
    assert "| b2 |\n<!-- /headline:b -->" in readme.read_text()
    assert not sync_readme(readme, "headline:b", "| b2 |")
    with pytest.raises(InvalidInputError, match="no such README"):
        sync_readme(tmp_path / "missing.md", "headline:b", "| b |")
