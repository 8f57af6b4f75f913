"""Every Python example in the README runs as written, in order, in a fresh folder."""
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    """The README's ```python blocks, with the heading of the section each is in."""
    blocks, heading = [], None
    for match in re.finditer(r"^(## [^\n]*)$|^```python\n(.*?)^```$", README.read_text(),
                             re.M | re.S):
        if match.group(1):
            heading = match.group(1)
        else:
            blocks.append((heading, match.group(2)))
    return blocks


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 3


def test_python_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for heading, code in python_blocks():
        try:
            exec(compile(code, f"README.md ({heading})", "exec"), namespace)
        except Exception as exc:            # name the example that failed
            pytest.fail(f"README example under {heading!r} failed: {exc!r}")
    assert os.listdir(tmp_path)             # the streaming example wrote its files here
