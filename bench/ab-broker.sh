#!/usr/bin/env bash
# Usage: build two broker binaries as /tmp/rocketcore-before and /tmp/rocketcore-after, then run this.
# A/B: peak RSS while producing, and consume-from-first throughput, for two broker binaries.
set -euo pipefail
B=/work/main/target/release/rocketcore-bench
# shellcheck source=bench/broker-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/broker-lib.sh"
for round in 1 2; do
for which in before after; do
  store=/work/ab-$which; rm -rf "$store"; mkdir -p "$store"
  start_broker "/tmp/rocketcore-$which" "$store" ASYNC_FLUSH "/tmp/ab-$which.out"
  pid=$BROKER_PID
  ns=$BROKER_NS
  $B produce --namesrv "$ns" --quiet --size 1024 --batch 32 --connections 4 --inflight 16 --rate max --warmup 1s --duration 10s > /tmp/ab-$which-produce.txt 2>&1 || true
  rss=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
  $B consume --namesrv "$ns" --quiet --from first --duration 8s > /tmp/ab-$which-consume.txt 2>&1 || true
  prod=$(grep -E "msgs/s" /tmp/ab-$which-produce.txt | head -1 | tr -s ' ')
  cons=$(grep -E "msgs/s" /tmp/ab-$which-consume.txt | head -1 | tr -s ' ')
  echo "round=$round $which peak_rss_kb=$rss | produce: $prod | consume: $cons"
  kill -TERM $pid; wait $pid || true; rm -rf "$store"
done
done
