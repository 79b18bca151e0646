#!/bin/sh
# `stem edit` as a user meets it, on the bundled tiny model and clip (6 frames of 64x64, 2 DDIM
# steps, batch size 4: two chunks, the second shorter): the whole job (invert + edit) and its
# outputs, reusing an inversion, --drop-tail, the original's YAML config, --resume continuing
# byte for byte, --dry-run, and bad input (a clear message naming the culprit, a non-zero
# exit, and nothing under the output's name).
set -u
STEM=${STEM_BIN:-./stem}
REFDATA=${STEM_REFDATA:-refdata}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

small="--n-frames 6 --batch-size 4 --steps 2 --bases 4"
# png_size FILE: "W H" from the IHDR chunk
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}'; }
# json_has FILE TEXT: the JSON file holds TEXT (json-c's pretty print: "key":value, one per line)
json_has() { grep -q -- "$2" "$1"; }

# ---- help -------------------------------------------------------------------------------
if "$STEM" edit --help >"$tmp/help" && grep -q -- "--inversion DIR" "$tmp/help" && grep -q -- "--config" "$tmp/help" &&
    grep -q -- "--dry-run" "$tmp/help" && grep -q "input | reconstruction | edit" "$tmp/help"; then
    ok "stem edit --help names the inversion, config, dry run and outputs"
else
    bad "stem edit --help"
fi
if "$STEM" --help | grep -q "^  edit "; then ok "stem --help lists edit"; else bad "stem --help lacks edit"; fi

# ---- the whole job: invert into OUT/inversion, then edit ---------------------------------
out="$tmp/job"
if "$STEM" edit $small --out "$out" >"$tmp/job.out" 2>"$tmp/job.err"; then
    ok "stem edit with no --inversion inverts first and edits (bundled default)"
else
    bad "whole job: $(cat "$tmp/job.err")"
fi
m="$out/manifest.json"
if [ -s "$m" ] && json_has "$m" '"tool":"stem edit' && [ -s "$out/inversion/manifest.json" ] && [ ! -e "$out.partial" ] &&
    json_has "$m" '"made_by_this_run":true'; then
    ok "the job wrote OUT (manifest.json \"stem edit\", inversion/ finished), no OUT.partial left"
else
    bad "job outputs: $(ls "$out" 2>&1)"
fi
n_lat=$(ls "$out/latents" 2>/dev/null | grep -c '^edit_00[01]_t0*[0-9]*\.safetensors$')
if [ "$n_lat" = 2 ] && [ -s "$out/latents/edit_000_t0501.safetensors" ] && [ -s "$out/latents/edit_001_t0001.safetensors" ]; then
    ok "latents/edit_SSS_tTTTT.safetensors after each of the 2 steps"
else
    bad "edit latents: $(ls "$out/latents" 2>&1)"
fi
if [ "$(ls "$out/frames/edit" 2>/dev/null | wc -l)" -eq 6 ] && json_has "$m" '"edited":6' && json_has "$m" '"tail":"every"' &&
    json_has "$m" '"dropped":0' && json_has "$m" '"chunks":2'; then
    ok "every frame edited (6 frames, 2 chunks, the last shorter), the manifest says so"
else
    bad "frames/edit: $(ls "$out/frames/edit" 2>&1)"
fi
if json_has "$m" '"temporal_mad_vs_input"' && json_has "$m" '"mean_abs_frame_difference"' && json_has "$m" '"editing_s"' &&
    json_has "$m" '"fingerprint_fnv1a64"' && json_has "$m" '"json_c"' && json_has "$m" '"guidance_scale":7.5'; then
    ok "manifest.json: options, model fingerprint, versions, timings, temporal consistency"
else
    bad "manifest lacks a section"
fi
# the sheet: 3 columns of 64 px + 2 gaps; a label strip (24 px at this size) above 4 rows
if [ "$(png_size "$out/sheet.png")" = "200 292" ] && [ "$(png_size "$out/inversion/sheet.png")" = "200 268" ]; then
    ok "sheet.png: input | reconstruction | edit with a label strip (stem invert's sheet unlabelled, as before)"
else
    bad "sheet sizes: $(png_size "$out/sheet.png") / $(png_size "$out/inversion/sheet.png")"
fi
if json_has "$m" '"video":true'; then
    [ -s "$out/edit.mp4" ] && ok "edit.mp4 written" || bad "manifest says video but no edit.mp4"
else
    [ ! -e "$out/edit.mp4" ] && json_has "$m" no_video_because && ok "no edit.mp4, and the manifest says why" || bad "edit.mp4"
fi
if grep -q "never fires" "$tmp/job.err" && json_has "$m" '"freeu_acts":false'; then
    ok "FreeU on a UNet without 1280/640 widths: a note, and the manifest says it did not act"
else
    bad "FreeU note: $(cat "$tmp/job.err")"
fi
if grep -q "wrote $out" "$tmp/job.out" && grep -q -- "--inversion $out/inversion" "$tmp/job.out"; then
    ok "it says where the result is and how to reuse the inversion"
else
    bad "job stdout: $(cat "$tmp/job.out")"
fi

# ---- reusing the inversion ----------------------------------------------------------------
inv="$out/inversion"
if "$STEM" edit --inversion "$inv" --prompt "a blue circle" --out "$tmp/reuse" --quiet >/dev/null 2>"$tmp/reuse.err" &&
    [ -s "$tmp/reuse/manifest.json" ] && [ ! -e "$tmp/reuse/inversion" ] && ! grep -q "inverting first" "$tmp/reuse.err" &&
    json_has "$tmp/reuse/manifest.json" '"made_by_this_run":false'; then
    ok "--inversion DIR edits a finished inversion without inverting again"
else
    bad "--inversion reuse: $(cat "$tmp/reuse.err")"
fi
if "$STEM" edit --inversion "$inv" --prompt "a blue circle" --drop-tail --batch-size 4 --out "$tmp/drop" --quiet >/dev/null 2>&1 &&
    [ "$(ls "$tmp/drop/frames/edit" | wc -l)" -eq 4 ] && json_has "$tmp/drop/manifest.json" '"dropped":2' &&
    json_has "$tmp/drop/manifest.json" '"tail":"drop"'; then
    ok "--drop-tail edits 4 of 6 frames (a multiple of --batch-size 4), as the original"
else
    bad "--drop-tail"
fi

# ---- --resume: interrupted after step 1, continued, equal to an uninterrupted run ---------
if STEM_EDIT_TEST_INTERRUPT_AFTER_STEP=1 "$STEM" edit --inversion "$inv" --prompt "a blue circle" --out "$tmp/int" \
    >/dev/null 2>"$tmp/int.err"; then
    bad "an interrupted run exited 0"
elif grep -q "interrupted after editing step 1 of 2" "$tmp/int.err" && [ ! -e "$tmp/int" ] &&
    [ -s "$tmp/int.partial/latents/edit_000_t0501.safetensors" ] && [ ! -e "$tmp/int.partial/latents/edit_001_t0001.safetensors" ]; then
    ok "Ctrl-C after step 1: non-zero exit, step 1 saved in OUT.partial, no OUT"
else
    bad "interrupt: $(cat "$tmp/int.err")"
fi
expect_fail_keep() { # the .partial must stay (it is the interrupted run)
    name=$1; want=$2; shift 2
    if "$@" >/dev/null 2>"$tmp/stderr"; then bad "$name: exited 0"; return; fi
    if grep -q -- "$want" "$tmp/stderr" && [ -d "$tmp/int.partial" ]; then ok "$name"; else bad "$name: $(cat "$tmp/stderr")"; fi
}
expect_fail_keep "--resume with other options names each with both values" "guidance_scale: 7.5 there, 5.0 now" \
    "$STEM" edit --inversion "$inv" --prompt "a blue circle" --out "$tmp/int" --resume --guidance-scale 5 --quiet
if "$STEM" edit --inversion "$inv" --prompt "a blue circle" --out "$tmp/int" --resume >/dev/null 2>"$tmp/res.err" &&
    grep -q "resuming after editing step 1/2" "$tmp/res.err" && json_has "$tmp/int/manifest.json" '"resumed":true' &&
    cmp -s "$tmp/int/latents/edit_001_t0001.safetensors" "$tmp/reuse/latents/edit_001_t0001.safetensors" &&
    cmp -s "$tmp/int/frames/edit/00005.png" "$tmp/reuse/frames/edit/00005.png"; then
    ok "--resume continues after step 1; latents and frames equal the uninterrupted run's, byte for byte"
else
    bad "--resume: $(cat "$tmp/res.err")"
fi
# the whole job interrupted after its inversion and one edit step, then resumed
if STEM_EDIT_TEST_INTERRUPT_AFTER_STEP=1 "$STEM" edit $small --out "$tmp/job2" --quiet >/dev/null 2>&1; then
    bad "interrupted job exited 0"
elif "$STEM" edit $small --out "$tmp/job2" --resume >/dev/null 2>"$tmp/job2.err" && ! grep -q "inverting first" "$tmp/job2.err" &&
    cmp -s "$tmp/job2/latents/edit_001_t0001.safetensors" "$out/latents/edit_001_t0001.safetensors"; then
    ok "the whole job resumed: its finished inversion reused, the edit equal to the uninterrupted job's"
else
    bad "job --resume: $(cat "$tmp/job2.err")"
fi

# ---- the original's config, unchanged but for its paths -----------------------------------
sed -e "s|data/tennis.mp4|$REFDATA/clips/shapes|; s|854|64|; s|480|64|; s|n_frames: 50|n_frames: 6|" \
    -e "s|n_inversion_steps: 50|n_inversion_steps: 2|; s|n_timesteps: 50|n_timesteps: 2|; s|batch_size: 8|batch_size: 4|" \
    -e "s|'Stem_Inv_Latents/base_256_iter_5'|'$tmp/cfg-inv'|; s|'STEM_TF_results'|'$tmp/cfg-out'|; s|'cuda'|'cpu'|" \
    -e 's|"ugly, blurry, low res, unrealistic, unaesthetic"|"blurry, dark"|' \
    "$REFDATA/configs/config_pnp_tennis.yaml" >"$tmp/cfg.yaml"
export STEM_MODEL_SD15="$REFDATA/models/shapes-sd1"
if "$STEM" edit --config "$tmp/cfg.yaml" --bases 4 --quiet >/dev/null 2>"$tmp/cfg.err" && [ -s "$tmp/cfg-inv/manifest.json" ] &&
    json_has "$tmp/cfg-out/manifest.json" '"prompt":"Spider-Man is playing tennis"' &&
    json_has "$tmp/cfg-out/manifest.json" '"negative_prompt":"blurry, dark"'; then
    ok "--config: inverts into latents_path, edits with prompt/negative_prompt into output_path"
else
    bad "--config: $(cat "$tmp/cfg.err")"
fi
if "$STEM" edit --config "$tmp/cfg.yaml" --force --guidance-scale 6 >/dev/null 2>"$tmp/cfg2.err" &&
    ! grep -q "inverting first" "$tmp/cfg2.err" && json_has "$tmp/cfg-out/manifest.json" '"guidance_scale":6.0'; then
    ok "--config again: latents_path reused, a flag overrides the config"
else
    bad "--config reuse: $(cat "$tmp/cfg2.err")"
fi
sed 's/n_timesteps: 2/n_timesteps: 3/; s/n_inversion_steps: 2/n_inversion_steps: 3/' "$tmp/cfg.yaml" >"$tmp/cfg3.yaml"
sed 's/n_timesteps: 2/n_timesteps: 3/' "$tmp/cfg.yaml" >"$tmp/cfg5.yaml"
sed 's/pnp_attn_t: 0.5/pnp_attn_t: 2/' "$tmp/cfg.yaml" >"$tmp/cfg4.yaml"
unset STEM_MODEL_SD15

# ---- the PyTorch editing reference, through the command line ------------------------------
# A golden of refdata/golden/edit (gen_edit.py, float64: a STEM inversion, prompts, options,
# the edited latents after steps 0, 1 and S-1) as a `stem invert` folder and the original's
# YAML; stem edit --config on it must land within the golden's tolerance at each of them:
# x_T from the 8-bit frames, the source latents streamed per step, the prompts, the flags.
G=${STEM_EDIT_GOLDEN_INVERSION:-}
if [ -x "$G" ]; then
    for c in tiny-sd1__f6_b3 tiny-sd1__f8_b3_drop tiny-sd1__f6_b3_stem tiny-freeu__f4_b2_freeu; do
        golden="$REFDATA/golden/edit/$c.safetensors"
        if flags=$("$G" folder "$golden" "$REFDATA/models/${c%%__*}" "$tmp/g-$c" "$tmp/g-$c.yaml" 2>"$tmp/g.err") &&
            "$STEM" edit --config "$tmp/g-$c.yaml" --out "$tmp/g-$c-out" --quiet $flags >/dev/null 2>>"$tmp/g.err" &&
            "$G" compare "$golden" "$tmp/g-$c-out" >"$tmp/g.cmp" 2>>"$tmp/g.err"; then
            ok "golden $c${flags:+ ($flags)}: within tolerance after steps 0, 1, S-1 ($(tr '\n' ';' <"$tmp/g.cmp" | sed 's/ of the tolerance ([^)]*)//g'))"
        else
            bad "golden $c: $(cat "$tmp/g.err" "$tmp/g.cmp" 2>/dev/null)"
        fi
    done
else
    echo "skip the editing goldens: STEM_EDIT_GOLDEN_INVERSION (tests/edit_golden_inversion) is not set (make check sets it)"
fi

# ---- bad input ---------------------------------------------------------------------------
# expect_fail NAME EXPECTED_SUBSTRING CMD...: non-zero exit, the message, nothing at $tmp/bad*
expect_fail() {
    name=$1; want=$2; shift 2
    rm -rf "$tmp/bad" "$tmp/bad.partial"
    if "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then bad "$name: exited 0"; return; fi
    if ! grep -q -- "$want" "$tmp/stderr"; then bad "$name: stderr lacks '$want': $(cat "$tmp/stderr")"; return; fi
    if [ -e "$tmp/bad" ] || [ -e "$tmp/bad.partial" ]; then bad "$name: left output behind"; return; fi
    ok "$name"
}
E() { "$STEM" edit --out "$tmp/bad" --quiet "$@"; }
expect_fail "--inversion missing" "no such folder" E --inversion "$tmp/nothing" --prompt x
mkdir -p "$tmp/half.partial"
expect_fail "--inversion interrupted (only DIR.partial)" "is not finished" E --inversion "$tmp/half" --prompt x
mkdir -p "$tmp/empty"
expect_fail "--inversion without manifest.json" "has no readable manifest.json" E --inversion "$tmp/empty" --prompt x
cp -r "$inv" "$tmp/gap" && rm "$tmp/gap/latents/inv_001_t0501.safetensors"
expect_fail "--inversion missing a step's latents" "latents of inversion step 2 of 2 are missing" E --inversion "$tmp/gap" --prompt x
cp -r "$inv" "$tmp/dmg" && f="$tmp/dmg/latents/inv_000_t0001.safetensors" && size=$(wc -c <"$f") &&
    printf '\001' | dd of="$f" bs=1 seek=$((size - 7)) conv=notrunc 2>/dev/null
expect_fail "--inversion with a damaged latent" "do not match their checksum" E --inversion "$tmp/dmg" --prompt x
expect_fail "another model than the inversion's" "is not the model of --inversion" \
    E --inversion "$inv" --prompt x --model "$REFDATA/models/tiny-sd1"
expect_fail "other steps than the inversion's" "--steps 3: --inversion $inv has 2 steps" E --inversion "$inv" --prompt x --steps 3
expect_fail "other frame count" "--n-frames 4: --inversion $inv has 6 frames" E --inversion "$inv" --prompt x --n-frames 4
expect_fail "other size" "--width 32: --inversion $inv is 64x64" E --inversion "$inv" --prompt x --width 32
expect_fail "--frames with --inversion" "--frames would make another" E --inversion "$inv" --prompt x --frames "$REFDATA/clips/shapes"
expect_fail "config n_timesteps against the inversion" "n_timesteps ($tmp/cfg3.yaml) 3" \
    E --config "$tmp/cfg3.yaml" --inversion "$inv"
expect_fail "config n_timesteps and n_inversion_steps differ" "n_timesteps 3 and n_inversion_steps 2 differ" \
    E --config "$tmp/cfg5.yaml"
expect_fail "config pnp_attn_t out of range" "pnp_attn_t" E --config "$tmp/cfg4.yaml" --inversion "$inv"
expect_fail "--guidance-scale out of range" "--guidance-scale must be a number in \[0, 100\]" E --inversion "$inv" --prompt x --guidance-scale 101
expect_fail "--pnp-attn-t out of range" "--pnp-attn-t must be a number in \[0, 1\]" E --inversion "$inv" --prompt x --pnp-attn-t 1.5
expect_fail "--pnp-f-t out of range" "--pnp-f-t must be a number in \[0, 1\]" E --inversion "$inv" --prompt x --pnp-f-t -0.1
expect_fail "--batch-size 0" "--batch-size must be an integer in 1..4096" E --inversion "$inv" --prompt x --batch-size 0
expect_fail "--freeu-gate malformed" "--freeu-gate: must be two channel counts" E --inversion "$inv" --prompt x --freeu-gate 1280
expect_fail "--edit-attention unknown" "expected extended or stem" E --inversion "$inv" --prompt x --edit-attention full
expect_fail "--prompt missing with --inversion" "--prompt is required" E --inversion "$inv"
expect_fail "unknown option" "unknown option '--frobnicate'" E --inversion "$inv" --prompt x --frobnicate
expect_fail "--drop-tail leaving no frame" "leaves none of the 6 frames" E --inversion "$inv" --prompt x --drop-tail --batch-size 8
expect_fail "--out exists (not ours)" "already exists" "$STEM" edit --inversion "$inv" --prompt x --out "$tmp/empty" --quiet
long=$(printf 'a red square %.0s' $(seq 1 40))
if "$STEM" edit --inversion "$inv" --prompt "$long" --out "$tmp/long" --quiet >/dev/null 2>"$tmp/long.err" &&
    grep -q "\-\-prompt is longer than 77 CLIP tokens and was truncated" "$tmp/long.err" &&
    json_has "$tmp/long/manifest.json" '"prompt":true'; then
    ok "a prompt over 77 tokens: truncated with a warning, recorded in the manifest"
else
    bad "long prompt: $(cat "$tmp/long.err")"
fi

# ---- --dry-run: the plan, nothing written --------------------------------------------------
if "$STEM" edit --dry-run $small --out "$tmp/dry" >"$tmp/dry.out" 2>&1 && [ ! -e "$tmp/dry" ] && [ ! -e "$tmp/dry.partial" ] &&
    grep -q "^edit plan: 6 frames of 64x64" "$tmp/dry.out" && grep -q "keyframe caches" "$tmp/dry.out" &&
    grep -q "normal pass 4 per branch; fits" "$tmp/dry.out" && grep -q "^inversion plan" "$tmp/dry.out"; then
    ok "--dry-run prints the edit and inversion plans and writes nothing"
else
    bad "--dry-run: $(cat "$tmp/dry.out")"
fi
# full-size SD 1.5 from config.json alone (bench/sd15-config has no weights): 500 frames under 16 GiB
sd15="$REFDATA/../bench/sd15-config"
if "$STEM" edit --dry-run --model "$sd15" --frames 500 --width 512 --height 512 --mem-limit 16G --prompt x >"$tmp/d500" 2>&1 &&
    grep -q "500 edited" "$tmp/d500" && grep -q "^  host    keyframe caches" "$tmp/d500" && grep -q "layer-major" "$tmp/d500" &&
    grep -q "; fits$" "$tmp/d500"; then
    ok "--dry-run at full size from config.json files: 500 frames at 512x512 fit 16 GiB (caches on the host)"
else
    bad "--dry-run sd15 500: $(cat "$tmp/d500")"
fi
# the dry run builds the UNet from config.json alone: its plan is the loaded model's, which
# the job above recorded (memory.plan_device_bytes)
bytes=$(grep '"plan_device_bytes"' "$m" | tr -dc 0-9)
mib=$(( (bytes + 524288) / 1048576 ))
if "$STEM" edit --dry-run --inversion "$inv" --prompt x --batch-size 4 --out "$tmp/dry" >"$tmp/dry2" 2>&1 &&
    grep -q "^edit plan: 6 frames" "$tmp/dry2" && ! grep -q "^inversion plan" "$tmp/dry2" &&
    grep "^  device  total" "$tmp/dry2" | grep -q " $mib MiB$"; then
    ok "--dry-run --inversion DIR plans the edit of that inversion, as the run planned it ($mib MiB on the device)"
else
    bad "--dry-run --inversion (the run planned $bytes bytes): $(cat "$tmp/dry2")"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
