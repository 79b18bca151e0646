#!/usr/bin/env bash
# Here (no GPU): build stem with CUDA for Hopper (sm_90: H100/H200) and pack the
# programs, test binaries and the shared libraries they need that a bare GPU machine
# lacks (OpenBLAS, json-c, libpng, ...; not libc, not the CUDA libraries) into
# .gpu/bundle.tar.xz, which the device tool carries (`carry: [".gpu"]`). Then, on the
# GPU machine, in one call:  bash scripts/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
[ -x configure ] || autoreconf -fi
mkdir -p build-gpu
(cd build-gpu &&
    { [ -f Makefile ] || ../configure --enable-werror --with-cuda --without-ffmpeg \
        NVCC_ARCH_FLAGS="-gencode arch=compute_90,code=sm_90" >/dev/null; } &&
    make -j"$(nproc)" >/dev/null && make -j"$(nproc)" check TESTS= >/dev/null)

stage=.gpu/stage
rm -rf .gpu && mkdir -p "$stage/bin" "$stage/tests" "$stage/bench" "$stage/lib"
cp build-gpu/stem "$stage/bin/"
for t in build-gpu/tests/test_*; do if [ -x "$t" ] && [ -f "$t" ]; then cp "$t" "$stage/tests/"; fi; done
cp tests/test_cli.sh "$stage/tests/"
for b in build-gpu/bench/ops build-gpu/bench/em build-gpu/bench/unet; do if [ -x "$b" ]; then cp "$b" "$stage/bench/"; fi; done
# libraries: everything ldd resolves except glibc's own and CUDA's (present on the GPU machine)
for f in "$stage"/bin/* "$stage"/tests/test_* "$stage"/bench/*; do
    if [ -x "$f" ]; then ldd "$f" 2>/dev/null | awk '/=> \//{print $3}' || true; fi
done | sort -u | grep -v -E '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcublas|libcublasLt|libcudart)\.so' |
    while read -r lib; do cp -L "$lib" "$stage/lib/"; done
tar -C .gpu -cJf .gpu/bundle.tar.xz stage
rm -rf "$stage"
ls -la .gpu/bundle.tar.xz
echo "carry .gpu and run: bash scripts/gpu/run.sh   (writes its logs to \$OUT)"
