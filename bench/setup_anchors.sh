#!/usr/bin/env bash
# Installs the benchmark's anchors into bench/.anchors (ignored by git; the project never depends on them):
# fast-reid 1.4.0 (no deps) with its Cython evaluator compiled in place.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet cython
python -m pip install --quiet --no-deps --target .anchors fastreid==1.4.0
cd .anchors/fastreid/evaluation/rank_cylib
python - <<'PY'
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize([Extension("rank_cy", ["rank_cy.pyx"], include_dirs=[numpy.get_include()])],
                            language_level=3, quiet=True),
      script_args=["build_ext", "--inplace", "--quiet"])
PY
echo "anchors ready in bench/.anchors"
