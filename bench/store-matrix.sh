#!/usr/bin/env bash
# The store engine's append matrix (in-process, no network): 128 B, 1 KiB and 16 KiB bodies,
# SYNC_FLUSH and ASYNC_FLUSH, 1 to 256 concurrent appenders on one shard, then every shard
# together. Prints a markdown table of throughput and HDR percentiles.
#
#   bash bench/store-matrix.sh [seconds per run]      (default 3; from anywhere inside the repo)
#
# Runs in a temp dir on the repo's filesystem (never tmpfs), removed at the end.
set -euo pipefail

SECONDS_PER_RUN="${1:-3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
WORK="$(mktemp -d "$REPO/.store-matrix.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

cargo build --release -q -p rocketcore-shards --example store_bench --manifest-path "$REPO/Cargo.toml"
BENCH="$CARGO_TARGET_DIR/release/examples/store_bench"
SHARDS="$(nproc)"

field() {
    tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'
}

run() { # size mode appenders shards
    local r
    r="$("$BENCH" --size "$1" --mode "$2" --appenders "$3" --shards "$4" --seconds "$SECONDS_PER_RUN" \
        --segment-mb 256 --dir "$WORK" | grep '^RESULT')"
    printf '| %6s | %5s | %9s | %6s | %10s | %9s | %8s | %8s | %9s | %9s |\n' "$1" "$2" "$3" "$4" \
        "$(field "$r" msgs_per_s)" "$(field "$r" record_mb_per_s)" "$(field "$r" p50_us)" \
        "$(field "$r" p99_us)" "$(field "$r" p999_us)" "$(field "$r" max_us)"
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)   host: $(nproc) cores   fs: $(df -h --output=source,fstype "$WORK" | tail -1)"
echo "store_bench, ${SECONDS_PER_RUN}s per run after 1s warm-up; appenders are per shard; MB/s = stored record bytes"
echo
echo "|   body |  mode | appenders | shards |     msgs/s |      MB/s |   p50 us |   p99 us |  p99.9 us |    max us |"
echo "|-------:|------:|----------:|-------:|-----------:|----------:|---------:|---------:|----------:|----------:|"
for size in 128 1024 16384; do
    for mode in sync async; do
        for appenders in 1 16 64 256; do
            run "$size" "$mode" "$appenders" 1
        done
    done
done
for mode in sync async; do
    run 1024 "$mode" 64 "$SHARDS"
done
