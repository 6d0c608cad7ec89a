"""README's install and test commands are the whole set-up: .ci/run runs them and nothing else.

A green CI once hid a test dependency that only .ci/run installed; this keeps the two files
in step. The only other commands allowed in .ci/run are the two commented exceptions
(Debian packages only tests use, reference files tests read).
"""

from __future__ import annotations

import re

from conftest import ROOT

EXCEPTIONS = ("# exception, Debian packages only tests use", "# exception, reference files tests read")


def readme_commands() -> tuple[str, str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1].splitlines()
    install = block[block.index(next(line for line in block if line.startswith("# install"))) + 1]
    test = block[block.index(next(line for line in block if line.startswith("# test"))) + 1]
    return install, test


def ci_commands() -> tuple[list[str], list[str]]:
    """(plain commands, commands that follow an exception comment) of .ci/run."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    plain, excepted = [], []
    for previous, line in zip([""] + lines, lines):
        if not line.strip() or line.startswith(("#", "set ", "cd ")):
            continue
        (excepted if previous.startswith(EXCEPTIONS) else plain).append(line.strip())
    return plain, excepted


def test_ci_runs_exactly_readmes_install_and_test_commands():
    install, test = readme_commands()
    plain, _ = ci_commands()
    assert plain == [install, test]


def test_ci_exceptions_are_the_two_allowed_kinds_and_install_nothing_python_imports():
    _, excepted = ci_commands()
    assert len(excepted) == 2
    debian, reference = excepted
    assert debian.startswith("apt-get")
    assert "pip download --no-deps" in reference and "pip install" not in reference


def test_readme_install_command_installs_the_test_extra_and_a_cpu_torch_first():
    install, test = readme_commands()
    assert install.startswith("pip install torch==2.13.0 && ") and '.[test]"' in install
    assert test == "python -m pytest -q"
