"""The README's command-line examples run as written, in order, in one folder.

Every fenced block of ``fastvi ...`` lines in README.md is taken verbatim (a trailing
backslash continues a line, ``#`` starts a comment) and run through the ``fastvi`` of
this interpreter's environment.  Each must exit 0, except:

* ``--resume`` lines, meant for after a crash or Ctrl-C: they run after a fit that
  finished (and removed its checkpoint), so they must stop with the one-line error that
  there is no checkpoint (exit 2);
* ``fastvi demo`` and ``fastvi amortized demo``: they take 10-35 s and are run by CI
  (``.ci/run``) after the README's first command, so they are left out here.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "README.md")
DEMOS = (["fastvi", "demo"], ["fastvi", "amortized", "demo"])


def readme_commands(text):
    """The ``fastvi`` commands of the README's shell blocks, in order, as argv lists."""
    commands = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S):
        lines = block.replace("\\\n", " ").splitlines()
        lines = [line for line in lines if line.strip()]
        if lines and all(line.startswith("fastvi ") or line == "fastvi"
                         for line in lines):
            commands += [shlex.split(line, comments=True) for line in lines]
    return commands


def test_the_readme_has_the_examples():
    with open(README, encoding="utf-8") as fh:
        commands = readme_commands(fh.read())
    names = [" ".join(argv[1:3]) for argv in commands]
    assert "make-data data.h5" in names and "amortized fit" in names
    assert any("--resume" in argv for argv in commands)
    assert "\\" not in " ".join(" ".join(argv) for argv in commands)


def test_readme_command_line_examples_run_as_written(tmp_path):
    with open(README, encoding="utf-8") as fh:
        commands = readme_commands(fh.read())
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("FASTVI_DEBUG", None)
    ran = 0
    for argv in commands:
        if argv in DEMOS:
            continue
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        shown = shlex.join(argv)
        if "--resume" in argv:
            assert proc.returncode == 2, f"{shown}\n{proc.stdout}\n{proc.stderr}"
            assert proc.stderr.startswith("fastvi: error: "), proc.stderr
            assert "checkpoint" in proc.stderr and "Traceback" not in proc.stderr
        else:
            assert proc.returncode == 0, f"{shown}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, shown
        ran += 1
    assert ran >= 14
    for name in ("data.h5", "held_out.h5", "part1.h5", "part2.h5", "model.h5", "parts.h5",
                 "labels.h5", "top.h5", "vae.h5", "fit.jsonl"):
        assert (tmp_path / name).exists(), name
    assert not any(name.endswith(".ckpt") for name in os.listdir(tmp_path))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
