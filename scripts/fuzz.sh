#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ on stable Rust (no sanitizer: `-s none`), one at a time.
#
#   scripts/fuzz.sh                 # every target, 600 s each
#   scripts/fuzz.sh sigv4           # one target, 600 s
#   scripts/fuzz.sh query 3600      # one target, an hour
#   scripts/fuzz.sh all 60          # every target, a minute each
#
# Corpora grow in fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/), crashes land in
# fuzz/artifacts/<target>/. Runs at nice 19 so builds and benchmarks keep the CPU. Environment:
# FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-all}"
seconds="${2:-600}"
rss="${FUZZ_RSS_LIMIT_MB:-2048}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing; installing it (0.13.x)" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi

cd "$root/fuzz"
mapfile -t all < <(cargo fuzz list)
if [[ "$target" == all ]]; then
    targets=("${all[@]}")
else
    if ! printf '%s\n' "${all[@]}" | grep -qx "$target"; then
        echo "unknown target '$target'; targets: ${all[*]}" >&2
        exit 2
    fi
    targets=("$target")
fi

nice -n 19 cargo fuzz build -s none

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [[ -d "seeds/$t" ]] && seeds=("seeds/$t")
    echo "== $t: ${seconds}s" >&2
    # shellcheck disable=SC2086
    nice -n 19 cargo fuzz run -s none "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss" -print_final_stats=1 ${FUZZ_ARGS:-}
done
