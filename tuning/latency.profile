# rocketcore tuning profile: latency (the default; for brokers where p99 send/pull latency matters most)
#
# One setting per line; '#' starts a comment line; blank lines are ignored. Six fields separated by '|':
#   name|kind|target|recommended|compare|why
# name         what the table shows; sysfs rows that match several files get ":<instance>" appended
# kind         sysctl  target is a key (vm.swappiness) read from and written to /proc/sys/<key with . as />
#              sysfs   target is a path, may hold '*' (one row per match; /sys/block/X is used only when
#                      /sys/block/X/device exists, i.e. a real disk); the first row matching a file owns it
#              limits  target is domain:type:item of /etc/security/limits.conf + limits.d/*.conf (last line wins);
#                      --apply writes /etc/security/limits.d/99-rocketcore.conf
#              irq     target is a glob of smp_affinity masks; one row: the union of CPUs IRQs may use (check only)
# recommended  a value, alternatives "a,b" (first one the kernel offers is applied), "unlimited",
#              or mem_pct(P,FLOOR,CAP) = P% of MemTotal in kB, at least FLOOR, at most CAP
# compare      eq (equals one alternative), ge / le (numbers; unlimited is infinite),
#              contains-bracketed (the [selected] word of a sysfs choice file), cpus-within (irq only)
# why          one line: what it buys and what getting it wrong costs (tuning/README.md says more)
# A target missing on this host is reported ABSENT ("not present on this host") and is not a failure.
#
# From RocketMQ's own advice (docs + distribution/bin/os.sh)
vm.extra_free_kbytes|sysctl|vm.extra_free_kbytes|mem_pct(2,1024,2000000)|ge|keeps kswapd reclaiming before allocations hit direct reclaim stalls; only some kernels have it
vm.min_free_kbytes|sysctl|vm.min_free_kbytes|mem_pct(1,1024,1048576)|ge|below 1024 KB the kernel can deadlock under load; 1% of RAM (max 1 GiB) gives reclaim headroom
vm.max_map_count|sysctl|vm.max_map_count|655360|ge|every mmapped segment and queue file is a mapping; too few and mmap fails with ENOMEM
vm.swappiness|sysctl|vm.swappiness|10|le|higher values swap broker memory out to keep page cache, turning hot paths into major faults
vm.overcommit_memory|sysctl|vm.overcommit_memory|1|eq|large sparse mappings must not be refused by the heuristic overcommit check
vm.zone_reclaim_mode|sysctl|vm.zone_reclaim_mode|0|eq|NUMA zone reclaim drops page cache on the local node instead of using remote memory: latency spikes
vm.dirty_background_ratio|sysctl|vm.dirty_background_ratio|50|eq|RocketMQ flushes itself; early background writeback competes with its own flush for the disk
vm.dirty_ratio|sysctl|vm.dirty_ratio|50|eq|writers block in balance_dirty_pages once dirty pages pass this; too low throttles appends
vm.dirty_writeback_centisecs|sysctl|vm.dirty_writeback_centisecs|360000|eq|periodic flusher wakeups every 5 s add write bursts the broker did not ask for
vm.page-cluster|sysctl|vm.page-cluster|3|eq|swap readahead of 8 pages, as RocketMQ's os.sh sets
nofile-soft|limits|*:soft:nofile|655350|ge|each connection and store file is a descriptor; too low and accept() fails with EMFILE
nofile-hard|limits|*:hard:nofile|655350|ge|the soft limit cannot be raised above the hard limit
disk-scheduler-nvme|sysfs|/sys/block/nvme*/queue/scheduler|none|contains-bracketed|NVMe queues are per core already; a scheduler only adds a lock and latency
disk-scheduler|sysfs|/sys/block/*/queue/scheduler|mq-deadline,deadline|contains-bracketed|deadline bounds how long a read can starve behind the append stream
# For io_uring and thread-per-core
memlock-soft|limits|*:soft:memlock|unlimited|ge|io_uring registered buffers are locked memory; too low and ring/buffer registration fails with ENOMEM
memlock-hard|limits|*:hard:memlock|unlimited|ge|the soft limit cannot be raised above the hard limit
kernel.io_uring_disabled|sysctl|kernel.io_uring_disabled|0|eq|1 or 2 makes io_uring_setup fail (EPERM) and the broker cannot start its reactors
thp-enabled|sysfs|/sys/kernel/mm/transparent_hugepage/enabled|never|contains-bracketed|khugepaged collapsing and fault-time compaction stall shard threads for milliseconds
thp-defrag|sysfs|/sys/kernel/mm/transparent_hugepage/defrag|never|contains-bracketed|synchronous compaction on page faults is a multi-millisecond stall on a reactor thread
cpufreq-governor|sysfs|/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor|performance|eq|busy-polling reactors look idle to ondemand/powersave; ramping clocks adds tens of microseconds
irq-affinity|irq|/proc/irq/*/smp_affinity|0|cpus-within|an interrupt on a shard core preempts its reactor; keep IRQs on the housekeeping CPU (check only)
net.core.somaxconn|sysctl|net.core.somaxconn|4096|ge|caps every listen backlog; a reconnect storm overflows it and clients wait for SYN retransmits (1 s, 3 s)
net.ipv4.tcp_max_syn_backlog|sysctl|net.ipv4.tcp_max_syn_backlog|8192|ge|half-open connections beyond this are dropped or need syncookies during reconnect storms
