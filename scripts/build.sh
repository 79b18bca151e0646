#!/usr/bin/env bash
# Configures and builds stem into build/ (warnings are errors). Extra arguments go to configure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] && [ $# -eq 0 ] || ../configure --enable-werror "$@"
make -j"$(nproc)"
