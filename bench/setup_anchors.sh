#!/usr/bin/env bash
# Installs the benchmark's anchors into bench/.anchors (ignored by git; the project never depends on them):
# fast-reid 1.4.0 (no deps) with its Cython evaluator compiled in place, and torchreid 0.2.5's re-ranking
# (torchreid/reid/utils/rerank.py, NumPy only) taken from its source archive as bench/.anchors/torchreid_rerank.py.
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
cd "$BENCH"
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
cd "$BENCH"
python -m pip download --quiet --no-deps --no-binary :all: --dest .anchors/downloads torchreid==0.2.5
python - <<'PY'
import tarfile

with tarfile.open(".anchors/downloads/torchreid-0.2.5.tar.gz") as archive:
    member = archive.extractfile("torchreid-0.2.5/torchreid/reid/utils/rerank.py")
    open(".anchors/torchreid_rerank.py", "wb").write(member.read())
PY
echo "anchors ready in bench/.anchors"
