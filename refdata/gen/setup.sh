#!/bin/sh
# Creates <repo>/.venv-ref, the pinned Python reference environment that
# refdata/gen/*.py run in, from refdata/gen/requirements.txt.
#
#   refdata/gen/setup.sh              make (or check) <repo>/.venv-ref
#   REFDATA_PY=/path/bin/python refdata/gen/setup.sh
#                                     only check that an existing interpreter already
#                                     has the pinned packages (nothing is installed)
#
# Idempotent: when the venv already satisfies requirements.txt nothing is installed.
# Prints the interpreter to use on its last line of stdout.
set -eu

gen_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$gen_dir/../.." && pwd)
req="$gen_dir/requirements.txt"

# 0 when interpreter $1 has every pinned package at the pinned version.
have_pins() {
    "$1" - "$req" <<'PYEOF'
import sys
from importlib import metadata
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        got = metadata.version(name)
    except metadata.PackageNotFoundError:
        got = None
    # torch wheels carry a local tag (2.4.1+cpu, 2.4.1+cu121): compare the public part.
    if got is None or got.split("+")[0] != want:
        bad.append("%s==%s (have %s)" % (name, want, got))
if bad:
    sys.stderr.write("missing or wrong version: " + ", ".join(bad) + "\n")
    sys.exit(1)
PYEOF
}

if [ -n "${REFDATA_PY:-}" ]; then
    if ! have_pins "$REFDATA_PY"; then
        echo "setup.sh: REFDATA_PY=$REFDATA_PY lacks the pinned packages of $req" >&2
        exit 1
    fi
    echo "$REFDATA_PY"
    exit 0
fi

venv="$repo/.venv-ref"
py="$venv/bin/python"
if [ -x "$py" ] && have_pins "$py" 2>/dev/null; then
    echo "setup.sh: $venv already has the pinned packages" >&2
    echo "$py"
    exit 0
fi

python=${PYTHON:-python3}
if [ ! -x "$py" ]; then
    echo "setup.sh: creating $venv with $python" >&2
    "$python" -m venv "$venv"
fi
"$py" -m pip install --upgrade pip >&2
# torch's CPU wheel index keeps the download small (~200 MB instead of ~3 GB of CUDA
# wheels), but many machines reach PyPI only: probe it once (a few seconds) and fall back
# to PyPI alone, where pip would otherwise retry the dead index for every package.
cpu_index=https://download.pytorch.org/whl/cpu
if "$py" - "$cpu_index" <<'PYEOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=5)
PYEOF
then
    "$py" -m pip install --extra-index-url "$cpu_index" -r "$req" >&2
else
    echo "setup.sh: $cpu_index does not answer; installing from PyPI alone (CUDA torch wheels, ~3 GB)" >&2
    "$py" -m pip install -r "$req" >&2
fi
have_pins "$py"
echo "$py"
