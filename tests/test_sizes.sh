#!/bin/sh
# Frame sizes that are not multiples of the VAE's downsampling factor, and the original's
# own YAML configs, through `stem invert` end to end (doc/frame-sizes.md). Every input is
# made here (tests/make_test_data): synthetic clips, and a factor-8 VAE (SD's) grown from the
# tiny model's factor-4 one. Each run must end with a complete output folder whose frames
# are the decoded size; each refused run must stop before its first step, with nothing
# left behind.
set -u
STEM=${STEM_BIN:-./stem}
MAKE=${STEM_TEST_DATA:-./tests/make_test_data}
REFDATA=${STEM_REFDATA:-refdata}
abs() { case $1 in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; } # the configs run from other folders
STEM=$(abs "$STEM"); MAKE=$(abs "$MAKE"); REFDATA=$(abs "$REFDATA")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
now() { date +%s; }
# OpenMP's default spin-waiting makes these short runs ~10x slower on a busy machine (measured:
# 0.7 s -> 10 s wall for one 64x64 run with 2 threads on 2 shared cores); results do not change
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# clips are videos when stem can write and read them, else PNG folders under the same names
video=no
if "$STEM" system | grep -q "^video: read and write"; then video=yes; fi

# check_out NAME DIR FRAMES IN_SIZE OUT_SIZE STEPS: DIR is a complete output of FRAMES
# frames, frames/input at IN_SIZE, everything else at OUT_SIZE, STEPS latents per phase
check_out() {
    name=$1; dir=$2; n=$3; in=$4; out=$5; steps=$6
    why=""
    [ -s "$dir/manifest.json" ] || why="$why; no manifest.json"
    [ -e "$dir.partial" ] && why="$why; $dir.partial left"
    [ -s "$dir/sheet.png" ] || why="$why; no sheet.png"
    got=$("$MAKE" probe "$dir/frames/input" 2>&1)
    [ "$got" = "$n $in" ] || why="$why; frames/input: $got, want $n $in"
    for d in frames/vae frames/recon; do
        got=$("$MAKE" probe "$dir/$d" 2>&1)
        [ "$got" = "$n $out" ] || why="$why; $d: $got, want $n $out"
    done
    if [ "$video" = yes ]; then
        got=$("$MAKE" probe "$dir/recon.mp4" 2>&1)
        [ "$got" = "$n $out" ] || why="$why; recon.mp4: $got, want $n $out"
    fi
    for phase in inv rec; do
        c=$(ls "$dir"/latents/${phase}_*.safetensors 2>/dev/null | wc -l)
        [ "$c" -eq "$steps" ] || why="$why; $c $phase latents, want $steps"
    done
    grep -q "\"output\": *\"$out\"" "$dir/manifest.json" 2>/dev/null || why="$why; manifest lacks output $out"
    grep -q "\"metrics_region\": *\"top-left $out of the input" "$dir/manifest.json" 2>/dev/null ||
        why="$why; manifest lacks metrics_region top-left $out"
    grep -q '"reconstruction_vs_input"' "$dir/manifest.json" 2>/dev/null || why="$why; no metrics"
    if [ -z "$why" ]; then ok "$name"; else bad "$name:$why"; fi
}

# mean PSNR of the VAE round trip vs input from the manifest, and recomputed from the PNGs
# on the input's top-left region; the PNGs are 8-bit (the manifest's floats are not): that
# moves PSNR by ~1e-4 dB at these error levels, so 0.01 dB is a 100x margin, while the
# bottom-right region instead moves it by 0.06 dB (factor 4) and 0.27 dB (factor 8), measured
check_metrics_region() {
    name=$1; dir=$2
    want=$(tr -d ' \n' <"$dir/manifest.json" | sed 's/.*"vae_roundtrip_vs_input":{[^}]*"mean_psnr_db":\([-0-9.e+]*\).*/\1/')
    got=$("$MAKE" psnr "$dir/frames/input" "$dir/frames/vae" 2>&1)
    number='^-\{0,1\}[0-9][0-9]*\.[0-9]'
    if echo "$want" | grep -q "$number" && echo "$got" | grep -q "$number" &&
        awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 0.01) }'; then
        ok "$name: metrics on the input's top-left region ($got dB)"
    else
        bad "$name: manifest VAE round trip PSNR $want dB, recomputed on the top-left region $got dB"
    fi
}

ext=.mp4
[ "$video" = yes ] || ext=.frames
t0=$(now)
"$MAKE" clip "$tmp/c86x48$ext" 86 48 3 || bad "make clip 86x48"
"$MAKE" clip "$tmp/c86x60$ext" 86 60 3 || bad "make clip 86x60"
"$MAKE" vae8 "$REFDATA/models/tiny-sd1" "$tmp/tiny-sd1-f8" || bad "make the factor-8 model"

# ---- odd sizes: 86x48 has 854x480's remainders mod 8 and mod 4 (6, 0 and 2, 0) ----
# run_one MODEL LABEL OUT_SIZE MODE [MEM_LIMIT]: 3 frames of 86x48, 1 step, decoding to OUT_SIZE;
# MODE stem | frame | inflated, or stem-layer | inflated-layer (video scope over slices: MEM_LIMIT
# fits the all-frame state plus a 1-frame slice, not all 3 frames at once, by the estimates of
# stem_invert_plan_memory) or frame-sliced (fewer frames per evaluation)
run_one() {
    model=$1; label=$2; out=$3; mode=$4; limit=${5:-}
    o="$tmp/$label-$mode"
    attention=${mode%-*}
    set -- --model "$model" --frames "$tmp/c86x48$ext" --prompt "a test clip" --steps 1 --bases 8 \
        --attention "$attention" --out "$o"
    [ -n "$limit" ] && set -- "$@" --mem-limit "$limit"
    want=""
    case $mode in
    *-layer) want="layer-major UNet" ;;
    *-sliced) want="frames per UNet evaluation" ;;
    esac
    if "$STEM" invert "$@" >"$o.log" 2>&1 && { [ -z "$want" ] || grep -q "$want" "$o.log"; }; then
        check_out "$label --attention $mode: 86x48 -> $out" "$o" 3 86x48 "$out" 1
    else
        bad "$label --attention $mode 86x48: $(cat "$o.log")"
    fi
}
sd1="$REFDATA/models/tiny-sd1"
for mode in stem frame inflated; do run_one "$sd1" tiny-sd1 84x48 $mode; done
for mode in stem-layer inflated-layer frame-sliced; do run_one "$sd1" tiny-sd1 84x48 $mode 1600K; done
run_one "$REFDATA/models/tiny-sd2" tiny-sd2 84x48 stem
run_one "$REFDATA/models/tiny-sd2" tiny-sd2 84x48 inflated-layer 1600K
for mode in stem frame inflated; do run_one "$tmp/tiny-sd1-f8" tiny-sd1-f8 80x48 $mode; done
for mode in stem-layer inflated-layer; do run_one "$tmp/tiny-sd1-f8" tiny-sd1-f8 80x48 $mode 300K; done
check_metrics_region "tiny-sd1 86x48" "$tmp/tiny-sd1-stem"
check_metrics_region "tiny-sd1-f8 86x48" "$tmp/tiny-sd1-f8-stem"
o="$tmp/f8-86x60"
if "$STEM" invert --model "$tmp/tiny-sd1-f8" --frames "$tmp/c86x60$ext" --prompt "a test clip" --steps 2 --bases 8 \
    --out "$o" --quiet >"$o.log" 2>&1; then
    check_out "tiny-sd1-f8: 86x60 -> 80x56, 2 steps" "$o" 3 86x60 80x56 2
else
    bad "tiny-sd1-f8 86x60: $(cat "$o.log")"
fi
echo "# odd sizes: $(($(now) - t0)) s"

# ---- refused before the first step: nothing written, no .partial ----
# expect_refused NAME WANT OUT CMD...: non-zero exit, WANT on stderr, no OUT nor OUT.partial
expect_refused() {
    name=$1; want=$2; out=$3; shift 3
    if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then bad "$name: exited 0"; return; fi
    if ! grep -q -- "$want" "$tmp/stderr"; then bad "$name: stderr lacks '$want': $(cat "$tmp/stderr")"; return; fi
    if [ -e "$out" ] || [ -e "$out.partial" ]; then bad "$name: left $out or $out.partial"; return; fi
    ok "$name"
}
"$MAKE" clip "$tmp/c6x6.frames" 6 6 2 || bad "make clip 6x6"
expect_refused "frames smaller than the VAE's factor 8" "needs at least 8x8" "$tmp/r1" \
    "$STEM" invert --model "$tmp/tiny-sd1-f8" --frames "$tmp/c6x6.frames" --prompt x --out "$tmp/r1" --quiet
expect_refused "a contact sheet wider than PNG allows, before the first step" "contact sheet" "$tmp/r2" \
    "$STEM" invert --frames "$tmp/c86x48$ext" --prompt x --width 6000 --height 8 --steps 1 --out "$tmp/r2" --quiet

# ---- the original's four configs, unchanged, from a folder holding data/<name>.mp4 ----
# (--backend cpu over their device: 'cuda', 2 frames and 1 step over n_frames, n_inversion_steps)
# config, the clip it names, its size, the tiny VAE's output size (factor 4)
for entry in tennis:tennis:854x480:852x480 taylor:taylor:640x360:640x360 mallard:mallard:512x512:512x512 \
    woman_running:woman-running:512x512:512x512; do
    cfg=$(echo "$entry" | cut -d: -f1); clip=$(echo "$entry" | cut -d: -f2)
    size=$(echo "$entry" | cut -d: -f3); out=$(echo "$entry" | cut -d: -f4)
    yaml="$REFDATA/configs/config_pnp_$cfg.yaml"
    grep -q "data_path: 'data/$clip.mp4'" "$yaml" && grep -q "width: ${size%x*}$" "$yaml" &&
        grep -q "height: ${size#*x}$" "$yaml" || bad "$yaml: not data/$clip.mp4 at $size"
    d="$tmp/cfg-$cfg"
    mkdir -p "$d/data"
    "$MAKE" clip "$d/data/$clip.mp4" "${size%x*}" "${size#*x}" 2 || bad "make clip $clip $size"
    t1=$(now)
    if (cd "$d" && STEM_MODEL="$REFDATA/models/tiny-sd1" "$STEM" invert --config "$yaml" --backend cpu --n-frames 2 \
        --steps 1 --quiet) >"$d.log" 2>&1; then
        check_out "config_pnp_$cfg.yaml: $size -> $out ($(($(now) - t1)) s)" "$d/Stem_Inv_Latents/base_256_iter_5" 2 \
            "$size" "$out" 1
    else
        bad "config_pnp_$cfg.yaml: $(cat "$d.log")"
    fi
done
# the frame count the config asks for (n_frames: 50) is more than the clip has: named as the config's
d="$tmp/cfg-tennis"
rm -rf "$d/Stem_Inv_Latents"
yaml="$REFDATA/configs/config_pnp_tennis.yaml"
expect_refused "config n_frames over the clip's frames names n_frames" "but n_frames ($yaml) asks for 50" \
    "$d/Stem_Inv_Latents/base_256_iter_5" \
    sh -c "cd '$d' && STEM_MODEL='$REFDATA/models/tiny-sd1' '$STEM' invert --config '$yaml' --backend cpu --quiet"
expect_refused "--n-frames over the clip's frames names --n-frames" "but --n-frames asks for 5" \
    "$d/Stem_Inv_Latents/base_256_iter_5" \
    sh -c "cd '$d' && STEM_MODEL='$REFDATA/models/tiny-sd1' '$STEM' invert --config '$yaml' --backend cpu --n-frames 5 --quiet"
echo "# total: $(($(now) - t0)) s"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
