#!/usr/bin/env bash
# Mutation run (not part of CI): applies realistic one-line bugs to the CPU code one at a
# time, rebuilds the fast CPU test programs, runs them and reports which programs caught
# each bug, then a score. A bug that no test catches is a hole in the suite.
#
#   scripts/mutate.sh [--list] [--only N,M,...] [--keep]
#
#   --list        print the mutations and exit
#   --only LIST   run only these mutation numbers (comma-separated)
#   --keep        keep the scratch copy (its path is printed)
#
# Environment: MUTATE_TESTS (test programs to run, default below), MUTATE_JOBS (make -j,
# default 2), MUTATE_TIMEOUT (seconds per test program, default 300; a hang counts as
# caught), MUTATE_DIR (scratch directory, default a fresh mktemp -d).
#
# Your worktree is never modified: the script copies the tracked and untracked
# (non-ignored) files, minus refdata/ (linked, read only), into a scratch directory,
# builds there (plain, CPU only) and mutates only that copy. Ctrl-C removes the copy.
# Each mutation names the exact text it replaces; it must occur exactly once in its file
# (otherwise the mutation is reported as stale, not run), so the list cannot silently
# drift from the code. A test program "catches" a mutation when a test case fails that
# passed without it, or the program fails, crashes or hangs where it did not before
# (test cases failing already without mutation are reported and ignored).
#
# It takes a while: about a minute per mutation on 2 busy cores. Run it niced:
#   nice -n 10 scripts/mutate.sh
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
tests=${MUTATE_TESTS:-"test_dtype test_philox test_tensor test_metrics test_ddim test_ops_golden test_em test_clip_text test_vae test_sd_model test_unet"}
jobs=${MUTATE_JOBS:-2}
per_test_timeout=${MUTATE_TIMEOUT:-300}

# ---- the mutations: m FILE DESCRIPTION FROM TO ---------------------------------------
files=() descs=() froms=() tos=()
m() { files+=("$1"); descs+=("$2"); froms+=("$3"); tos+=("$4"); }

# the golden comparator
m src/check/golden.c "comparator: the NaN->Inf line lost" \
  '            diff = INFINITY;' ''
m src/check/golden.c "comparator: violation test '>' (skips NaN, and Inf vs Inf)" \
  'if (nonfinite || !(diff <= limit)) c->violations++;' 'if (diff > limit) c->violations++;'
# EM (SPEC 5)
m kernels/cpu/em.c "EM kernel: tau ignored (always 0.01)" \
  'const float inv_tau = 1.0f / p->tau;' 'const float inv_tau = 100.0f;'
m kernels/cpu/em.c "EM kernel: candidate cutoff -6 instead of -60 (drops small z)" \
  '#define EXP_CUTOFF 60.0f' '#define EXP_CUTOFF 6.0f'
m kernels/cpu/em.c "EM kernel: mu_hat norm eps dropped" \
  'float scale = (float)(1.0 / (sqrt(ss) + (double)p->norm_eps));' 'float scale = (float)(1.0 / sqrt(ss));'
m src/stem/em.h "EM: z-sum eps 1e-6 instead of 1e-4" \
  '#define STEM_EM_SUM_EPS 1e-4f' '#define STEM_EM_SUM_EPS 1e-6f'
m src/stem/em.c "EM: one iteration fewer" \
  'const int64_t passes = o->iters > 0 ? o->iters : 1;' 'const int64_t passes = o->iters > 1 ? o->iters - 1 : 1;'
m src/stem/em.c "EM: initial bases not scaled by the std" \
  'STEM_TRY(stem_binary(STEM_BINARY_MUL, &w->mu, &std3, &w->mu));' '(void)std3;'
m src/stem/em.c "EM: counter w3 with phase and step swapped" \
  'return (o->phase << 24) | (o->step << 12) | o->chunk;' 'return (o->step << 24) | (o->phase << 12) | o->chunk;'
m src/stem/em.c "EM: head and layer counter words swapped" \
  'stem_philox_normal(o->seed, (uint32_t)h, o->layer,' 'stem_philox_normal(o->seed, o->layer, (uint32_t)h,'
m src/stem/stem_attention.c "stem attention: chunk counter not advanced per chunk" \
  'em.chunk = o->scope == STEM_SCOPE_CHUNK ? o->em.chunk + (uint32_t)c : 0;' 'em.chunk = o->em.chunk;'
m kernels/cpu/reduce.c "mean_std: biased std (n instead of n - 1)" \
  'sqrt(fmax(sq, 0.0) / (double)(n - 1))' 'sqrt(fmax(sq, 0.0) / (double)n)'
# Philox (SPEC 6)
m kernels/cpu/philox.c "Philox blocked kernel: counter words w1, w2 swapped" \
  'stem_philox4 ctr = {{(uint32_t)b, p->w1, p->w2, p->w3}};' 'stem_philox4 ctr = {{(uint32_t)b, p->w2, p->w1, p->w3}};'
m kernels/cpu/philox.c "Philox blocked kernel: sin and cos swapped" \
  'y[4 * b + pair] = (float)(rad * cos(ang));' 'y[4 * b + pair] = (float)(rad * sin(ang));'
m src/core/philox.h "Philox: uniform without the +0.5" \
  'return ((double)word + 0.5) * 2.3283064365386963e-10;' 'return ((double)word) * 2.3283064365386963e-10;'
# norms
m kernels/cpu/norm.c "group norm: eps ignored (default 1e-5)" \
  'stats(s, xg, per, p->eps, &mean, &rstd);' 'stats(s, xg, per, 1e-5f, &mean, &rstd);'
m kernels/cpu/norm.c "layer norm: eps ignored (default 1e-5)" \
  'stats(s, x + r * cols, cols, p->eps, &mean, &rstd);' 'stats(s, x + r * cols, cols, 1e-5f, &mean, &rstd);'
m kernels/cpu/norm.c "norms: eps outside the square root" \
  '*rstd = (float)(1.0 / sqrt(var + (double)eps));' '*rstd = (float)(1.0 / (sqrt(var) + (double)eps));'
m src/models/vae.c "VAE: group norm eps 1e-5 instead of 1e-6" \
  '#define RESNET_EPS 1e-6f' '#define RESNET_EPS 1e-5f'
# timestep embedding
m kernels/cpu/timestep.c "timestep embedding: freq_shift added instead of subtracted" \
  '(double)half - (double)p->freq_shift' '(double)half + (double)p->freq_shift'
m kernels/cpu/timestep.c "timestep embedding: flip_sin_to_cos ignored in the first half" \
  'row[j] = p->flip_sin_to_cos ? cs : sn;' 'row[j] = sn;'
# softmax, activations, attention, conv
m kernels/cpu/softmax.c "softmax: row maximum not subtracted" \
  'float sum = s->exp_sum(yr, xr, cols, p->scale, m);' 'float sum = s->exp_sum(yr, xr, cols, p->scale, 0.0f);'
m kernels/cpu/simd_impl.h "GELU (tanh): cubic coefficient 0.04715" \
  'vfmadd(vset1(0.044715f), x3, x)' 'vfmadd(vset1(0.04715f), x3, x)'
m kernels/cpu/simd_impl.h "quick GELU: sigmoid(x) instead of sigmoid(1.702 x)" \
  'return vxsigmoid(x, 1.702f);' 'return vxsigmoid(x, 1.0f);'
m kernels/cpu/activation.c "GEGLU: hidden and gate halves swapped" \
  's->geglu(y + r * cols, xr, xr + cols, cols);' 's->geglu(y + r * cols, xr + cols, xr, cols);'
m kernels/cpu/attention.c "attention: running sum not rescaled by the new maximum" \
  'l[i] = l[i] * corr[i] + bsum[i];' 'l[i] = l[i] + bsum[i];'
m kernels/cpu/conv2d.c "conv2d: top padding ignored" \
  'int64_t iy = oy * sh - pt + ky;' 'int64_t iy = oy * sh + ky;'
m src/models/unet_blocks.c "UNet attention: scale 1/d instead of 1/sqrt(d)" \
  '.scale = (float)(1.0 / sqrt((double)tr->head_dim)),' '.scale = (float)(1.0 / (double)tr->head_dim),'
m src/models/clip_text.c "CLIP: causal mask hides the token itself" \
  'host[i * L + j] = j <= i ? 0.0f : -INFINITY;' 'host[i * L + j] = j < i ? 0.0f : -INFINITY;'
# DDIM (SPEC 4)
m src/stem/ddim.c "DDIM inversion: sign of the eps term" \
  '*c2 = sqrt(1.0 - a) - sqrt(a) * sqrt(1.0 - ap) / sqrt(ap);' '*c2 = sqrt(1.0 - a) + sqrt(a) * sqrt(1.0 - ap) / sqrt(ap);'
m src/stem/ddim.c "DDIM sampling: x coefficient inverted" \
  '*c1 = sqrt(app) / sqrt(a);' '*c1 = sqrt(a) / sqrt(app);'
m src/stem/ddim.c "DDIM sampling: sqrt(app - 1), a NaN coefficient" \
  '*c2 = sqrt(1.0 - app) - sqrt(app) * sqrt(1.0 - a) / sqrt(a);' '*c2 = sqrt(app - 1.0) - sqrt(app) * sqrt(1.0 - a) / sqrt(a);'
m src/stem/ddim.c "DDIM: scaled_linear betas not squared" \
  'beta = r * r;' 'beta = r;'
m src/stem/ddim.c "DDIM: set_alpha_to_one inverted" \
  's->final_alpha_cumprod = c->set_alpha_to_one ? 1.0 : s->alphas_cumprod[0];' \
  's->final_alpha_cumprod = c->set_alpha_to_one ? s->alphas_cumprod[0] : 1.0;'

count=${#files[@]}

# ---- arguments ---------------------------------------------------------------------
only="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --list)
        for ((i = 0; i < count; i++)); do printf '%2d  %-28s %s\n' $((i + 1)) "${files[i]}" "${descs[i]}"; done
        exit 0 ;;
    --only) only=",$2,"; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "mutate.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---- the scratch copy ----------------------------------------------------------------
work=${MUTATE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/stem-mutate.XXXXXX")}
mkdir -p "$work"
cleanup() {
    if [ "$keep" = 1 ]; then echo "mutate.sh: scratch copy kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo; echo "mutate.sh: interrupted"; exit 130' INT TERM

tree="$work/tree"
mkdir -p "$tree"
(cd "$repo" && git ls-files -z -co --exclude-standard | grep -zv '^refdata/' | tar --null -T - -cf -) | tar -C "$tree" -xf -
ln -s "$repo/refdata" "$tree/refdata"
pristine="$work/pristine"
cp -a "$tree" "$pristine"

log="$work/build.log"
echo "mutate.sh: building a CPU-only copy in $tree (log: $log)"
(cd "$tree" && autoreconf -fi && mkdir -p build && cd build && ../configure --without-cuda) >"$log" 2>&1 ||
    { echo "mutate.sh: configure failed:"; tail -n 20 "$log"; exit 1; }
targets=$(for t in $tests; do printf 'tests/%s ' "$t"; done)
build() { (cd "$tree/build" && make -j"$jobs" $targets) >>"$log" 2>&1; }
build || { echo "mutate.sh: the unmutated build failed:"; tail -n 20 "$log"; exit 1; }

# Runs every test program; writes DIR/PROG.rc and DIR/PROG.failed (sorted failing case names).
run_tests() {
    local dir=$1 t rc
    mkdir -p "$dir"
    for t in $tests; do
        (cd "$tree/build" && STEM_REFDATA="$repo/refdata" timeout "$per_test_timeout" "./tests/$t") >"$dir/$t.log" 2>&1
        rc=$?
        echo "$rc" >"$dir/$t.rc"
        grep -E '^\[  FAILED  \] ' "$dir/$t.log" | grep -v 'test(s), listed below' | sort >"$dir/$t.failed"
    done
}

# Programs (with the new failures) where DIR differs from the baseline.
caught_by() {
    local dir=$1 t out="" new base_rc rc
    for t in $tests; do
        base_rc=$(cat "$work/baseline/$t.rc") rc=$(cat "$dir/$t.rc")
        new=$(comm -13 "$work/baseline/$t.failed" "$dir/$t.failed" | sed 's/^\[  FAILED  \] //' | sort -u | head -n 3 | paste -sd, -)
        if [ -n "$new" ]; then out+="${t#test_}($new) "
        elif [ "$rc" -ge 124 ] && [ "$rc" != "$base_rc" ]; then out+="${t#test_}(exit $rc) "
        elif [ "$rc" != 0 ] && [ "$base_rc" = 0 ]; then out+="${t#test_}(exit $rc) "
        fi
    done
    echo "$out"
}

echo "mutate.sh: baseline run of: $tests"
run_tests "$work/baseline"
for t in $tests; do
    if [ -s "$work/baseline/$t.failed" ] || [ "$(cat "$work/baseline/$t.rc")" != 0 ]; then
        echo "  baseline: $t exits $(cat "$work/baseline/$t.rc"); failing already (ignored):" \
            "$(sed 's/^\[  FAILED  \] //' "$work/baseline/$t.failed" | sort | uniq -c | paste -sd, -)"
    fi
done

# ---- the run -------------------------------------------------------------------------
ran=0 caught=0 stale=0 broken=0 survivors=""
for ((i = 0; i < count; i++)); do
    num=$((i + 1))
    case "$only" in "" | *",$num,"*) ;; *) continue ;; esac
    f=${files[i]}
    n=$(FROM=${froms[i]} perl -0ne '$n += () = /\Q$ENV{FROM}\E/g; END { print $n + 0 }' "$tree/$f")
    if [ "$n" != 1 ]; then
        printf '%2d  STALE (text found %s times in %s)  %s\n' "$num" "$n" "$f" "${descs[i]}"
        stale=$((stale + 1))
        continue
    fi
    FROM=${froms[i]} TO=${tos[i]} perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$tree/$f"
    start=$(date +%s)
    if ! build; then
        printf '%2d  BUILD FAILED  %s\n' "$num" "${descs[i]}"
        broken=$((broken + 1))
    else
        run_tests "$work/m$num"
        by=$(caught_by "$work/m$num")
        ran=$((ran + 1))
        if [ -n "$by" ]; then
            caught=$((caught + 1))
            printf '%2d  caught   %-62s %3ds  %s\n' "$num" "${descs[i]}" $(($(date +%s) - start)) "$by"
        else
            survivors+="  $num ${descs[i]} ($f)"$'\n'
            printf '%2d  SURVIVED %-62s %3ds\n' "$num" "${descs[i]}" $(($(date +%s) - start))
        fi
    fi
    cp "$pristine/$f" "$tree/$f" # restore (a new mtime: make rebuilds what the mutant built)
done

echo
echo "mutate.sh: score $caught of $ran mutations caught ($stale stale, $broken did not build)"
[ -n "$survivors" ] && printf 'survivors:\n%s' "$survivors"
[ "$caught" = "$ran" ] && [ "$stale" = 0 ] && [ "$broken" = 0 ]
