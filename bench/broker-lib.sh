#!/usr/bin/env bash
# Shared by the bench scripts (sourced, not run): start a broker on ephemeral loopback ports.

# start_broker BIN STORE FLUSH_DISK_TYPE LOG
# Starts BIN broker with its store in STORE and 256 MiB segments, output to LOG, and waits for its
# ready line. Sets BROKER_PID and BROKER_NS (the NameServer address from the ready line).
start_broker() {
    "$1" broker --set storePathRootDir="$2" --set listenPort=0 --set namesrvListenPort=0 \
        --set flushDiskType="$3" --set mapedFileSizeCommitLog=268435456 >"$4" 2>&1 &
    # shellcheck disable=SC2034 # read by the script that sources this file
    BROKER_PID=$!
    for _ in $(seq 100); do
        grep -q "rocketcore ready" "$4" && break
        sleep 0.1
    done
    BROKER_NS="$(sed -n 's/.*namesrv=\([^ ]*\).*/\1/p' "$4")"
    if [ -z "$BROKER_NS" ]; then
        echo "broker $1 did not start; its last lines:" >&2
        tail -5 "$4" >&2
        return 1
    fi
}
