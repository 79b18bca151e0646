#!/usr/bin/env bash
# The fuzzing step of the test suite: every libFuzzer harness for a short fixed time
# (default 15 s each, ~4 minutes with the build), failing on any crash, leak, UBSan report,
# timeout or out-of-memory. Long runs: scripts/fuzz.sh -t 3600.
set -euo pipefail
exec "$(dirname "$0")/fuzz.sh" -t "${STEM_FUZZ_SECONDS:-15}" "$@"
