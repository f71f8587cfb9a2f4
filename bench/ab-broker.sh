#!/usr/bin/env bash
# Usage: build two broker binaries as /tmp/rocketcore-before and /tmp/rocketcore-after, then run this.
# A/B: peak RSS while producing, and consume-from-first throughput, for two broker binaries.
set -euo pipefail
B=/work/main/target/release/rocketcore-bench
for round in 1 2; do
for which in before after; do
  store=/work/ab-$which; rm -rf "$store"; mkdir -p "$store"
  /tmp/rocketcore-$which broker --set storePathRootDir=$store --set listenPort=0 --set namesrvListenPort=0 --set flushDiskType=ASYNC_FLUSH --set mapedFileSizeCommitLog=268435456 > /tmp/ab-$which.out 2>/tmp/ab-$which.err &
  pid=$!
  for _ in $(seq 100); do grep -q "rocketcore ready" /tmp/ab-$which.out && break; sleep 0.1; done
  ns=$(sed -n 's/.*namesrv=\([^ ]*\).*/\1/p' /tmp/ab-$which.out)
  $B produce --namesrv "$ns" --quiet --size 1024 --batch 32 --connections 4 --inflight 16 --rate max --warmup 1s --duration 10s > /tmp/ab-$which-produce.txt 2>&1 || true
  rss=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
  $B consume --namesrv "$ns" --quiet --from first --duration 8s > /tmp/ab-$which-consume.txt 2>&1 || true
  prod=$(grep -E "msgs/s" /tmp/ab-$which-produce.txt | head -1 | tr -s ' ')
  cons=$(grep -E "msgs/s" /tmp/ab-$which-consume.txt | head -1 | tr -s ' ')
  echo "round=$round $which peak_rss_kb=$rss | produce: $prod | consume: $cons"
  kill -TERM $pid; wait $pid || true; rm -rf "$store"
done
done
