#!/usr/bin/env bash
# Set up IFEval scoring on a Linux or macOS laptop: a virtual environment with
# requirements-score.txt (no torch), nltk's punkt_tab data, and a self-check.
# Safe to run again: it reuses what is already there.
#
#   bash setup_ifeval.sh                  # .venv-score next to this script
#   VENV_DIR=~/venvs/ifeval bash setup_ifeval.sh
#   SFTEVAL_PYTHON=python3.12 bash setup_ifeval.sh
#   bash setup_ifeval.sh --skip-install   # no pip: the packages are already importable
#                                         # (e.g. through PYTHONPATH, as the tests do offline)
#
# Environment: VENV_DIR (where the environment goes), SFTEVAL_PYTHON (the Python that
# creates it; default python3), NLTK_DATA (where nltk looks for, and this script puts, punkt_tab).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV_DIR="${VENV_DIR:-$ROOT/.venv-score}"
PYTHON="${SFTEVAL_PYTHON:-python3}"
SKIP_INSTALL=0

usage() { sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
step() { printf '==> %s\n' "$*"; }
fail() { printf 'setup_ifeval: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --skip-install) SKIP_INSTALL=1 ;;
        -h | --help) usage; exit 0 ;;
        *) fail "unknown option $arg (try --help)" ;;
    esac
done

command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found; install Python 3.10+ or set SFTEVAL_PYTHON"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || fail "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.10 or newer is needed"

VENV_PYTHON="$VENV_DIR/bin/python"
if [ -x "$VENV_PYTHON" ]; then
    step "reusing the virtual environment $VENV_DIR"
else
    step "creating a virtual environment in $VENV_DIR"
    "$PYTHON" -m venv "$VENV_DIR" || fail "could not create $VENV_DIR (on Debian/Ubuntu: apt install python3-venv)"
fi

if [ "$SKIP_INSTALL" = 1 ]; then
    step "skipping pip install (--skip-install)"
else
    step "installing requirements-score.txt (pip says 'already satisfied' on a second run)"
    "$VENV_PYTHON" -m pip install --disable-pip-version-check -r "$ROOT/requirements-score.txt" \
        || fail "pip install failed; check the network, or a proxy (HTTPS_PROXY)"
fi

# The same lookup eval_score.py makes: nltk.data.path, which includes NLTK_DATA.
FIND_PUNKT='import nltk, sys
try:
    print(nltk.data.find("tokenizers/punkt_tab/english/"))
except LookupError:
    sys.exit(1)'
if PUNKT_PATH="$("$VENV_PYTHON" -c "$FIND_PUNKT")"; then
    step "nltk punkt_tab found: $PUNKT_PATH"
else
    step "downloading nltk punkt_tab"
    TARGET="${NLTK_DATA:-}"
    TARGET="${TARGET%%:*}"
    "$VENV_PYTHON" - "${TARGET}" <<'EOF' || fail "could not download punkt_tab; on a machine with internet run: python -m nltk.downloader punkt_tab, then copy its nltk_data folder here and set NLTK_DATA"
import socket, sys
import nltk
socket.setdefaulttimeout(30)
target = sys.argv[1] or None
sys.exit(0 if nltk.download("punkt_tab", download_dir=target, quiet=True) else 1)
EOF
    PUNKT_PATH="$("$VENV_PYTHON" -c "$FIND_PUNKT")" || fail "punkt_tab was downloaded but nltk cannot find it; set NLTK_DATA"
    step "nltk punkt_tab installed: $PUNKT_PATH"
fi

step "self-check: scoring two built-in responses"
(cd "$ROOT" && "$VENV_PYTHON" eval_score.py --self-check) || fail "the self-check failed (see above)"

step "ready. Activate with:  . \"$VENV_DIR/bin/activate\""
step "then score:            python eval_score.py --input eval_responses/<file>.json"
