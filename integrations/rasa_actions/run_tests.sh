#!/usr/bin/env bash
# Test the optional Rasa action-server integration in its own virtualenv.
#
#   integrations/rasa_actions/run_tests.sh [HOTLINE_PYTHON] [pytest args...]
#
# HOTLINE_PYTHON is the interpreter of hotline-bot's own venv (it runs the real
# server); default: <repo>/.venv/bin/python (what the README's install creates).
# This integration's venv (.venv here) only gets rasa-sdk, httpx and pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ $# -gt 0 && "$1" != -* ]]; then
    HOTLINE_PYTHON="$1"; shift
fi
if [[ -z "${HOTLINE_PYTHON:-}" ]]; then
    HOTLINE_PYTHON="$repo/.venv/bin/python"
fi
if [[ ! -x "$HOTLINE_PYTHON" ]]; then
    echo "hotline-bot python not found: $HOTLINE_PYTHON (pass it as \$1 or HOTLINE_PYTHON)" >&2
    exit 2
fi
if ! "$HOTLINE_PYTHON" -c "import connectors.cli" 2>/dev/null && \
   ! PYTHONPATH="$repo" "$HOTLINE_PYTHON" -c "import connectors.cli" 2>/dev/null; then
    echo "$HOTLINE_PYTHON cannot import hotline-bot (install it: pip install -e $repo)" >&2
    exit 2
fi

PYTHON="${PYTHON:-python3.11}"
venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" pytest==9.2.0

cd "$here"
export HOTLINE_PYTHON HOTLINE_BOT_ROOT="$repo"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
