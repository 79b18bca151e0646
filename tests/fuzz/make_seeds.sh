#!/bin/sh
# Seed corpora for the libFuzzer harnesses, from refdata (and, for the video and resume
# harnesses, from a tiny run of the `stem` program itself): make_seeds.sh STEM REFDATA OUTDIR
# writes OUTDIR/<harness>/ for every harness in tests/fuzz.
set -eu
stem=$1 refdata=$2 out=$3
sep='
--8<--
'
mk() { mkdir -p "$out/$1"; }
for h in safetensors unet_config vae_config text_encoder_config scheduler_config model_index yaml \
         tokenizer_files tokenizer_text png jpeg video resume; do mk "$h"; done

# safetensors: the smallest op goldens (every dtype and rank they use), and a latents file below
find "$refdata/golden/ops" -name '*.safetensors' -size -16k | sort | head -n 40 | while read -r f; do
    cp "$f" "$out/safetensors/"
done
# every config.json kind, from both tiny models
for m in "$refdata"/models/*/; do
    n=$(basename "$m")
    cp "$m/unet/config.json" "$out/unet_config/$n.json"
    cp "$m/vae/config.json" "$out/vae_config/$n.json"
    cp "$m/text_encoder/config.json" "$out/text_encoder_config/$n.json"
    cp "$m/scheduler/scheduler_config.json" "$out/scheduler_config/$n.json"
    cp "$m/model_index.json" "$out/model_index/$n.json"
done
cp "$refdata"/configs/*.yaml "$out/yaml/"
# tokenizer folders: the first 300 vocab entries and 100 merges (the whole files are 1.5 MB:
# far too slow per input), the special tokens, and the configs
for t in "$refdata"/models/*/tokenizer/; do
    n=$(basename "$(dirname "$t")")
    {
        printf '{'
        grep -oE '"([^"\\]|\\.)*": [0-9]+' "$t/vocab.json" | head -n 300 | paste -sd, -
        printf ', "<|startoftext|>": 49406, "<|endoftext|>": 49407}'
        printf '%s' "$sep"
        head -n 100 "$t/merges.txt"
        printf '%s' "$sep"
        cat "$t/tokenizer_config.json"
        printf '%s' "$sep"
        cat "$t/special_tokens_map.json"
    } >"$out/tokenizer_files/$n"
done
grep -h 'prompt' "$refdata"/configs/*.yaml | sed "s/^[^:]*: *//; s/^['\"]//; s/['\"]\$//" | split -l 1 - "$out/tokenizer_text/prompt_"
printf 'A café – naïve “quotes”, emoji 🎾 and <|endoftext|> inside' >"$out/tokenizer_text/unicode.txt"
for f in "$refdata"/golden/io/images/*.png "$refdata"/clips/*/00000.png; do cp "$f" "$out/png/$(basename "$(dirname "$f")")_$(basename "$f")"; done
for f in "$refdata"/golden/io/images/*.jpg; do cp "$f" "$out/jpeg/"; done

# a tiny finished run: recon.mp4 for the video harness, its files for the resume harness
run=$(mktemp -d)
if "$stem" invert --steps 1 --bases 2 --n-frames 2 --width 16 --height 16 --out "$run/o" --quiet >/dev/null 2>&1; then
    [ -f "$run/o/recon.mp4" ] && cp "$run/o/recon.mp4" "$out/video/recon_16x16.mp4"
    lat=$(ls "$run/o/latents/" | head -n 1)
    cp "$run/o/latents/$lat" "$out/safetensors/latents.safetensors"
    { cat "$run/o/options.json"; printf '%s' "$sep"; cat "$run/o/latents/$lat"; printf '%s' "$sep"; cat "$run/o/manifest.json"; } \
        >"$out/resume/finished_run"
else
    echo "make_seeds.sh: the tiny stem run failed; video and resume start from empty corpora" >&2
fi
rm -rf "$run"
