#!/usr/bin/env bash
# Fixed-rate single-send latency of the broker (SYNC_FLUSH and ASYNC_FLUSH) next to this
# machine's loopback floor (`rocketcore-bench floor`: a TCP echo that does no work) and its CPU
# stalls (`rocketcore-bench stalls`), interleaved round by round so all see the same background noise.
#
#   bash bench/latency-vs-floor.sh [rate] [rounds]      (defaults: 4000 msg/s, 3 rounds)
#
# Uses the release binaries in target/ (cargo build --release -p rocketcore -p rocketcore-bench).
# Each broker gets a fresh temp store on this repo's disk; both stay up for the whole run.
set -euo pipefail

RATE="${1:-4000}"
ROUNDS="${2:-3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}/release"
WORK="$(mktemp -d "$REPO/.latency-vs-floor.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/broker-lib.sh
. "$REPO/bench/broker-lib.sh"
declare -A NS
for mode in SYNC_FLUSH ASYNC_FLUSH; do
    mkdir -p "$WORK/$mode"
    start_broker "$TARGET/rocketcore" "$WORK/$mode" "$mode" "$WORK/$mode.out"
    PIDS+=("$BROKER_PID")
    NS[$mode]="$BROKER_NS"
done

for round in $(seq "$ROUNDS"); do
    floor="$("$TARGET/rocketcore-bench" floor --rate "$RATE" --warmup 2s --duration 10s | tail -1)"
    echo "round=$round floor       | $floor"
    "$TARGET/rocketcore-bench" stalls --duration 5s | tail -n +2 | sed "s/^/round=$round stalls      | /"
    for mode in SYNC_FLUSH ASYNC_FLUSH; do
        "$TARGET/rocketcore-bench" produce --namesrv "${NS[$mode]}" --quiet --size 1024 \
            --connections 1 --inflight 64 --rate "$RATE" --warmup 2s --duration 10s >"$WORK/run.out" 2>&1 || true
        echo "round=$round $mode | $(grep -m1 '^send' "$WORK/run.out" | tr -s ' ')"
    done
done
echo "(floor columns: p50 p90 p99 p99.9 max; broker columns: p50 p90 p99 p99.9 p99.99 max count; ms)"
echo "(stalls: share of time a thread pinned to that CPU waits at least the bound when it becomes ready;"
echo " above 1 % at a bound, no request served there can have p99 below it)"
