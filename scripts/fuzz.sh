#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) in ./build-fuzz and runs each one for a
# bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, all targets
#
# Targets: fuzz_image fuzz_tiff fuzz_pets_split fuzz_args fuzz_safetensors.
# Needs clang, libclang-rt-14-dev (libFuzzer, sanitizer runtimes) and
# libomp-dev. The build is clang + ASan + UBSan with coverage instrumentation,
# separate from ./build.
#
# Each target runs on a scratch corpus, build-fuzz/fuzz-runs/<target>/corpus,
# seeded from fuzz/corpus/<target>/ and kept between runs; the repository's
# corpus is never written unless FUZZ_MERGE=1, which merges the inputs that
# add coverage back into fuzz/corpus/<target>/ after the run.
# Prints the executions and coverage per target; exits non-zero if any target
# crashed, leaked, timed out (-timeout=10) or ran out of memory
# (-rss_limit_mb=2048), naming the input that did it (re-run it with
# build-fuzz/fuzz/<target> <input>).
# Environment: FUZZ_BUILD (build directory, default build-fuzz), FUZZ_NICE (niceness, default 15), FUZZ_MERGE (0), FUZZ_ARGS
# (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(fuzz_image fuzz_tiff fuzz_pets_split fuzz_args fuzz_safetensors)
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a number, got '$seconds'" >&2; exit 2; }
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (${all_targets[*]})" >&2; exit 2; }
done

missing=()
command -v clang++ >/dev/null || missing+=(clang)
for p in libclang-rt-14-dev libomp-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "fuzz.sh: missing ${missing[*]}; install with: apt-get install ${missing[*]}" >&2
  exit 1
fi

# FUZZ_BUILD names another build directory configured with -Dfuzz=true
# (scripts/sanitize.sh shares its ASan+UBSan test build, build-san).
B=${FUZZ_BUILD:-build-fuzz}
if [ ! -f "$B"/build.ninja ]; then
  CC=clang CXX=clang++ meson setup "$B" -Dfuzz=true -Dcuda=disabled -Dbench=false -Dtests=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
fi
nice -n 10 ninja -C "$B" "${targets[@]/#/fuzz/}"

declare -A dict=([fuzz_image]=image [fuzz_tiff]=tiff [fuzz_safetensors]=safetensors [fuzz_args]=args)
# UBSan findings stop the run (clang's -fsanitize=undefined only warns by default).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:max_malloc_fill_size=1048576:malloc_fill_byte=255}  # see sanitize.sh
export OMP_NUM_THREADS=1

failed=()
summary=()
for t in "${targets[@]}"; do
  run="$B"/fuzz-runs/$t
  mkdir -p "$run/corpus" "$run/artifacts"
  cp -n fuzz/corpus/"$t"/* "$run/corpus/" 2>/dev/null || true
  flags=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
         -artifact_prefix="$run/artifacts/")
  [ -n "${dict[$t]:-}" ] && flags+=(-dict=fuzz/dict/"${dict[$t]}".dict)
  # shellcheck disable=SC2206
  flags+=(${FUZZ_ARGS:-})
  echo "== $t: ${seconds}s on $run/corpus ($(find "$run/corpus" -type f | wc -l) inputs)"
  status=0
  start=$SECONDS
  nice -n "${FUZZ_NICE:-15}" "$B"/fuzz/"$t" "${flags[@]}" "$run/corpus" >"$run/log" 2>&1 || status=$?
  elapsed=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9a-zA-Z]*' "$run/log" | tail -1 || true)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$run/log" | tail -1)
  line="$t: ${execs:-?} executions in ${elapsed}s, ${cov:-no coverage line}, peak RSS ${rss:-?} MB"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    line+=", FAILED (exit $status)"
    echo "---- $t log (last 60 lines of $run/log) ----"
    tail -60 "$run/log"
    grep -o "Test unit written to .*" "$run/log" | sed "s/^/$t: /" || true
  fi
  echo "$line"
  summary+=("$line")
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$status" -eq 0 ]; then
    nice -n "${FUZZ_NICE:-15}" "$B"/fuzz/"$t" -merge=1 -rss_limit_mb=2048 -timeout=10 \
      fuzz/corpus/"$t" "$run/corpus" >"$run/merge.log" 2>&1
    echo "$t: merged into fuzz/corpus/$t ($(find fuzz/corpus/"$t" -type f | wc -l) inputs)"
  fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz.sh: FAILED: ${failed[*]} (crash inputs in $B/fuzz-runs/<target>/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crashes"
