"""Every fenced example of README.md runs as a user runs it.

A user pastes a block into a file of its own and runs it: ``python block.py`` for a
```` ```python ```` block, ``bash block.sh`` for a ```` ```bash ```` one.  So here, in one
fresh folder and in README order (the shell examples make the files later ones read, as
the README says), each block is written to a file and run in a process of its own, with
this environment's ``python`` and ``fastvi`` first on the PATH (an activated venv).  Each
must exit 0 with nothing on stderr: no warning, no log line, no traceback.  No block may
rely on another's Python names, and a script that starts worker processes (Dask's
``LocalCluster``) must guard its ``__main__``, or it fails here as it fails for a user.

A comment on the line before a block may say otherwise, and the README then says why:

* ``<!-- demo-command -->``, ``<!-- test-command -->``: the two commands at the top, which
  CI (``.ci/run``) runs as they are; not run here (they install the package);
* ``<!-- not run by the tests: REASON -->``: a block that needs what a test run lacks
  (network installs, minutes of benchmarks);
* ``<!-- expect exit N: TEXT -->``: the block fails on purpose (a ``--resume`` with no
  interrupted fit to resume); it must exit N with the one error line that contains TEXT.

Every block names its language (``python``, ``bash`` or ``text`` for what is not run), so
that no example escapes this test by an unlabelled fence.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^(## [^\n]*)$|^(<!-- (.*?) -->\n)?```([a-z]*)\n(.*?)^```$", re.M | re.S)
LANGUAGES = ("python", "bash", "text")
CI_MARKERS = ("demo-command", "test-command")


def readme_blocks(text=None):
    """The README's fenced blocks in order: dicts of heading, language, marker, code."""
    blocks, heading = [], None
    for match in FENCE.finditer(README.read_text() if text is None else text):
        if match.group(1):
            heading = match.group(1)
            continue
        blocks.append({"heading": heading, "marker": match.group(3) or "",
                       "language": match.group(4), "code": match.group(5)})
    return blocks


def _expected_failure(marker):
    found = re.fullmatch(r"expect exit (\d+): (.+)", marker)
    return (int(found.group(1)), found.group(2)) if found else None


def _runs(block):
    if block["language"] == "text" or block["marker"] in CI_MARKERS:
        return False
    return not block["marker"].startswith("not run by the tests:")


def test_every_block_names_its_language_and_runnable_ones_are_run():
    blocks = readme_blocks()
    # every fence is one this parser reads (an indented one, or a language in capitals,
    # would be skipped: two fence lines a block, none left over)
    fences = re.findall(r"^\s*```", README.read_text(), flags=re.M)
    assert len(fences) == 2 * len(blocks), "a fence the parser does not read"
    unlabelled = [b["heading"] for b in blocks if b["language"] not in LANGUAGES]
    assert not unlabelled, f"fenced blocks without python/bash/text under {unlabelled}"
    markers = [b["marker"] for b in blocks if b["marker"]]
    for marker in markers:
        assert (marker in CI_MARKERS or marker.startswith("not run by the tests: ")
                or _expected_failure(marker)), f"unknown marker {marker!r}"
    run = [b for b in blocks if _runs(b)]
    assert sum(b["language"] == "python" for b in run) >= 5
    assert sum(b["language"] == "bash" for b in run) >= 2


def test_the_block_parser():
    text = ("## A\n```python\nx = 1\n```\n<!-- not run by the tests: slow -->\n```bash\n"
            "asv run\n```\n## B\n<!-- expect exit 2: no checkpoint -->\n```bash\nfastvi x\n"
            "```\n```\nbare\n```\n")
    blocks = readme_blocks(text)
    assert [(b["heading"], b["language"]) for b in blocks] == [
        ("## A", "python"), ("## A", "bash"), ("## B", "bash"), ("## B", "")]
    assert [_runs(b) for b in blocks[:3]] == [True, False, True]
    assert _expected_failure(blocks[2]["marker"]) == (2, "no checkpoint")


def _environment():
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for name in ("FASTVI_DEBUG", "PYTHONWARNINGS", "PYTHONPATH"):
        env.pop(name, None)
    return env


def test_readme_examples_run_as_files_in_order(tmp_path):
    env = _environment()
    ran = 0
    for number, block in enumerate(readme_blocks()):
        if not _runs(block):
            continue
        suffix, command = {"python": (".py", ["python"]), "bash": (".sh", ["bash"])}[
            block["language"]]
        script = tmp_path / f"readme_block_{number}{suffix}"
        script.write_text(block["code"])
        proc = subprocess.run(command + [script.name], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        shown = (f"README block {number} ({block['language']}) under {block['heading']!r}:"
                 f"\n{block['code']}\nexit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}"
                 f"\nstderr:\n{proc.stderr[-3000:]}")
        expected = _expected_failure(block["marker"])
        if expected:
            status, text = expected
            assert proc.returncode == status, shown
            lines = proc.stderr.splitlines()
            assert len(lines) == 1 and text in lines[0], shown
        else:
            assert proc.returncode == 0, shown
            assert proc.stderr == "", shown
        ran += 1
    assert ran >= 7
    files = set(os.listdir(tmp_path))
    for name in ("data.h5", "held_out.h5", "part1.h5", "part2.h5", "model.h5", "parts.h5",
                 "labels.h5", "top.h5", "vae.h5", "fit.jsonl", "bgmm.h5", "big.h5"):
        assert name in files, name
    # a fit that ends removes its checkpoint: nothing is left to resume
    assert not [name for name in files if name.endswith(".ckpt")]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
