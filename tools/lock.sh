#!/usr/bin/env bash
# Rewrites requirements.lock: every package a fresh install of the runtime and test requirements brings, at the
# version it resolved to (pyproject.toml's ranges, on this machine's indexes). Run after changing a dependency
# in pyproject.toml; commit the lock with it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet -e ".[test]"
{
  echo "# Every package of a fresh \`pip install -e .[test]\`, at the version it resolved to: the constraints of"
  echo "# requirements.txt and requirements-test.txt. Written by tools/lock.sh (Python $("$work/venv/bin/python" -c 'import platform; print(platform.python_version())'), Linux x86_64)."
  "$work/venv/bin/python" -m pip freeze --exclude-editable | grep -v "^-e "
} > requirements.lock
rm -rf "$work"
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages"
