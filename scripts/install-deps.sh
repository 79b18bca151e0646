#!/usr/bin/env bash
# Installs what building and testing stem needs on Debian 12 (as root, or via sudo).
# The CUDA toolkit is optional: configure builds the CUDA backend when nvcc and cuBLAS
# are present (apt: nvidia-cuda-toolkit, or NVIDIA's packages under /usr/local/cuda).
set -euo pipefail
packages=(build-essential autoconf automake libtool pkg-config
          libopenblas-openmp-dev libcmocka-dev libjson-c-dev libpng-dev
          libutf8proc-dev libjpeg-dev libyaml-dev
          libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
          clang libomp-dev libclang-rt-14-dev valgrind)
# clang + libomp-dev: the second compiler of scripts/test.sh; libclang-rt-14-dev (its
# libFuzzer runtime): the fuzzing build (configure --enable-fuzzing, scripts/fuzz.sh);
# valgrind: scripts/valgrind-ci.sh
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all packages present"
    exit 0
fi
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
