#!/usr/bin/env bash
# A/B of two broker binaries on one produce workload, interleaved so both see the same noise.
#
#   BEFORE=/tmp/rocketcore-before AFTER=target/release/rocketcore \
#     bash bench/ab-produce.sh SYNC_FLUSH 2 --batch 128 --connections 4 --inflight 16 --rate max
#
# Arguments: flushDiskType, rounds, then rocketcore-bench produce arguments. Each run starts a
# fresh broker (fresh temp store on this repo's disk), produces 1 KiB messages for 2 s warm-up
# + 8 s, and prints throughput, send percentiles, the broker's and the load generator's CPU use
# (CPU-seconds per second, from /proc/<pid>/stat) and how busy the whole machine was (/proc/stat),
# so a result can be read per CPU and a saturated machine is visible.
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
# Busy and total ticks of the whole machine (all CPUs), from /proc/stat.
machine_ticks() { awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat; }

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
        g0="$(cpu_ticks "$bench")"
        read -r m0 n0 < <(machine_ticks)
        s0="$(date +%s.%N)"
        sleep 7  # inside the load generator's 8 s measured run, so it is still there to sample
        t1="$(cpu_ticks "$pid")"
        g1="$(cpu_ticks "$bench")"
        read -r m1 n1 < <(machine_ticks)
        s1="$(date +%s.%N)"
        wait "$bench" || true
        cpu="$(awk -v a="$t0" -v b="$t1" -v x="$s0" -v y="$s1" -v hz="$TICKS" \
            'BEGIN {printf "%.2f", (b - a) / hz / (y - x)}')"
        thr="$(grep -m1 '^throughput' "$WORK/bench.out" | tr -s ' ')"
        lat="$(grep -m1 '^send' "$WORK/bench.out" | tr -s ' ')"
        gen="$(awk -v a="$g0" -v b="$g1" -v x="$s0" -v y="$s1" -v hz="$TICKS" \
            'BEGIN {printf "%.2f", (b - a) / hz / (y - x)}')"
        busy="$(awk -v a="$m0" -v b="$m1" -v x="$n0" -v y="$n1" 'BEGIN {printf "%.1f", 100 * (b - a) / (y - x)}')"
        echo "round=$round $which broker_cpu_per_s=$cpu loadgen_cpu_per_s=$gen machine_busy_pct=$busy | $thr | $lat"
        kill -TERM "$pid"
        wait "$pid" || true
        rm -rf "$store"
    done
done
