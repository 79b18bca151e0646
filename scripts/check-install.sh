#!/usr/bin/env bash
# Installs build/ into a temporary root and builds tests/install/use_stem.c against it
# with nothing but `pkg-config --cflags --libs stem`, then runs it: the installed
# headers, libraries and stem.pc are enough to use stem as a library.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
make -C build install DESTDIR="$root" >/dev/null
prefix=$(sed -n 's/^prefix=//p' build/stem.pc)
export PKG_CONFIG_SYSROOT_DIR="$root" PKG_CONFIG_PATH="$root$prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs stem)
${CC:-cc} -std=gnu11 -Wall -Wextra -Werror tests/install/use_stem.c -o "$root/use_stem" $flags
"$root/use_stem"
for f in bin/stem lib/libstem.a lib/pkgconfig/stem.pc include/stem/stem.h include/stem/core/tensor.h; do
    [ -e "$root$prefix/$f" ] || { echo "check-install: $prefix/$f was not installed" >&2; exit 1; }
done
echo "check-install: stem, libstem.a, headers and stem.pc installed; a program built with pkg-config runs"
