#!/bin/sh
# CTest's python.pytest: run.sh PYTHON PKG_PARENT — runs the package's pytest suite against the
# package assembled in the build tree (PKG_PARENT/ferrum). Exits 77 (CTest: skipped, with the
# reason printed) when the package or pytest / numpy is missing.
py=$1
pkg=$2
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$pkg/ferrum/__init__.py" ]; then
  echo "SKIPPED: the Python package was not built ($pkg/ferrum missing)"
  exit 77
fi
if ! "$py" -c "import pytest, numpy" 2>/dev/null; then
  echo "SKIPPED: $py cannot import pytest and numpy (pip install pytest numpy into its venv)"
  exit 77
fi
PYTHONPATH="$pkg:$here${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m pytest -q -rxs -p no:cacheprovider "$here"
