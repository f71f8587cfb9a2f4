#!/usr/bin/env bash
# Compares the store's append throughput with what fio gets from the same filesystem, in one run.
#
#   bash bench/fio-compare.sh [seconds]      (run from anywhere inside the repo)
#
# 1. fio: sequential O_DIRECT 1 MiB writes at iodepth 32 (io_uring, libaio as fallback), and
#    4 KiB writes each followed by fdatasync.
# 2. store_bench (release): 1 KiB messages, SYNC_FLUSH and ASYNC_FLUSH, 64 appenders, one shard
#    (SYNC also with segment warming off, and with 256 and 1024 appenders); then SYNC_FLUSH at half the
#    measured SYNC throughput, for p99 at half load.
# 3. A table of our MB/s (stored record bytes) as a fraction of fio's sequential bandwidth.
#
# Everything runs in a temp dir on the repo's filesystem (never tmpfs), removed at the end.
set -euo pipefail

SECONDS_PER_RUN="${1:-5}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"

if ! command -v fio >/dev/null 2>&1; then
    echo "installing fio" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
fi

WORK="$(mktemp -d "$REPO/.fio-compare.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
if [ "$(stat -f -c %T "$WORK")" = "tmpfs" ]; then
    echo "$WORK is on tmpfs; run from a repo on a real disk" >&2
    exit 1
fi

ENGINE=io_uring
if ! fio --name=probe --filename="$WORK/probe" --size=1M --rw=write --bs=1M --direct=1 \
    --ioengine=io_uring --output=/dev/null >/dev/null 2>&1; then
    ENGINE=libaio
fi
rm -f "$WORK/probe"

# Field 48 of fio's terse v3 output is the write bandwidth in KiB/s, field 49 the write IOPS.
fio_terse() {
    fio --output-format=terse --terse-version=3 "$@" | awk -F';' '{print $48, $49}'
}

echo "fio: sequential O_DIRECT 1 MiB writes, iodepth 32, $ENGINE" >&2
read -r SEQ_KIB _ < <(fio_terse --name=seq --filename="$WORK/seq.dat" --size=2G --rw=write --bs=1M \
    --iodepth=32 --ioengine="$ENGINE" --direct=1 --runtime="$SECONDS_PER_RUN" --time_based)
rm -f "$WORK/seq.dat"

echo "fio: 4 KiB write + fdatasync" >&2
# JSON for this one: the fdatasync latency percentiles are the floor under SYNC_FLUSH p99.
fio --output-format=json --name=sync4k --filename="$WORK/sync.dat" --size=256M --rw=write \
    --bs=4k --ioengine=sync --fdatasync=1 --runtime="$SECONDS_PER_RUN" --time_based >"$WORK/sync.json"
read -r SYNC_KIB SYNC_IOPS SYNC_P50 SYNC_P99 SYNC_P999 < <(python3 - "$WORK/sync.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
p = job["sync"]["lat_ns"]["percentile"]
us = lambda k: round(p[k] / 1000)
print(job["write"]["bw"], round(job["write"]["iops"]), us("50.000000"), us("99.000000"), us("99.900000"))
PY
)
rm -f "$WORK/sync.dat"

echo "building store_bench (release)" >&2
cargo build --release -q -p rocketcore-shards --example store_bench --manifest-path "$REPO/Cargo.toml"
cargo build --release -q -p rocketcore-bench --manifest-path "$REPO/Cargo.toml"
BENCH="$CARGO_TARGET_DIR/release/examples/store_bench"

# Runs store_bench and prints its RESULT line.
store_bench() {
    "$BENCH" --size 1024 --seconds "$SECONDS_PER_RUN" --dir "$WORK" "$@" | grep '^RESULT'
}

# Value of key=... in a RESULT line.
field() {
    tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'
}

echo "store_bench: SYNC_FLUSH, 64 appenders, segment warming off (before/after)" >&2
COLD_RESULT="$(store_bench --mode sync --appenders 64 --warm-ahead-mb 0)"
echo "store_bench: SYNC_FLUSH, 64 appenders" >&2
SYNC_RESULT="$(store_bench --mode sync --appenders 64)"
echo "store_bench: SYNC_FLUSH, 256 appenders" >&2
SYNC256_RESULT="$(store_bench --mode sync --appenders 256)"
echo "store_bench: SYNC_FLUSH, 1024 appenders" >&2
SYNC1024_RESULT="$(store_bench --mode sync --appenders 1024)"
echo "store_bench: ASYNC_FLUSH, 64 appenders" >&2
ASYNC_RESULT="$(store_bench --mode async --appenders 64)"
HALF_RATE="$(awk -v m="$(field "$SYNC_RESULT" msgs_per_s)" 'BEGIN {printf "%d", m / 2}')"
# Open loop: one schedule, every put its own task (one timer instead of 64 per interval).
echo "store_bench: SYNC_FLUSH at $HALF_RATE msgs/s (half of the 64-appender max), open loop" >&2
HALF_OUT="$("$BENCH" --size 1024 --seconds "$SECONDS_PER_RUN" --dir "$WORK" --mode sync --appenders 1 \
    --rate "$HALF_RATE")"
HALF_RESULT="$(grep '^RESULT' <<<"$HALF_OUT")"
echo "store_bench: the same schedule with no put (this machine's scheduling floor)" >&2
NONE_RESULT="$(store_bench --mode none --appenders 1 --rate "$HALF_RATE")"
echo "rocketcore-bench stalls: how often this machine takes a CPU away" >&2
STALLS="$("$CARGO_TARGET_DIR/release/rocketcore-bench" stalls --duration "${SECONDS_PER_RUN}s" | tail -n +2)"

SEQ_MBS="$(awk -v k="$SEQ_KIB" 'BEGIN {printf "%.1f", k * 1024 / 1e6}')"
SYNC4K_MBS="$(awk -v k="$SYNC_KIB" 'BEGIN {printf "%.1f", k * 1024 / 1e6}')"

row() { # name, RESULT line
    local mbs
    mbs="$(field "$2" record_mb_per_s)"
    printf '| %-36s | %10s | %8s | %7s | %7s | %8s | %8s | %6s |\n' "$1" "$(field "$2" msgs_per_s)" "$mbs" \
        "$(awk -v a="$mbs" -v b="$SEQ_MBS" 'BEGIN {printf "%.1f%%", 100 * a / b}')" \
        "$(field "$2" p50_us)" "$(field "$2" p99_us)" "$(field "$2" p999_us)" "$(field "$2" max_us)"
}

echo
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)   host: $(nproc) cores   fs: $(df -h --output=source,fstype "$WORK" | tail -1)"
echo "fio sequential O_DIRECT 1 MiB, iodepth 32 ($ENGINE): $SEQ_MBS MB/s"
echo "fio 4 KiB write + fdatasync: $SYNC4K_MBS MB/s, $SYNC_IOPS IOPS; fdatasync p50 $SYNC_P50 us, p99 $SYNC_P99 us, p99.9 $SYNC_P999 us"
echo
echo "| store_bench, 1 KiB bodies, 1 shard   |     msgs/s |     MB/s |  of fio |  p50 us |   p99 us | p99.9 us | max us |"
echo "|--------------------------------------|------------|----------|---------|---------|----------|----------|--------|"
row "SYNC_FLUSH, 64 appenders, no warming" "$COLD_RESULT"
row "SYNC_FLUSH, 64 appenders" "$SYNC_RESULT"
row "SYNC_FLUSH, 256 appenders" "$SYNC256_RESULT"
row "SYNC_FLUSH, 1024 appenders" "$SYNC1024_RESULT"
row "ASYNC_FLUSH, 64 appenders" "$ASYNC_RESULT"
row "SYNC_FLUSH, half rate, open loop" "$HALF_RESULT"
row "same schedule, no put (floor)" "$NONE_RESULT"
echo
echo "group commit rounds in the half-rate run (us; SYNC_FLUSH writes are O_DSYNC, so a write includes"
echo "its flush and there are no separate fdatasyncs; an append waits for the write in flight and its own):"
grep -E '^  (write_us|fdatasync_us|round_bytes) ' <<<"$HALF_OUT"
echo
echo "CPU stalls (one pinned thread per CPU spinning on the clock; wait>=L is the share of time a thread"
echo "pinned there waits at least L when it becomes ready: above 1 % at L = 2 ms, no p99 there is below 2 ms):"
echo "$STALLS"
echo
echo "MB/s counts stored record bytes (body + ~100 bytes of header, topic and properties)."
echo "targets: SYNC >= 50% and ASYNC >= 70% of fio sequential; SYNC p99 <= 2000 us at half rate"
