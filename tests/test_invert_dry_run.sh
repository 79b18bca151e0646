#!/bin/sh
# `stem invert --dry-run`: the memory plan of a run, printed without running it or writing
# anything; the plan it prints is the one a real run takes (checked against options.json
# of real runs); a frame folder is counted, not decoded; `--frames N` plans N frames.
set -u
STEM=${STEM_BIN:-./stem}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

# nothing_written NAME: no output folder and no DIR.partial under $tmp/out
nothing_written() { [ ! -e "$tmp/out" ] && [ ! -e "$tmp/out.partial" ]; }

# ---- the bundled default: all 8 frames at once, nothing written ----
if "$STEM" invert --dry-run --out "$tmp/out" >"$tmp/plan" 2>"$tmp/err" && nothing_written &&
    grep -q "^frames: 8 frames 64x64 " "$tmp/plan" && grep -q "all 8 frames in each evaluation" "$tmp/plan" &&
    grep -q "frames_per_unet_evaluation 8, layer_major_unet false" "$tmp/plan" &&
    grep -q "^  weights " "$tmp/plan" && grep -q "^  UNet activations (estimate) " "$tmp/plan" &&
    grep -q "^host" "$tmp/plan" && grep -q "may be written" "$tmp/plan"; then
    ok "dry run of the bundled default: plan printed, exit 0, nothing written"
else
    bad "dry run of the bundled default: $(cat "$tmp/plan" "$tmp/err")"
fi

# ---- the plan is the run's: frames per evaluation and layer-major as options.json says ----
# $1: a name; the rest: options for both runs
same_plan() {
    name=$1; shift
    rm -rf "$tmp/real"
    if ! "$STEM" invert --dry-run "$@" --out "$tmp/out" >"$tmp/plan" 2>"$tmp/err" || ! nothing_written; then
        bad "$name: dry run failed or wrote: $(cat "$tmp/err")"; return
    fi
    if ! "$STEM" invert "$@" --steps 1 --bases 8 --out "$tmp/real" --quiet >/dev/null 2>"$tmp/err"; then
        bad "$name: real run failed: $(cat "$tmp/err")"; return
    fi
    n=$(sed -n 's/.*"frames_per_unet_evaluation": *\([0-9]*\).*/\1/p' "$tmp/real/options.json")
    lm=$(sed -n 's/.*"layer_major_unet": *\([a-z]*\).*/\1/p' "$tmp/real/options.json")
    if grep -q "frames_per_unet_evaluation $n, layer_major_unet $lm " "$tmp/plan"; then
        ok "$name: the dry run plans what the run does ($n frames per evaluation, layer-major $lm)"
    else
        bad "$name: the run took $n frames per evaluation, layer-major $lm; the dry run said: $(grep frames_per "$tmp/plan")"
    fi
}
same_plan "video scope over 5M" --mem-limit 5M
same_plan "chunk scope over 3M" --em-scope chunk --batch-size 2 --mem-limit 3M
same_plan "frame attention over 3M" --attention frame --mem-limit 3M
if "$STEM" invert --dry-run --mem-limit 5M --out "$tmp/out" 2>/dev/null | grep -q "layer-major: one evaluation of all 8 frames" &&
    "$STEM" invert --dry-run --mem-limit 5M --out "$tmp/out" 2>/dev/null | grep -q "of which all-frame state"; then
    ok "dry run says layer-major and the all-frame state it keeps"
else
    bad "dry run layer-major wording: $("$STEM" invert --dry-run --mem-limit 5M --out "$tmp/out" 2>&1)"
fi

# ---- a folder is counted, not decoded: only the first frame is read, and only for its size ----
clip=${STEM_REFDATA:-refdata}/clips/shapes
mkdir -p "$tmp/junk"
cp "$clip/$(ls "$clip" | head -n 1)" "$tmp/junk/00000.png"
for i in 1 2 3 4 5; do printf 'not a png' >"$tmp/junk/0000$i.png"; done
if "$STEM" invert --dry-run --frames "$tmp/junk" --out "$tmp/out" >"$tmp/plan" 2>"$tmp/err" && nothing_written &&
    grep -q "^frames: 6 frames 64x64 .*6 image files counted, the first decoded for its size" "$tmp/plan"; then
    ok "a frame folder is counted and only its first frame decoded"
else
    bad "dry run of a folder with undecodable later frames: $(cat "$tmp/plan" "$tmp/err")"
fi
if "$STEM" invert --dry-run --frames "$tmp/junk" --width 48 --height 40 --out "$tmp/out" >"$tmp/plan" 2>&1 &&
    grep -q "^frames: 6 frames 48x40 .*none decoded" "$tmp/plan"; then
    ok "with --width/--height no frame is decoded"
else
    bad "dry run with a size: $(cat "$tmp/plan")"
fi

# ---- --frames N: a count, no input ----
if "$STEM" invert --dry-run --frames 120 --width 64 --height 64 --out "$tmp/out" >"$tmp/plan" 2>"$tmp/err" &&
    nothing_written && grep -q "^frames: 120 frames 64x64 .*no input read" "$tmp/plan" &&
    grep -q "latents \[120, 4, 16, 16\]" "$tmp/plan"; then
    ok "--frames 120 --width 64 --height 64 plans 120 frames without input"
else
    bad "--frames N: $(cat "$tmp/plan" "$tmp/err")"
fi

# ---- what the run would refuse, the dry run refuses too (exit 2, the same message) ----
expect_refused() {
    name=$1; want=$2; shift 2
    rc=0
    "$STEM" invert --dry-run "$@" --out "$tmp/out" >"$tmp/plan" 2>"$tmp/err" || rc=$?
    if [ "$rc" -ne 2 ]; then bad "$name: exit $rc, not 2"; return; fi
    if ! grep -q -- "$want" "$tmp/err"; then bad "$name: stderr lacks '$want': $(cat "$tmp/err")"; return; fi
    if ! nothing_written; then bad "$name: wrote an output"; return; fi
    ok "$name"
}
expect_refused "over the memory limit" "over the 1 MiB memory limit" --mem-limit 1M
expect_refused "more frames than the folder has" "has 8 frames, but --n-frames asks for 20" --n-frames 20
expect_refused "a count without a size" "needs --width and --height" --frames 12
if "$STEM" invert --dry-run --mem-limit 1M --out "$tmp/out" 2>/dev/null | grep -q "the run would stop before its first step"; then
    ok "a plan that does not fit is still printed"
else
    bad "no plan printed when it does not fit"
fi

# ---- an existing output is reported, and left alone ----
mkdir -p "$tmp/out" && echo keep >"$tmp/out/mine.txt"
if "$STEM" invert --dry-run --out "$tmp/out" >"$tmp/plan" 2>&1 && grep -q "already exists" "$tmp/plan" &&
    [ "$(cat "$tmp/out/mine.txt")" = keep ] && [ ! -e "$tmp/out.partial" ]; then
    ok "an existing --out is reported, not touched"
else
    bad "existing --out: $(cat "$tmp/plan")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
