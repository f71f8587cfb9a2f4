#!/usr/bin/env bash
# A/B of two broker binaries on one produce workload, interleaved so both see the same noise.
#
#   BEFORE=/tmp/rocketcore-before AFTER=target/release/rocketcore \
#     bash bench/ab-produce.sh SYNC_FLUSH 2 --batch 128 --connections 4 --inflight 16 --rate max
#
# Arguments: flushDiskType, rounds, then rocketcore-bench produce arguments. Each run starts a
# fresh broker (fresh temp store on this repo's disk), produces 1 KiB messages for 2 s warm-up
# + 8 s, and prints throughput, send percentiles and the broker's CPU use (CPU-seconds per
# second, from /proc/<pid>/stat) so results can be read per CPU as well as absolute.
set -euo pipefail

MODE="${1:?flushDiskType (SYNC_FLUSH or ASYNC_FLUSH)}"
ROUNDS="${2:?rounds}"
shift 2
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${CARGO_TARGET_DIR:-$REPO/target}/release/rocketcore-bench"
: "${BEFORE:?set BEFORE to the first broker binary}"
: "${AFTER:?set AFTER to the second broker binary}"
WORK="$(mktemp -d "$REPO/.ab-produce.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
TICKS="$(getconf CLK_TCK)"
# shellcheck source=bench/broker-lib.sh
. "$REPO/bench/broker-lib.sh"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq "$ROUNDS"); do
    for which in before after; do
        bin="$BEFORE"
        [ "$which" = after ] && bin="$AFTER"
        store="$WORK/store-$which"
        mkdir -p "$store"
        start_broker "$bin" "$store" "$MODE" "$WORK/broker.out"
        pid="$BROKER_PID"
        ns="$BROKER_NS"
        "$BENCH" produce --namesrv "$ns" --quiet --size 1024 --warmup 2s --duration 8s "$@" \
            >"$WORK/bench.out" 2>&1 &
        bench=$!
        sleep 2
        t0="$(cpu_ticks "$pid")"
        s0="$(date +%s.%N)"
        sleep 8
        t1="$(cpu_ticks "$pid")"
        s1="$(date +%s.%N)"
        wait "$bench" || true
        cpu="$(awk -v a="$t0" -v b="$t1" -v x="$s0" -v y="$s1" -v hz="$TICKS" \
            'BEGIN {printf "%.2f", (b - a) / hz / (y - x)}')"
        thr="$(grep -m1 '^throughput' "$WORK/bench.out" | tr -s ' ')"
        lat="$(grep -m1 '^send' "$WORK/bench.out" | tr -s ' ')"
        echo "round=$round $which broker_cpu_per_s=$cpu | $thr | $lat"
        kill -TERM "$pid"
        wait "$pid" || true
        rm -rf "$store"
    done
done
