#!/bin/sh
# `stem invert --model FILE.safetensors`: the tiny single-file checkpoints
# (refdata/models/tiny-sd{1,2}.safetensors, made from the folders and checked by
# diffusers' own single-file loader in refdata/gen/gen_single_file.py) invert to the
# same latents as their folders, bit for bit, for every step of inversion and
# reconstruction: with the folder as --model-config, and with a JSON that sets only what
# shapes cannot give (then the bundled CLIP tokenizer and SD's DDIM schedule are used).
# Without the override the tiny file is refused with a message naming the key, and no
# output folder is left. `stem edit` takes the same --model FILE --model-config (its edit
# equals the folder's; an inversion made from the file passes them on; --dry-run reads
# the header only).
set -u
STEM=${STEM_BIN:-./stem}
REFDATA=${STEM_REFDATA:-refdata}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

run() { # OUT ARGS...: a 2-frame, 2-step inversion of the synthetic clip
    out=$1; shift
    "$STEM" invert "$@" --frames "$REFDATA/clips/synthetic" --n-frames 2 --steps 2 --prompt "a duck on a pond" \
        --threads 1 --quiet --out "$out" >"$out.log" 2>&1
}

# every latents file of $1 equals $2's (and there are some)
same_latents() {
    n=0
    for f in "$1"/latents/*.safetensors; do
        [ -e "$f" ] || return 1
        cmp -s "$f" "$2/latents/$(basename "$f")" || { echo "  differs: $(basename "$f")"; return 1; }
        n=$((n + 1))
    done
    [ "$n" -gt 0 ] && [ "$n" -eq "$(ls "$2"/latents | wc -l)" ]
}

if "$STEM" invert --help | grep -q -- "--model-config"; then ok "stem invert --help names --model-config"; else bad "help"; fi

printf '%s' '{"unet": {"attention_head_dim": 2, "norm_num_groups": 8}, "vae": {"norm_num_groups": 4}, "text_encoder": {"num_attention_heads": 2}}' >"$tmp/tiny-sd1.json"
printf '%s' '{"unet": {"attention_head_dim": [2, 4], "norm_num_groups": 8}, "vae": {"norm_num_groups": 4}, "text_encoder": {"num_attention_heads": 2}}' >"$tmp/tiny-sd2.json"
for m in tiny-sd1 tiny-sd2; do
    file="$REFDATA/models/$m.safetensors"
    if ! run "$tmp/$m-folder" --model "$REFDATA/models/$m"; then bad "$m: folder run: $(cat "$tmp/$m-folder.log")"; continue; fi
    if run "$tmp/$m-file" --model "$file" --model-config "$REFDATA/models/$m" && same_latents "$tmp/$m-file" "$tmp/$m-folder"; then
        ok "$m: file + --model-config folder: latents bit-identical to the folder's"
    else
        bad "$m: file + --model-config folder: $(cat "$tmp/$m-file.log")"
    fi
    if run "$tmp/$m-json" --model "$file" --model-config "$tmp/$m.json" && same_latents "$tmp/$m-json" "$tmp/$m-folder"; then
        ok "$m: file + JSON override (configs from shapes, bundled tokenizer, SD schedule): bit-identical"
    else
        bad "$m: file + JSON override: $(cat "$tmp/$m-json.log")"
    fi
    if grep -Eq '"tokenizer": *"bundled CLIP tokenizer' "$tmp/$m-json/manifest.json" 2>/dev/null; then
        ok "$m: manifest says which tokenizer a single file ran with"
    else
        bad "$m: manifest lacks the tokenizer"
    fi
    if run "$tmp/$m-none" --model "$file"; then
        bad "$m: file without --model-config exited 0"
    elif grep -q "num_attention_heads" "$tmp/$m-none.log" && grep -q -- "--model-config" "$tmp/$m-none.log" &&
        [ ! -e "$tmp/$m-none" ] && [ ! -e "$tmp/$m-none.partial" ]; then
        ok "$m: file without --model-config: refused naming the key, no output"
    else
        bad "$m: file without --model-config: $(cat "$tmp/$m-none.log")"
    fi
done

# ---- stem edit takes the same --model FILE --model-config ------------------------------------
edit() { # OUT ARGS...: a 2-step edit of 2 frames, inverting first unless --inversion is given
    out=$1; shift
    "$STEM" edit "$@" --prompt "a swan on a pond" --batch-size 2 --threads 1 --quiet --out "$out" >"$out.log" 2>&1
}
inv_args="--frames $REFDATA/clips/synthetic --n-frames 2 --steps 2 --inversion-prompt"
file="$REFDATA/models/tiny-sd1.safetensors"
# every edit_*.safetensors of $1 equals $2's
same_edit() {
    n=0
    for f in "$1"/latents/edit_*.safetensors; do
        [ -e "$f" ] && cmp -s "$f" "$2/latents/$(basename "$f")" || return 1
        n=$((n + 1))
    done
    [ "$n" -eq 2 ]
}
if edit "$tmp/e-folder" --model "$REFDATA/models/tiny-sd1" $inv_args "a duck on a pond" &&
    edit "$tmp/e-file" --model "$file" --model-config "$tmp/tiny-sd1.json" $inv_args "a duck on a pond" &&
    same_edit "$tmp/e-file" "$tmp/e-folder"; then
    ok "stem edit --model FILE --model-config JSON: edit latents bit-identical to the folder's"
else
    bad "stem edit --model FILE --model-config: $(cat "$tmp/e-folder.log" "$tmp/e-file.log" 2>/dev/null)"
fi
if grep -Eq '"config": *"[^"]*tiny-sd1.json"' "$tmp/e-file/manifest.json" 2>/dev/null &&
    grep -Eq '"model_config": *"[^"]*tiny-sd1.json"' "$tmp/e-file/inversion/options.json" 2>/dev/null &&
    grep -Eq '"tokenizer": *"bundled CLIP tokenizer' "$tmp/e-file/manifest.json"; then
    ok "stem edit: manifest and its inversion's options record --model-config"
else
    bad "stem edit: --model-config not recorded"
fi
# an inversion made from the file: its model and --model-config are the edit's defaults
if edit "$tmp/e-reuse" --inversion "$tmp/e-file/inversion" && same_edit "$tmp/e-reuse" "$tmp/e-file"; then
    ok "stem edit --inversion (made from FILE + JSON): the inversion's --model-config is the default, same edit"
else
    bad "stem edit --inversion of a single-file inversion: $(cat "$tmp/e-reuse.log")"
fi
if edit "$tmp/e-other" --inversion "$tmp/e-file/inversion" --model-config "$REFDATA/models/tiny-sd1"; then
    bad "stem edit --inversion with another --model-config exited 0"
elif grep -q "is not the model of --inversion" "$tmp/e-other.log" && grep -q -- "--model-config" "$tmp/e-other.log" &&
    [ ! -e "$tmp/e-other" ] && [ ! -e "$tmp/e-other.partial" ]; then
    ok "stem edit --inversion with another --model-config: refused by fingerprint, no output"
else
    bad "stem edit --inversion, other --model-config: $(cat "$tmp/e-other.log")"
fi
# --dry-run reads the file's header only (its configs from the shapes)
if "$STEM" edit --dry-run --model "$file" --model-config "$tmp/tiny-sd1.json" --frames 500 --width 64 --height 64 \
    --prompt x --out "$tmp/e-dry" >"$tmp/e-dry.log" 2>&1 && grep -q "^edit plan: 500 frames of 64x64" "$tmp/e-dry.log" &&
    [ ! -e "$tmp/e-dry" ] && [ ! -e "$tmp/e-dry.partial" ]; then
    ok "stem edit --dry-run --model FILE --model-config: the plan, nothing written"
else
    bad "stem edit --dry-run --model FILE: $(cat "$tmp/e-dry.log")"
fi
if "$STEM" edit --dry-run --model "$file" --frames 4 --width 64 --height 64 --prompt x --out "$tmp/e-dry" \
    >"$tmp/e-dry2.log" 2>&1; then
    bad "stem edit --dry-run --model FILE without --model-config exited 0"
elif grep -q "num_attention_heads" "$tmp/e-dry2.log" && grep -q -- "--model-config" "$tmp/e-dry2.log"; then
    ok "stem edit --dry-run --model FILE without --model-config: names the key"
else
    bad "stem edit --dry-run --model FILE, no override: $(cat "$tmp/e-dry2.log")"
fi
if "$STEM" edit --help | grep -q -- "--model-config"; then ok "stem edit --help names --model-config"; else bad "edit help"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
