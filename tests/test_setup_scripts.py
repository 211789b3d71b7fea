"""setup_ifeval.sh run for real into a fresh virtual environment (offline: the packages come
through PYTHONPATH, --skip-install skips pip, punkt_tab through NLTK_DATA), and
setup_ifeval.ps1 parsed with the tree-sitter PowerShell grammar."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLOSED_PROXY = "http://127.0.0.1:9"  # nothing may come from the network


def run_setup(venv, home, nltk_data, *args):
    env = {
        **os.environ,
        "VENV_DIR": str(venv),
        "SFTEVAL_PYTHON": sys.executable,
        # The fresh venv sees this interpreter's packages, as if pip had installed them.
        "PYTHONPATH": os.pathsep.join([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]),
        "NLTK_DATA": str(nltk_data),
        "HOME": str(home),
        "https_proxy": CLOSED_PROXY,
        "HTTPS_PROXY": CLOSED_PROXY,
    }
    return subprocess.run(
        ["bash", str(ROOT / "setup_ifeval.sh"), *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def setup_env(tmp_path_factory):
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    base = tmp_path_factory.mktemp("setup")
    (base / "home").mkdir()
    return base / "venv", base / "home"


def test_sh_creates_a_venv_and_passes_the_self_check_then_reruns_cleanly(setup_env, shared_data):
    venv, home = setup_env
    first = run_setup(venv, home, shared_data / "nltk_data", "--skip-install")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"creating a virtual environment in {venv}" in first.stdout
    assert "skipping pip install" in first.stdout
    assert "punkt_tab found" in first.stdout
    assert "self-check passed: 2 responses, 6 instructions" in first.stdout
    assert (venv / "bin" / "python").exists() and (venv / "pyvenv.cfg").exists()

    again = run_setup(venv, home, shared_data / "nltk_data", "--skip-install")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"reusing the virtual environment {venv}" in again.stdout and "self-check passed" in again.stdout


def test_sh_without_punkt_tab_offline_says_how_to_get_it(setup_env, shared_data, tmp_path):
    venv, home = setup_env
    done = run_setup(venv, home, tmp_path / "empty_nltk_data", "--skip-install")
    assert done.returncode == 1
    assert "downloading nltk punkt_tab" in done.stdout
    assert "python -m nltk.downloader punkt_tab" in done.stderr and "NLTK_DATA" in done.stderr
    assert "self-check" not in done.stdout


def test_sh_help_and_unknown_options(tmp_path):
    shown = subprocess.run(["bash", str(ROOT / "setup_ifeval.sh"), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--skip-install" in shown.stdout and "VENV_DIR" in shown.stdout
    wrong = subprocess.run(["bash", str(ROOT / "setup_ifeval.sh"), "--bogus"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "unknown option --bogus" in wrong.stderr


def powershell_problems(source: bytes) -> list[tuple[str, int]]:
    import tree_sitter_powershell
    from tree_sitter import Language, Parser

    tree = Parser(Language(tree_sitter_powershell.language())).parse(source)
    problems, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            problems.append((node.type, node.start_point[0] + 1))
        stack.extend(node.children)
    return problems


def test_ps1_parses_without_errors_and_does_each_step():
    script = (ROOT / "setup_ifeval.ps1").read_bytes()
    assert powershell_problems(script) == []
    assert powershell_problems(b"if ($x) { Write-Host 'open'\n$y = @(1, 2\n") != []  # the check can fail
    text = script.decode()
    for step in ("[switch]$SkipInstall", "'venv'", "requirements-score.txt", "punkt_tab", "'--self-check'"):
        assert step in text
    assert "$LASTEXITCODE" in text  # native failures are checked: PowerShell does not stop on them
