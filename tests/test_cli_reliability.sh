#!/bin/sh
# Bad input and faults, as an adversarial user meets `stem` (issue 14): each case must give
# a clear message naming the culprit, a non-zero exit, bounded time and memory, no
# complete-looking output, and never delete what stem did not write. Resumes are checked.
set -u
STEM=${STEM_BIN:-./stem}
REFDATA=${STEM_REFDATA:-refdata}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

# expect_fail NAME WANT OUT CMD...: non-zero exit, WANT on stderr, no OUT/manifest.json, no OUT.partial
expect_fail() {
    name=$1; want=$2; out=$3; shift 3
    if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then bad "$name: exited 0"; return 1; fi
    if ! grep -q -- "$want" "$tmp/stderr"; then bad "$name: stderr lacks '$want': $(cat "$tmp/stderr")"; return 1; fi
    if [ -e "$out/manifest.json" ]; then bad "$name: left a complete-looking output"; return 1; fi
    if [ -e "$out.partial" ]; then bad "$name: left $out.partial"; return 1; fi
    ok "$name"
}
run_small() { "$STEM" invert --steps 2 --bases 4 --n-frames 2 --quiet "$@"; }

# ---- ops ------------------------------------------------------------------------------
slice=$(ls "$REFDATA"/golden/ops/slice__*.safetensors | head -n 1)
expect_fail "op slice: bad axis names its value" "axis 7 is outside" "$tmp/none" \
    "$STEM" op slice --in "$slice" --out "$tmp/s.safetensors" --attr axis=7 --attr start=0 --attr length=1

# ---- model configs: norm_num_groups 0 (was SIGFPE) and negative (was a failure at step 0) ----
for comp in unet vae; do
    for groups in 0 -4; do
        m="$tmp/model_${comp}_$groups"
        cp -r "$REFDATA/models/tiny-sd1" "$m"
        sed "s/\"norm_num_groups\": *[0-9]*/\"norm_num_groups\": $groups/" "$REFDATA/models/tiny-sd1/$comp/config.json" \
            >"$m/$comp/config.json"
        expect_fail "$comp norm_num_groups $groups: rejected at load" "$comp/config.json: norm_num_groups = $groups" \
            "$tmp/o_$comp$groups" run_small --model "$m" --out "$tmp/o_$comp$groups"
        rm -rf "$m"
    done
done

# ---- images that declare more than they hold ---------------------------------------------
# gray.jpg (refdata/golden/io/images): SOF0 at byte 89 (height at 94, width at 96), the scan
# header ends at byte 328. Declared 16384x16384 with the scan data cut: was 4.9 GB and 23 s,
# or with --width/--height 64 a complete-looking output.
mkdir -p "$tmp/bomb" "$tmp/noscan"
jpg="$REFDATA/golden/io/images/gray.jpg"
head -c 328 "$jpg" >"$tmp/bomb/00000.jpg" && printf '\377\331' >>"$tmp/bomb/00000.jpg"
printf '\100\000\100\000' | dd of="$tmp/bomb/00000.jpg" bs=1 seek=94 conv=notrunc 2>/dev/null
expect_fail "JPEG declaring 16384x16384 without scan data" "00000.jpg" "$tmp/o_bomb" \
    run_small --frames "$tmp/bomb" --n-frames 1 --prompt x --width 64 --height 64 --out "$tmp/o_bomb"
head -c 328 "$jpg" >"$tmp/noscan/00000.jpg" && printf '\377\331' >>"$tmp/noscan/00000.jpg"
expect_fail "JPEG without scan data (its own size)" "premature end of data segment" "$tmp/o_noscan" \
    run_small --frames "$tmp/noscan" --n-frames 1 --prompt x --out "$tmp/o_noscan"

# ---- absurd --width/--height: the memory plan comes before the frames are decoded at that size ----
if "$STEM" invert --width 8192 --height 8192 --mem-limit 1G --out "$tmp/o_huge" >"$tmp/stdout" 2>"$tmp/huge.err"; then
    bad "--width/--height 8192: exited 0"
elif ! grep -q "over the 1024 MiB memory limit" "$tmp/huge.err"; then
    bad "--width/--height 8192: no memory message: $(cat "$tmp/huge.err")"
elif grep -q "frames 8192x8192 from" "$tmp/huge.err"; then
    bad "--width/--height 8192: the frames were decoded at 8192x8192 before the memory plan"
else
    ok "--width/--height 8192: memory plan refuses before any frame is decoded at that size"
fi

# ---- --force replaces only stem's own output --------------------------------------------------
mkdir -p "$tmp/foreign"
echo precious >"$tmp/foreign/notes.txt"
expect_fail "--force refuses a folder stem did not write" "folder stem did not write" "$tmp/none" \
    run_small --out "$tmp/foreign" --force
if [ "$(cat "$tmp/foreign/notes.txt" 2>/dev/null)" = precious ]; then ok "--force kept the foreign folder's file"; else bad "--force deleted a foreign file"; fi
echo precious >"$tmp/plainfile"
expect_fail "--force refuses a regular file" "is a regular file" "$tmp/none" run_small --out "$tmp/plainfile" --force
if [ "$(cat "$tmp/plainfile")" = precious ]; then ok "--force kept the regular file"; else bad "--force replaced a regular file"; fi
mkdir -p "$tmp/mine.partial"
echo precious >"$tmp/mine.partial/notes.txt"
if run_small --out "$tmp/mine" >/dev/null 2>"$tmp/stderr"; then bad "a foreign DIR.partial was replaced"
elif [ "$(cat "$tmp/mine.partial/notes.txt" 2>/dev/null)" = precious ] && grep -q "mine.partial" "$tmp/stderr"; then
    ok "a foreign DIR.partial is refused, naming it, and kept"
else bad "foreign DIR.partial: $(cat "$tmp/stderr")"; fi
rm -rf "$tmp/mine.partial"
if run_small --out "$tmp/mine" >/dev/null 2>&1 && echo extra >"$tmp/mine/extra.txt" &&
    run_small --out "$tmp/mine" --force >/dev/null 2>&1 && [ -s "$tmp/mine/manifest.json" ] && [ ! -e "$tmp/mine/extra.txt" ]; then
    ok "--force replaces stem's own output folder"
else
    bad "--force on stem's own output"
fi

# ---- resume: SIGINT, a stale temporary file, a damaged latent, other options -------------------
args="--steps 6 --bases 4 --n-frames 4"
"$STEM" invert $args --out "$tmp/int" >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
i=0
while [ ! -e "$tmp/int.partial/latents/inv_001_t0167.safetensors" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT $pid
wait $pid
rc=$?
said=$(sed -n 's/.*interrupted after inversion step \([0-9]*\) of.*/\1/p' "$tmp/int.err")
shown=$(grep '^inversion  *[0-9]*/' "$tmp/int.err" | tail -n 1 | awk '{print $2}' | cut -d/ -f1)
if [ $rc -ne 0 ] && [ -n "$said" ] && [ "$said" = "$shown" ] && ! grep -q "inversion step [0-9]* (t =" "$tmp/int.err"; then
    ok "SIGINT: the message and the last progress line name the same step ($said)"
else
    bad "SIGINT step numbers: rc $rc, message '$said', progress '$shown': $(cat "$tmp/int.err")"
fi
if [ -d "$tmp/int.partial" ]; then
    lat="$tmp/int.partial/latents"
    first=$(ls "$lat" | head -n 1)
    expect_fail_keep() { # like expect_fail, but the .partial must stay (it is the interrupted run)
        name=$1; want=$2; shift 2
        if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then bad "$name: exited 0"; return; fi
        if grep -q -- "$want" "$tmp/stderr"; then ok "$name"; else bad "$name: stderr lacks '$want': $(cat "$tmp/stderr")"; fi
    }
    expect_fail_keep "--resume with other options names each with both values" "steps: 6 there, 7 now" \
        "$STEM" invert $args --steps 7 --out "$tmp/int" --resume --quiet
    cp "$lat/$first" "$tmp/saved.safetensors"
    size=$(wc -c <"$lat/$first")
    printf '\001' | dd of="$lat/$first" bs=1 seek=$((size - 7)) conv=notrunc 2>/dev/null
    expect_fail_keep "--resume detects a damaged latent, naming it" "$first: the latents do not match their checksum" \
        "$STEM" invert $args --out "$tmp/int" --resume --quiet
    cp "$tmp/saved.safetensors" "$lat/$first"
    sh -c 'exit 0' & dead=$!; wait $dead # a process id that no longer runs: a kill -9 during a write
    cp "$lat/$first" "$lat/$first.tmp.$dead"
    if "$STEM" invert $args --out "$tmp/int" --resume >/dev/null 2>"$tmp/resume.err" && grep -q "removed 1 stale temporary file" "$tmp/resume.err" &&
        [ -s "$tmp/int/manifest.json" ] && [ -z "$(find "$tmp/int" -name '*.tmp.*')" ]; then
        ok "--resume removes a stale temporary file and finishes"
    else
        bad "--resume: $(cat "$tmp/resume.err")"
    fi
    if "$STEM" invert $args --out "$tmp/whole" --quiet >/dev/null 2>&1 &&
        cmp -s "$tmp/whole/latents/rec_005_t0001.safetensors" "$tmp/int/latents/rec_005_t0001.safetensors"; then
        ok "the resumed run's final latents equal an uninterrupted run's, byte for byte"
    else
        bad "resumed and uninterrupted runs differ"
    fi
else
    bad "SIGINT left no .partial folder"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
