//! Unit tests against fixture trees: a fake /proc, /sys and /etc under a temp dir, as os.sh's tests use.

use super::probe::{self, add_mask, cpu_list, parse_cpu_list};
use super::profile::{self, Kind};
use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A temp dir removed on drop.
struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!(
            "rocketcore-tuning-unit-{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create fixture root");
        Fixture { root }
    }

    fn file(&self, host_path: &str, text: &str) -> &Self {
        let path = self.root.join(host_path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, format!("{text}\n")).expect("write fixture file");
        self
    }

    fn dir(&self, host_path: &str) -> &Self {
        fs::create_dir_all(self.root.join(host_path.trim_start_matches('/'))).expect("mkdir");
        self
    }

    /// Every setting of the latency profile at its recommended value, on a 16 GiB, 2-CPU host.
    fn tuned() -> Fixture {
        let f = Fixture::new("tuned");
        for (key, value) in [
            ("vm/min_free_kbytes", "200000"),
            ("vm/max_map_count", "655360"),
            ("vm/swappiness", "10"),
            ("vm/overcommit_memory", "1"),
            ("vm/zone_reclaim_mode", "0"),
            ("vm/dirty_background_ratio", "50"),
            ("vm/dirty_ratio", "50"),
            ("vm/dirty_writeback_centisecs", "360000"),
            ("vm/page-cluster", "3"),
            ("kernel/io_uring_disabled", "0"),
            ("net/core/somaxconn", "4096"),
            ("net/ipv4/tcp_max_syn_backlog", "8192"),
        ] {
            f.file(&format!("/proc/sys/{key}"), value);
        }
        f.file("/proc/meminfo", "MemTotal:       16318748 kB\nMemFree:  1 kB")
            .file("/sys/block/sda/queue/scheduler", "none [mq-deadline] kyber bfq ")
            .dir("/sys/block/sda/device")
            .file("/sys/block/nvme0n1/queue/scheduler", "[none] mq-deadline")
            .dir("/sys/block/nvme0n1/device")
            .file("/sys/block/loop0/queue/scheduler", "[none] mq-deadline")
            .file("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]")
            .file("/sys/kernel/mm/transparent_hugepage/defrag", "always defer defer+madvise madvise [never]")
            .file("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance")
            .file("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "performance")
            .file("/proc/irq/0/smp_affinity", "1")
            .file("/proc/irq/24/smp_affinity", "00000000,00000001")
            .file(
                "/etc/security/limits.conf",
                "# defaults\n*  -  nofile  655350\n*\tsoft\tmemlock\tunlimited\n* hard memlock unlimited",
            );
        f
    }

    fn statuses(&self, profile: &str) -> BTreeMap<String, Status> {
        let findings = check_profile(profile, &self.root).expect("check_profile");
        findings.into_iter().map(|f| (f.name, f.status)).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn drifted(map: &BTreeMap<String, Status>) -> BTreeSet<String> {
    map.iter()
        .filter(|(_, s)| **s == Status::Drift)
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn given_each_builtin_profile_when_parsed_should_hold_every_setting_the_issue_asks_for() {
    for name in ["latency", "throughput"] {
        let text = profile_text(name).expect("built-in profile");
        let settings = profile::parse(name, text).expect("profile parses");
        let targets: BTreeSet<&str> = settings.iter().map(|s| s.target.as_str()).collect();
        for wanted in [
            "vm.extra_free_kbytes",
            "vm.min_free_kbytes",
            "vm.max_map_count",
            "vm.swappiness",
            "vm.dirty_background_ratio",
            "vm.dirty_ratio",
            "vm.dirty_writeback_centisecs",
            "vm.page-cluster",
            "vm.overcommit_memory",
            "vm.zone_reclaim_mode",
            "*:hard:nofile",
            "*:soft:memlock",
            "kernel.io_uring_disabled",
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
            "/proc/irq/*/smp_affinity",
            "/sys/block/*/queue/scheduler",
            "/sys/block/nvme*/queue/scheduler",
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
        ] {
            assert!(targets.contains(wanted), "{name} lacks {wanted}");
        }
    }
    assert_eq!(profile_text("nope"), None);
}

#[test]
fn given_the_two_profiles_when_compared_should_differ_only_in_transparent_huge_pages() {
    let lat = profile::parse("latency", LATENCY).expect("parse");
    let thr = profile::parse("throughput", THROUGHPUT).expect("parse");
    assert_eq!(lat.len(), thr.len());
    for (a, b) in lat.iter().zip(&thr) {
        if a.name.starts_with("thp-") {
            assert_eq!(
                (a.recommended.as_str(), b.recommended.as_str()),
                ("never", "madvise")
            );
        } else {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn given_a_tuned_host_when_checking_should_find_everything_ok_and_missing_settings_absent() {
    let f = Fixture::tuned();
    let statuses = f.statuses("latency");
    assert_eq!(drifted(&statuses), BTreeSet::new(), "{statuses:?}");
    assert_eq!(statuses["vm.extra_free_kbytes"], Status::Absent);
    assert_eq!(statuses["disk-scheduler:sda"], Status::Ok);
    assert_eq!(statuses["disk-scheduler-nvme:nvme0n1"], Status::Ok);
    assert!(
        !statuses.keys().any(|k| k.contains("loop0")),
        "loop devices are not disks"
    );
    let mut out = Vec::new();
    assert_eq!(run_check_cli("latency", &f.root, &mut out), 0);
    let text = String::from_utf8(out).expect("utf8");
    assert!(text.starts_with("SETTING "));
    assert!(text.contains("vm.extra_free_kbytes             -                326374                   ABSENT  not present on this host\n"), "{text}");
    assert!(
        text.ends_with("summary: 23 OK, 0 DRIFT, 1 ABSENT (profile latency)\n"),
        "{text}"
    );
}

#[test]
fn given_a_default_host_when_checking_should_report_each_drift() {
    let f = Fixture::tuned();
    f.file("/proc/sys/vm/swappiness", "60")
        .file("/proc/sys/vm/max_map_count", "65530")
        .file("/proc/sys/vm/min_free_kbytes", "1000")
        .file(
            "/sys/block/sda/queue/scheduler",
            "[none] mq-deadline kyber bfq ",
        )
        .file(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never",
        )
        .file(
            "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "powersave",
        )
        .file("/proc/irq/25/smp_affinity", "3")
        .file("/etc/security/limits.conf", "* hard nofile 1024");
    let statuses = f.statuses("latency");
    let want: BTreeSet<String> = [
        "vm.swappiness",
        "vm.max_map_count",
        "vm.min_free_kbytes",
        "disk-scheduler:sda",
        "thp-enabled",
        "cpufreq-governor:cpu1",
        "irq-affinity",
        "nofile-soft",
        "nofile-hard",
        "memlock-soft",
        "memlock-hard",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(drifted(&statuses), want);
    let findings = check_profile("latency", &f.root).expect("check");
    let irq = findings
        .iter()
        .find(|x| x.name == "irq-affinity")
        .expect("irq row");
    assert_eq!(irq.current.as_deref(), Some("0-1"));
    let unset = findings
        .iter()
        .find(|x| x.name == "nofile-soft")
        .expect("row");
    assert_eq!(unset.current, None);
    let mut out = Vec::new();
    assert_eq!(run_check_cli("latency", &f.root, &mut out), 1);
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        text.contains(
            "nofile-soft                      unset            655350                   DRIFT\n"
        ),
        "{text}"
    );
}

#[test]
fn given_the_throughput_profile_when_thp_is_madvise_should_be_ok() {
    let f = Fixture::tuned();
    f.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always [madvise] never",
    )
    .file(
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "always defer defer+madvise [madvise] never",
    );
    assert_eq!(drifted(&f.statuses("throughput")), BTreeSet::new());
    assert_eq!(drifted(&f.statuses("latency")).len(), 2);
}

#[test]
fn given_an_empty_root_when_checking_should_fail_with_exit_two() {
    let f = Fixture::new("empty");
    assert_eq!(
        check_profile("latency", &f.root),
        Err(TuningError::NoProcSys(f.root.clone()))
    );
    let mut out = Vec::new();
    assert_eq!(run_check_cli("latency", &f.root, &mut out), 2);
    assert_eq!(run_check_cli("nope", &f.root, &mut out), 2);
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        text.contains("no profile 'nope' (available: latency throughput)"),
        "{text}"
    );
}

#[test]
fn given_a_host_without_optional_settings_when_checking_should_mark_them_absent_not_drift() {
    let f = Fixture::tuned();
    fs::remove_dir_all(f.root.join("sys/devices")).expect("rm cpufreq");
    fs::remove_dir_all(f.root.join("proc/irq")).expect("rm irq");
    fs::remove_file(f.root.join("proc/sys/kernel/io_uring_disabled")).expect("rm");
    fs::remove_dir_all(f.root.join("etc")).expect("rm etc");
    let s = f.statuses("latency");
    for name in [
        "cpufreq-governor",
        "irq-affinity",
        "kernel.io_uring_disabled",
        "nofile-soft",
        "memlock-hard",
    ] {
        assert_eq!(s[name], Status::Absent, "{name}");
    }
    assert_eq!(drifted(&s), BTreeSet::new());
}

#[test]
fn given_mem_pct_when_resolved_should_clamp_to_floor_and_cap() {
    let f = Fixture::new("mem");
    f.file("/proc/meminfo", "MemTotal:  50000 kB");
    assert_eq!(
        probe::resolve_rec("mem_pct(1,1024,1048576)", &f.root),
        "1024"
    );
    f.file("/proc/meminfo", "MemTotal:  1073741824 kB");
    assert_eq!(
        probe::resolve_rec("mem_pct(1,1024,1048576)", &f.root),
        "1048576"
    );
    f.file("/proc/meminfo", "MemTotal:  16318748 kB");
    assert_eq!(
        probe::resolve_rec("mem_pct(1,1024,1048576)", &f.root),
        "163187"
    );
    assert_eq!(probe::resolve_rec("655360", &f.root), "655360");
}

#[test]
fn given_affinity_masks_when_parsed_should_list_the_cpus() {
    let mut cpus = BTreeSet::new();
    assert!(add_mask("00000000,00000105", &mut cpus));
    assert!(add_mask("f0", &mut cpus));
    assert_eq!(cpu_list(&cpus), "0,2,4-8");
    assert!(!add_mask("zz", &mut cpus));
    assert!(!add_mask("", &mut cpus));
    assert_eq!(cpu_list(&BTreeSet::new()), "none");
    assert_eq!(
        parse_cpu_list("0-2,5").map(|c| cpu_list(&c)).as_deref(),
        Some("0-2,5")
    );
    assert_eq!(parse_cpu_list("x"), None);
}

#[test]
fn given_values_when_judged_should_follow_os_sh_rules() {
    use super::profile::Compare::*;
    assert!(probe::judge(Ge, "unlimited", "655350"));
    assert!(!probe::judge(Ge, "65536", "unlimited"));
    assert!(probe::judge(Le, "1", "10"));
    assert!(!probe::judge(Le, "sixty", "10"));
    assert!(probe::judge(
        ContainsBracketed,
        "deadline",
        "mq-deadline,deadline"
    ));
    assert_eq!(
        probe::selected_choice("none [mq-deadline] kyber bfq "),
        "mq-deadline"
    );
    assert_eq!(probe::selected_choice("performance"), "performance");
    assert_eq!(probe::selected_choice("a b"), "");
    assert_eq!(probe::to_num("99999999999999999999"), Some(probe::INF));
}

#[test]
fn given_bad_profile_lines_when_parsed_should_name_the_line_and_reason() {
    let cases = [
        ("a|sysctl|vm.x|1|eq", "want 6 fields"),
        ("a|sysctl|vm.x|1|eq|why|extra", "want 6 fields"),
        ("a b|sysctl|vm.x|1|eq|why", "bad name"),
        ("a|proc|vm.x|1|eq|why", "unknown kind"),
        ("a|sysctl|vm.x|1|gt|why", "unknown compare"),
        ("a|irq|/proc/irq/*/smp_affinity|0|eq|why", "cpus-within"),
        ("a|limits|*:both:nofile|1|ge|why", "limits target"),
        ("a|sysfs|sys/x|1|eq|why", "absolute path"),
    ];
    for (line, reason) in cases {
        let text = format!("# header\n\n{line}\n");
        match profile::parse("p", &text) {
            Err(TuningError::BadProfile {
                line: 3, reason: r, ..
            }) => assert!(r.contains(reason), "{line}: {r}"),
            other => panic!("{line}: {other:?}"),
        }
    }
    assert!(matches!(
        profile::parse("p", "# only comments\n"),
        Err(TuningError::BadProfile { line: 0, .. })
    ));
}

/// Seeded random lines over the format's alphabet: the parser never panics, and what it accepts
/// has exactly six fields that join back to the line.
#[test]
fn given_random_lines_when_parsed_should_never_panic_and_accept_only_six_field_lines() {
    let alphabet: Vec<&str> = vec![
        "|",
        "a",
        "sysctl",
        "sysfs",
        "limits",
        "irq",
        "eq",
        "ge",
        "cpus-within",
        "/",
        "*",
        ":",
        "soft",
        " ",
        "#",
        "1",
        "mem_pct(1,2,3)",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..5000 {
        let mut line = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        for i in 0..(seed % 14) {
            line.push_str(alphabet[((seed >> (i * 4)) % alphabet.len() as u64) as usize]);
        }
        if let Ok(settings) = profile::parse("fuzz", &line) {
            assert_eq!(settings.len(), 1);
            assert_eq!(line.matches('|').count(), 5, "{line}");
        }
    }
}

#[test]
fn given_globs_when_expanded_should_match_bash_nullglob_order() {
    let f = Fixture::new("glob");
    for cpu in ["cpu0", "cpu10", "cpu2", ".cpu9", "cpufreq"] {
        f.dir(&format!("/sys/devices/system/cpu/{cpu}"));
    }
    for cpu in ["cpu0", "cpu10", "cpu2", ".cpu9"] {
        f.file(
            &format!("/sys/devices/system/cpu/{cpu}/cpufreq/scaling_governor"),
            "performance",
        );
    }
    let hits = probe::expand(
        &f.root,
        "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
    );
    let names: Vec<String> = hits
        .iter()
        .filter_map(|h| {
            probe::instance_of("/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor", h)
        })
        .collect();
    assert_eq!(names, ["cpu0", "cpu10", "cpu2"]);
    assert!(probe::expand(&f.root, "/nothing/*/here").is_empty());
}

#[test]
fn given_limits_in_conf_and_limits_d_when_looked_up_should_take_the_last_matching_line() {
    let f = Fixture::new("limits");
    f.file(
        "/etc/security/limits.conf",
        "* hard nofile 1024\nroot hard nofile 5\n#* hard nofile 9",
    )
    .file("/etc/security/limits.d/10-a.conf", "* - nofile 2048")
    .file(
        "/etc/security/limits.d/20-b.conf",
        "* soft nofile 4096  # comment",
    );
    assert_eq!(
        probe::limits_lookup(&f.root, "*", "hard", "nofile").as_deref(),
        Some("2048")
    );
    assert_eq!(
        probe::limits_lookup(&f.root, "*", "soft", "nofile").as_deref(),
        Some("4096")
    );
    assert_eq!(probe::limits_lookup(&f.root, "*", "hard", "memlock"), None);
}

fn proc_self_limits(memlock: &str, nofile: &str) -> String {
    format!(
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max open files            {nofile:<20} {nofile:<20} files     \n\
         Max locked memory         {memlock:<20} {memlock:<20} bytes     "
    )
}

#[test]
fn given_low_process_limits_when_the_broker_starts_should_warn_once_each() {
    let f = Fixture::tuned();
    f.file("/proc/self/limits", &proc_self_limits("8388608", "1024"))
        .file("/proc/self/status", "CapEff:\t0000000000000000");
    let store = f.root.join("store");
    let warnings = broker_startup_warnings(&f.root, &store, 64 << 20, 10_000);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("memlock") && warnings[0].contains("8388608"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("Max open files") && warnings[1].contains("14096"),
        "{}",
        warnings[1]
    );
    f.file(
        "/proc/self/limits",
        &proc_self_limits("unlimited", "655350"),
    );
    assert!(broker_startup_warnings(&f.root, &store, 64 << 20, 10_000).is_empty());
}

#[test]
fn given_cap_ipc_lock_when_memlock_is_low_should_not_warn() {
    let f = Fixture::tuned();
    f.file("/proc/self/limits", &proc_self_limits("65536", "655350"))
        .file("/proc/self/status", "CapEff:\t000001ffffffffff");
    assert!(broker_startup_warnings(&f.root, &f.root, 1 << 30, 100).is_empty());
}

#[test]
fn given_high_swappiness_when_the_broker_starts_should_warn() {
    let f = Fixture::tuned();
    f.file("/proc/sys/vm/swappiness", "60");
    let warnings = broker_startup_warnings(&f.root, &f.root, 0, 0);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("tuning: vm.swappiness is 60, recommended 10 or less"),
        "{}",
        warnings[0]
    );
}

#[test]
fn given_a_store_on_a_partition_whose_disk_has_no_scheduler_when_the_broker_starts_should_warn() {
    let f = Fixture::tuned();
    let store = f.root.join("data/store");
    fs::create_dir_all(&store).expect("mkdir store");
    let (major, minor) = super::startup::split_dev(fs::metadata(&store).expect("stat").dev());
    f.file("/sys/block/sdz/queue/scheduler", "[none] mq-deadline")
        .file("/sys/block/sdz/sdz1/partition", "1");
    let link = f.root.join(format!("sys/dev/block/{major}:{minor}"));
    fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink("../../block/sdz/sdz1", &link).expect("symlink");
    let warnings = broker_startup_warnings(&f.root, &store, 0, 0);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("tuning: I/O scheduler of sdz (holds "),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("is none, recommended mq-deadline,deadline"),
        "{}",
        warnings[0]
    );
    f.file("/sys/block/sdz/queue/scheduler", "none [mq-deadline]");
    assert!(broker_startup_warnings(&f.root, &store, 0, 0).is_empty());
    // the same device named like an NVMe disk is judged by the NVMe row: none is right there
    let settings = profile::parse("latency", LATENCY).expect("parse");
    assert!(settings
        .iter()
        .any(|s| s.kind == Kind::Sysfs && s.target.contains("nvme*")));
}

#[test]
fn given_the_dev_number_encoding_when_split_should_match_glibc() {
    assert_eq!(super::startup::split_dev(0x0801), (8, 1));
    assert_eq!(super::startup::split_dev((259u64 << 8) | 3), (259, 3));
    let makedev = |major: u64, minor: u64| {
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff)
    };
    assert_eq!(
        super::startup::split_dev(makedev(0x1234, 0x56789)),
        (0x1234, 0x56789)
    );
}

#[test]
fn given_root_from_env_when_unset_should_be_slash() {
    // Reads the variable as the broker does; the test runner does not set it.
    if std::env::var_os("ROCKETCORE_TUNING_ROOT").is_none() {
        assert_eq!(root_from_env(), PathBuf::from("/"));
    }
}
