#!/usr/bin/env bash
# valgrind memcheck over the CLI, under a time budget: a documented subset, failing on any
# memcheck error or definite leak in stem's code.
#
#   scripts/valgrind-ci.sh            (uses build-valgrind/, configured --without-cuda, made if needed)
#
# What runs under memcheck (everything else of the suite is also covered by the ASan build):
#   1. tests/test_cli.sh with every `stem` command but `invert` under valgrind (op, system,
#      info, tokenize, and all their error paths); `invert` runs natively there, because
#      memcheck makes its default 8-frame runs take minutes each;
#   2. `stem invert` itself under valgrind on 2 frames of 32x32 (1 step): the whole pipeline
#      and every output, recon.mp4 included (the sws_scale over-read of issue 14), then a
#      --resume of a finished-looking partial folder, and the bad-input paths of
#      tests/test_cli_reliability.sh (norm_num_groups 0, a JPEG bomb, --force on a foreign
#      folder, a damaged latent, other options on resume);
#   3. the parser unit tests: test_image_io, test_frames_io, test_image_limits, test_safetensors(_corrupt),
#      test_yaml_config, test_tokenizer, test_ddim.
# Third-party noise would go to scripts/valgrind.supp (each entry saying why; none is needed
# with Debian 12's OpenBLAS, libgomp, FFmpeg, libpng and libjpeg); a report whose stack
# reaches stem's own code is never suppressed. About 7 minutes on 2 busy cores (383 s).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bld=${STEM_VALGRIND_BUILD:-build-valgrind}
if [ ! -f "$bld/Makefile" ]; then
    [ -x configure ] || autoreconf -fi >/dev/null
    mkdir -p "$bld" && (cd "$bld" && ../configure --without-cuda >/dev/null) || exit 1
fi
units="tests/test_image_io tests/test_frames_io tests/test_image_limits tests/test_safetensors tests/test_safetensors_corrupt tests/test_yaml_config tests/test_tokenizer tests/test_ddim"
nice -n 10 make -C "$bld" -j2 stem $units >"$bld/valgrind-build.log" 2>&1 || { tail -n 30 "$bld/valgrind-build.log"; exit 1; }

logs=$(mktemp -d)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export STEM_REFDATA=$root/refdata OMP_NUM_THREADS=2
vg=(nice -n 10 valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=no --num-callers=30
    --suppressions="$root/scripts/valgrind.supp" --log-file="$logs/vg.%p.log")

# 1. test_cli.sh through a wrapper
cat >"$tmp/stem" <<WRAP
#!/bin/sh
[ "\${1:-}" = invert ] && exec "$root/$bld/stem" "\$@"
exec ${vg[*]} "$root/$bld/stem" "\$@"
WRAP
chmod +x "$tmp/stem"
start=$(date +%s)
echo "== valgrind: tests/test_cli.sh (all but invert under memcheck)"
STEM_BIN=$tmp/stem sh tests/test_cli.sh >"$logs/test_cli.out" 2>&1 || { cat "$logs/test_cli.out"; echo "test_cli.sh failed under valgrind"; }

# 2. stem invert under memcheck
echo "== valgrind: stem invert (2 frames 32x32, 1 step; resume; bad input)"
small=(--steps 1 --bases 2 --n-frames 2 --width 32 --height 32 --quiet)
"${vg[@]}" "$bld/stem" invert "${small[@]}" --out "$tmp/run" >/dev/null 2>"$logs/invert.err" ||
    { cat "$logs/invert.err"; echo "FAIL stem invert under valgrind"; }
[ -s "$tmp/run/recon.mp4" ] || echo "FAIL: no recon.mp4 (built without FFmpeg?)"
# an interrupted-looking run: the finished folder as DIR.partial without its manifest
"$bld/stem" invert "${small[@]}" --steps 2 --out "$tmp/res" >/dev/null 2>&1 && mv "$tmp/res" "$tmp/res.partial" &&
    rm "$tmp/res.partial/manifest.json" && cp -r "$tmp/res.partial" "$tmp/opts.partial"
"${vg[@]}" "$bld/stem" invert "${small[@]}" --steps 2 --out "$tmp/res" --resume >/dev/null 2>"$logs/resume.err" ||
    { cat "$logs/resume.err"; echo "FAIL stem invert --resume under valgrind"; }
cp -r "$tmp/run" "$tmp/damaged.partial" && rm "$tmp/damaged.partial/manifest.json"
lat=$(ls "$tmp/damaged.partial/latents" | head -n 1)
printf '\001' | dd of="$tmp/damaged.partial/latents/$lat" bs=1 seek=100 conv=notrunc 2>/dev/null
bad_model=$tmp/model && cp -r refdata/models/tiny-sd1 "$bad_model" &&
    sed -i 's/"norm_num_groups": *[0-9]*/"norm_num_groups": 0/' "$bad_model/unet/config.json"
mkdir -p "$tmp/bomb" "$tmp/foreign" && echo keep >"$tmp/foreign/file"
head -c 328 refdata/golden/io/images/gray.jpg >"$tmp/bomb/0.jpg" && printf '\377\331' >>"$tmp/bomb/0.jpg"
printf '\100\000\100\000' | dd of="$tmp/bomb/0.jpg" bs=1 seek=94 conv=notrunc 2>/dev/null
for args in "--model $bad_model --out $tmp/o1" "--frames $tmp/bomb --prompt x --n-frames 1 --out $tmp/o2" \
            "--out $tmp/foreign --force" "--out $tmp/damaged --resume" "--out $tmp/opts --resume --steps 3"; do
    # shellcheck disable=SC2086
    if "${vg[@]}" "$bld/stem" invert "${small[@]}" $args >/dev/null 2>>"$logs/bad.err"; then
        echo "FAIL: stem invert $args exited 0"
    fi
done

# 3. parser unit tests
echo "== valgrind: parser unit tests"
for t in $units; do
    (cd "$bld" && "${vg[@]}" "./$t" >"$logs/$(basename "$t").out" 2>&1) || { tail -n 20 "$logs/$(basename "$t").out"; echo "FAIL $t"; }
done

# verdict: every memcheck log
errors=0
for f in "$logs"/vg.*.log; do
    if grep -qE 'ERROR SUMMARY: [1-9]' "$f"; then
        errors=$((errors + 1))
        echo "---- memcheck errors: $f"
        sed -n '/^==[0-9]*== Command:/p;/Invalid\|uninitialised\|definitely lost\|Mismatched\|overlap/,/^==[0-9]*== $/p' "$f" | head -n 60
    fi
done
n=$(ls "$logs"/vg.*.log | wc -l)
echo "valgrind: $n processes under memcheck, $errors with errors, $(( $(date +%s) - start )) s (logs: $logs)"
grep -hE '^(ok|FAIL)' "$logs/test_cli.out" | grep -c '^FAIL' | xargs -I{} echo "test_cli.sh under valgrind: {} FAIL"
[ "$errors" -eq 0 ] && ! grep -q '^FAIL' "$logs/test_cli.out"
