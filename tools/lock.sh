#!/usr/bin/env bash
# Regenerate requirements-lock.txt: the exact version of every package the app and the tests
# need (transitive ones included), taken from a fresh virtual environment in which the whole
# test suite passed. Run it after changing requirements.txt or requirements-dev.txt, or to move
# to newer releases; commit the lock only if this script ends with "lock written".
#
#   bash tools/lock.sh            # newest versions the requirements allow, then the suite
#   bash tools/lock.sh --no-test  # skip the suite (only to inspect what would be locked)
set -euo pipefail
cd "$(dirname "$0")/.."
run_tests=1
[[ "${1:-}" == "--no-test" ]] && run_tests=0

venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
# Without -c: the newest releases that requirements-dev.txt allows (torch stays pinned there).
"$venv/bin/python" -m pip install -q -r requirements-dev.txt
if (( run_tests )); then
  (source "$venv/bin/activate" && python -m pytest -q)
fi
{
  echo "# Exact versions for requirements-dev.txt (and so requirements.txt), written by tools/lock.sh"
  echo "# from a fresh virtual environment$( (( run_tests )) && echo ' in which the test suite passed')."
  echo "# Use it as a constraints file: pip install -r requirements-dev.txt -c requirements-lock.txt"
  echo "# Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -m), $(date -u +%Y-%m-%d)."
  # A local build tag (torch's "+cpu") names where a wheel came from, not what it is: the pin
  # is the release itself, so the lock also resolves where PyPI's build is the one on offer.
  "$venv/bin/python" -m pip freeze --exclude-editable | sed -E 's/^([A-Za-z0-9_.-]+==[^+ ]+)\+[A-Za-z0-9.]+$/\1/' | LC_ALL=C sort -f
} > requirements-lock.txt.new
mv requirements-lock.txt.new requirements-lock.txt
echo "lock written: requirements-lock.txt ($(grep -vc '^#' requirements-lock.txt) packages)"
