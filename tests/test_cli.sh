#!/bin/sh
# The `stem` program as a user meets it: help, op listing, running an op from a file,
# checking a golden file, and bad input (each: a clear message naming the culprit,
# a non-zero exit, and no output file left behind).
set -u
STEM=${STEM_BIN:-./stem}
REFDATA=${STEM_REFDATA:-refdata}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

# expect_fail NAME EXPECTED_SUBSTRING CMD...: non-zero exit, message on stderr, no out file
expect_fail() {
    name=$1; want=$2; shift 2
    rm -f "$tmp/out.safetensors"
    if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then
        bad "$name: exited 0"; return
    fi
    if ! grep -q -- "$want" "$tmp/stderr"; then
        bad "$name: stderr lacks '$want': $(cat "$tmp/stderr")"; return
    fi
    if [ -e "$tmp/out.safetensors" ]; then bad "$name: left an output file"; return; fi
    if ls "$tmp"/out.safetensors.tmp* >/dev/null 2>&1; then bad "$name: left a temporary file"; return; fi
    ok "$name"
}

golden=$(ls "$REFDATA"/golden/ops/conv2d__*.safetensors 2>/dev/null | head -n 1)

if "$STEM" --help | grep -q "usage: stem COMMAND"; then ok "stem --help"; else bad "stem --help"; fi
# every command `stem --help` lists (main.c's table) runs and answers --help
cmds=$("$STEM" --help | sed -n '/^commands:/,/^$/s/^  \([a-z]*\) .*/\1/p')
listed=0
for c in $cmds; do
    listed=$((listed + 1))
    if "$STEM" "$c" --help >/dev/null 2>&1; then ok "stem $c --help (listed by stem --help)"; else bad "stem $c --help"; fi
done
for c in invert op info; do
    case " $(echo $cmds) " in *" $c "*) ;; *) bad "stem --help does not list $c: $(echo $cmds)" ;; esac
done
[ "$listed" -ge 6 ] || bad "stem --help lists $listed commands"
if "$STEM" op --list | grep -q "^conv2d:"; then ok "stem op --list names conv2d"; else bad "stem op --list"; fi
if "$STEM" op conv2d --help | grep -q "padding"; then ok "stem op conv2d --help lists attributes"; else bad "op help"; fi
if "$STEM" system | grep -q "^cpu:"; then ok "stem system describes the cpu backend"; else bad "stem system"; fi

if [ -n "$golden" ]; then
    if "$STEM" op --check "$golden" >"$tmp/check" 2>&1 && grep -q "^ok" "$tmp/check"; then
        ok "stem op --check $(basename "$golden")"
    else
        bad "stem op --check: $(cat "$tmp/check")"
    fi
    # run the op by hand on the golden's inputs, with its attributes, and compare via --check's tolerance
    if "$STEM" op philox_normal --out "$tmp/p.safetensors" --attr shape=4,8 --attr seed=7 2>"$tmp/stderr" &&
        [ -s "$tmp/p.safetensors" ]; then ok "stem op philox_normal writes a file"; else bad "philox_normal: $(cat "$tmp/stderr")"; fi
else
    bad "no conv2d golden file under $REFDATA/golden/ops"
fi

expect_fail "unknown command" "unknown command 'frobnicate'" "$STEM" frobnicate
expect_fail "unknown op" "unknown op 'conv3d'" "$STEM" op conv3d --in x --out "$tmp/out.safetensors"
expect_fail "missing input file" "$tmp/missing.safetensors" "$STEM" op silu --in "$tmp/missing.safetensors" --out "$tmp/out.safetensors"
printf 'this is not a safetensors file' >"$tmp/junk.safetensors"
expect_fail "corrupt input file" "$tmp/junk.safetensors" "$STEM" op silu --in "$tmp/junk.safetensors" --out "$tmp/out.safetensors"
expect_fail "bad --dtype" "--dtype must be f32 or f16" "$STEM" op silu --in x --out "$tmp/out.safetensors" --dtype f64
expect_fail "malformed --attr" "is not KEY=VALUE" "$STEM" op silu --in x --out "$tmp/out.safetensors" --attr novalue
expect_fail "unknown backend" "unknown backend 'tpu'" "$STEM" op philox_normal --out "$tmp/out.safetensors" --attr shape=2 --backend tpu
expect_fail "missing required attribute" "needs --attr shape" "$STEM" op philox_normal --out "$tmp/out.safetensors"
expect_fail "unknown attribute" "has no attribute 'strid'" "$STEM" op philox_normal --out "$tmp/out.safetensors" --attr shape=2 --attr strid=2
expect_fail "non-integer attribute" "is not a comma-separated list of integers" "$STEM" op philox_normal --out "$tmp/out.safetensors" --attr shape=2x
if [ -n "$golden" ]; then
    silu=$(ls "$REFDATA"/golden/ops/silu__*.safetensors | head -n 1)
    expect_fail "input the op does not take" "op silu has no input 'y'" "$STEM" op silu --in "$tmp/p.safetensors" --out "$tmp/out.safetensors"
    expect_fail "missing op input" "needs input 'weight'" "$STEM" op linear --in "$silu" --out "$tmp/out.safetensors"
    expect_fail "unwritable output" "$tmp/nodir/out.safetensors" "$STEM" op philox_normal --out "$tmp/nodir/out.safetensors" --attr shape=2
fi


# ---- stem invert: the bundled default end to end (few steps), then bad input ----
if "$STEM" invert --steps 3 --bases 8 --out "$tmp/inv" --quiet >"$tmp/inv.log" 2>&1 &&
    [ -s "$tmp/inv/manifest.json" ] && [ -s "$tmp/inv/sheet.png" ] && [ -s "$tmp/inv/frames/recon/00000.png" ] &&
    [ -s "$tmp/inv/latents/inv_002_t0667.safetensors" ] && grep -q '"reconstruction_vs_input"' "$tmp/inv/manifest.json"; then
    ok "stem invert on the bundled default writes manifest, latents, frames, sheet"
else
    bad "stem invert default: $(cat "$tmp/inv.log")"
fi
if "$STEM" system | grep -q "^video: read and write"; then
    if [ -s "$tmp/inv/recon.mp4" ] &&
        "$STEM" invert --frames "$tmp/inv/recon.mp4" --n-frames 8 --prompt "noise" --steps 1 --bases 4 \
            --out "$tmp/inv-video" --quiet >"$tmp/vid.log" 2>&1; then
        ok "recon.mp4 written and read back with all 8 frames"
    else
        bad "recon.mp4: $(cat "$tmp/vid.log" 2>/dev/null)"
    fi
fi
expect_fail_dir() { # like expect_fail, but the culprit is an output folder that must not appear
    name=$1; want=$2; out=$3; shift 3
    if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then bad "$name: exited 0"; return; fi
    if ! grep -q -- "$want" "$tmp/stderr"; then bad "$name: stderr lacks '$want': $(cat "$tmp/stderr")"; return; fi
    if [ -e "$out/manifest.json" ]; then bad "$name: left a complete-looking output"; return; fi
    ok "$name"
}
mkdir -p "$tmp/empty" "$tmp/notimages" "$tmp/badimg"
echo hello >"$tmp/notimages/readme.txt"
printf 'not a png' >"$tmp/badimg/00000.png"
expect_fail_dir "invert: missing frames" "$tmp/nope" "$tmp/o1" "$STEM" invert --frames "$tmp/nope" --prompt x --out "$tmp/o1" --quiet
expect_fail_dir "invert: empty frame folder" "$tmp/empty" "$tmp/o2" "$STEM" invert --frames "$tmp/empty" --prompt x --out "$tmp/o2" --quiet
expect_fail_dir "invert: folder without images" "$tmp/notimages" "$tmp/o3" "$STEM" invert --frames "$tmp/notimages" --prompt x --out "$tmp/o3" --quiet
expect_fail_dir "invert: unreadable frame" "00000.png" "$tmp/o4" "$STEM" invert --frames "$tmp/badimg" --prompt x --out "$tmp/o4" --quiet
expect_fail_dir "invert: more frames than there are" "n-frames\\|frames" "$tmp/o5" "$STEM" invert --n-frames 999 --out "$tmp/o5" --quiet
expect_fail_dir "invert: bad --attention" "attention" "$tmp/o6" "$STEM" invert --attention global --out "$tmp/o6"
expect_fail_dir "invert: zero width" "--width" "$tmp/o7" "$STEM" invert --width 0 --out "$tmp/o7"
expect_fail_dir "invert: incomplete model folder" "$tmp/empty" "$tmp/o8" "$STEM" invert --model "$tmp/empty" --out "$tmp/o8" --quiet
expect_fail_dir "invert: output exists" "already exists" "$tmp/inv-none" "$STEM" invert --out "$tmp/inv" --quiet
expect_fail_dir "invert: prompt needed for own frames" "--prompt is required" "$tmp/o9" "$STEM" invert --frames "$tmp/inv/frames/input" --out "$tmp/o9"
expect_fail_dir "invert: video scope over the memory limit" "over the 1 MiB memory limit" "$tmp/o11" "$STEM" invert --mem-limit 1M --out "$tmp/o11" --quiet
if "$STEM" invert --steps 2 --bases 8 --em-scope chunk --batch-size 2 --mem-limit 3M --out "$tmp/sliced" 2>"$tmp/sliced.log" >/dev/null &&
    grep -q "frames per UNet evaluation" "$tmp/sliced.log" && [ -s "$tmp/sliced/manifest.json" ]; then
    ok "invert: --mem-limit slices chunk-scope UNet evaluations"
else
    bad "invert --mem-limit slicing: $(cat "$tmp/sliced.log")"
fi
if "$STEM" invert --steps 2 --bases 8 --mem-limit 5M --out "$tmp/layer" 2>"$tmp/layer.log" >/dev/null &&
    grep -q "layer-major UNet" "$tmp/layer.log" && grep -q '"layer_major_unet": *true' "$tmp/layer/manifest.json"; then
    ok "invert: --mem-limit runs video scope layer-major"
else
    bad "invert --mem-limit layer-major: $(cat "$tmp/layer.log")"
fi
expect_fail_dir "invert: f16 on cpu" "needs --backend cuda" "$tmp/o10" "$STEM" invert --dtype f16 --out "$tmp/o10"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
