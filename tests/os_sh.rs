//! os.sh against fixture trees (a fake /proc, /sys and /etc under ROCKETCORE_TUNING_ROOT), and the broker's
//! built-in check against the same trees. Every os.sh run here sets ROCKETCORE_TUNING_ROOT: without it,
//! --apply would tune the machine running the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use rocketcore::tuning::{self, Status};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture tree in the temp dir, removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn empty(tag: &str) -> Tree {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let root =
            std::env::temp_dir().join(format!("rocketcore-os-sh-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create fixture root");
        Tree { root }
    }

    fn file(&self, host_path: &str, text: &str) -> &Tree {
        let path = self.path(host_path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, format!("{text}\n")).expect("write");
        self
    }

    fn dir(&self, host_path: &str) -> &Tree {
        fs::create_dir_all(self.path(host_path)).expect("mkdir");
        self
    }

    fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    fn read(&self, host_path: &str) -> String {
        fs::read_to_string(self.path(host_path)).expect("read fixture file")
    }

    /// A stock 16 GiB, 2-CPU host: kernel defaults, an SSD with no scheduler, an NVMe disk, a loop device.
    fn stock_host() -> Tree {
        let t = Tree::empty("stock");
        for (key, value) in [
            ("vm/min_free_kbytes", "67584"),
            ("vm/max_map_count", "65530"),
            ("vm/swappiness", "60"),
            ("vm/overcommit_memory", "0"),
            ("vm/zone_reclaim_mode", "0"),
            ("vm/dirty_background_ratio", "10"),
            ("vm/dirty_ratio", "20"),
            ("vm/dirty_writeback_centisecs", "500"),
            ("vm/page-cluster", "3"),
            ("kernel/io_uring_disabled", "0"),
            ("net/core/somaxconn", "4096"),
            ("net/ipv4/tcp_max_syn_backlog", "1024"),
        ] {
            t.file(&format!("/proc/sys/{key}"), value);
        }
        t.file("/proc/meminfo", "MemTotal:       16318748 kB")
            .file(
                "/sys/block/sda/queue/scheduler",
                "[none] mq-deadline kyber bfq ",
            )
            .dir("/sys/block/sda/device")
            .file("/sys/block/nvme0n1/queue/scheduler", "[none] mq-deadline")
            .dir("/sys/block/nvme0n1/device")
            .file("/sys/block/loop0/queue/scheduler", "[none] mq-deadline")
            .file(
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "always [madvise] never",
            )
            .file(
                "/sys/kernel/mm/transparent_hugepage/defrag",
                "always defer defer+madvise [madvise] never",
            )
            .file(
                "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
                "powersave",
            )
            .file(
                "/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
                "performance",
            )
            .file("/proc/irq/0/smp_affinity", "1")
            .file("/proc/irq/24/smp_affinity", "00000000,00000003")
            .file(
                "/etc/security/limits.conf",
                "# /etc/security/limits.conf\n* hard nofile 655350\n*   soft    memlock   65536",
            );
        t
    }

    /// The stock host after someone tuned it by hand to the latency profile.
    fn tuned_host() -> Tree {
        let t = Tree::stock_host();
        for (key, value) in [
            ("vm/min_free_kbytes", "200000"),
            ("vm/max_map_count", "655360"),
            ("vm/swappiness", "1"),
            ("vm/overcommit_memory", "1"),
            ("vm/dirty_background_ratio", "50"),
            ("vm/dirty_ratio", "50"),
            ("vm/dirty_writeback_centisecs", "360000"),
            ("net/ipv4/tcp_max_syn_backlog", "8192"),
        ] {
            t.file(&format!("/proc/sys/{key}"), value);
        }
        t.file(
            "/sys/block/sda/queue/scheduler",
            "none [mq-deadline] kyber bfq ",
        )
        .file(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always madvise [never]",
        )
        .file(
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "always defer defer+madvise madvise [never]",
        )
        .file(
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "performance",
        )
        .file("/proc/irq/24/smp_affinity", "00000000,00000001")
        .file(
            "/etc/security/limits.d/50-ops.conf",
            "* - nofile 700000\n* - memlock unlimited",
        );
        t
    }

    /// Every file under the root with its bytes: what "byte for byte" compares.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            let mut entries: Vec<_> = fs::read_dir(dir)
                .expect("read_dir")
                .filter_map(|e| e.ok())
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let rel = path.strip_prefix(base).expect("under base").to_path_buf();
                if path.is_dir() {
                    out.insert(rel.join(""), Vec::new());
                    walk(&path, base, out);
                } else {
                    out.insert(rel, fs::read(&path).expect("read"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }

    fn os_sh(&self, args: &[&str]) -> Output {
        assert!(!self.root.as_os_str().is_empty() && self.root != Path::new("/"));
        Command::new("bash")
            .arg(repo().join("os.sh"))
            .args(args)
            .env("ROCKETCORE_TUNING_ROOT", &self.root)
            .output()
            .expect("run bash os.sh")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The table rows os.sh prints: name → status.
fn table_statuses(table: &str) -> BTreeMap<String, String> {
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            match cells.as_slice() {
                [name, _, _, status, ..] if ["OK", "DRIFT", "ABSENT"].contains(status) => {
                    Some((name.to_string(), status.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn with_status(rows: &BTreeMap<String, String>, wanted: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|(_, s)| *s == wanted)
        .map(|(n, _)| n.clone())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn given_a_stock_host_when_checking_should_print_current_values_and_exit_one_for_drift() {
    let t = Tree::stock_host();
    let before = t.snapshot();
    let out = t.os_sh(&["--check"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let table = stdout(&out);
    assert!(table.starts_with("SETTING"), "{table}");
    assert!(
        table.contains(
            "vm.swappiness                    60               10                       DRIFT\n"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "disk-scheduler:sda               none             mq-deadline,deadline     DRIFT\n"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "memlock-soft                     65536            unlimited                DRIFT\n"
        ),
        "{table}"
    );
    assert!(table.contains("vm.extra_free_kbytes             -                326374                   ABSENT  not present on this host\n"));
    let rows = table_statuses(&table);
    assert_eq!(
        with_status(&rows, "DRIFT"),
        names(&[
            "vm.min_free_kbytes",
            "vm.max_map_count",
            "vm.swappiness",
            "vm.overcommit_memory",
            "vm.dirty_background_ratio",
            "vm.dirty_ratio",
            "vm.dirty_writeback_centisecs",
            "nofile-soft",
            "disk-scheduler:sda",
            "memlock-soft",
            "memlock-hard",
            "thp-enabled",
            "thp-defrag",
            "cpufreq-governor:cpu0",
            "irq-affinity",
            "net.ipv4.tcp_max_syn_backlog",
        ])
    );
    assert!(
        !rows.keys().any(|n| n.contains("loop0")),
        "loop devices are not disks"
    );
    assert_eq!(t.snapshot(), before, "--check must not change anything");
}

#[test]
fn given_a_tuned_host_when_checking_should_exit_zero_with_absent_settings_not_failing() {
    let t = Tree::tuned_host();
    let out = t.os_sh(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let rows = table_statuses(&stdout(&out));
    assert_eq!(with_status(&rows, "DRIFT"), BTreeSet::new());
    assert_eq!(
        with_status(&rows, "ABSENT"),
        names(&["vm.extra_free_kbytes"])
    );
    assert!(
        stdout(&out).ends_with("summary: 23 OK, 0 DRIFT, 1 ABSENT (profile latency)\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn given_the_same_fixture_when_the_broker_checks_should_report_the_same_drifts_as_os_sh() {
    for (tree, profile) in [
        (Tree::stock_host(), "latency"),
        (Tree::stock_host(), "throughput"),
        (Tree::tuned_host(), "latency"),
        (Tree::tuned_host(), "throughput"),
    ] {
        let out = tree.os_sh(&["--check", "--profile", profile]);
        let table = stdout(&out);
        let rows = table_statuses(&table);
        let findings = tuning::check_profile(profile, &tree.root).expect("check_profile");
        let broker_drift: BTreeSet<String> = findings
            .iter()
            .filter(|f| f.status == Status::Drift)
            .map(|f| f.name.clone())
            .collect();
        assert_eq!(broker_drift, with_status(&rows, "DRIFT"), "{profile}");
        let broker_absent: BTreeSet<String> = findings
            .iter()
            .filter(|f| f.status == Status::Absent)
            .map(|f| f.name.clone())
            .collect();
        assert_eq!(broker_absent, with_status(&rows, "ABSENT"), "{profile}");
        // `rocketcore broker --check-tuning` prints the very same table and exits with the same code.
        let mut cli = Vec::new();
        let code = tuning::run_check_cli(profile, &tree.root, &mut cli);
        assert_eq!(Some(code), out.status.code(), "{profile}");
        assert_eq!(String::from_utf8(cli).expect("utf8"), table, "{profile}");
    }
}

#[test]
fn given_a_stock_host_when_applying_should_save_first_and_write_recommended_values_where_they_belong(
) {
    let t = Tree::stock_host();
    let save = t.root.with_extension("save");
    let out = t.os_sh(&["--apply", "--save", save.to_str().expect("utf8 path")]);
    let text = stdout(&out);
    // Still exit 1 afterwards: irq-affinity is check-only and stays DRIFT until fixed by hand.
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.starts_with(&format!("saved previous values to: {}\n", save.display())),
        "{text}"
    );
    assert!(
        text.contains("advisory: irq-affinity is check-only"),
        "{text}"
    );
    assert_eq!(t.read("/proc/sys/vm/swappiness"), "10\n");
    assert_eq!(t.read("/proc/sys/vm/max_map_count"), "655360\n");
    assert_eq!(t.read("/proc/sys/vm/min_free_kbytes"), "163187\n");
    assert_eq!(t.read("/proc/sys/vm/dirty_writeback_centisecs"), "360000\n");
    assert_eq!(
        t.read("/sys/block/sda/queue/scheduler"),
        "none [mq-deadline] kyber bfq\n"
    );
    assert_eq!(
        t.read("/sys/block/nvme0n1/queue/scheduler"),
        "[none] mq-deadline\n"
    );
    assert_eq!(
        t.read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "always madvise [never]\n"
    );
    assert_eq!(
        t.read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "performance\n"
    );
    assert_eq!(
        t.read("/proc/irq/24/smp_affinity"),
        "00000000,00000003\n",
        "IRQ affinity is check-only"
    );
    let limits = t.read("/etc/security/limits.d/99-rocketcore.conf");
    for line in [
        "* soft nofile 655350",
        "* hard nofile 655350",
        "* soft memlock unlimited",
        "* hard memlock unlimited",
    ] {
        assert!(
            limits.lines().any(|l| l == line),
            "{line} missing from\n{limits}"
        );
    }
    assert!(t
        .read("/etc/sysctl.d/99-rocketcore.conf")
        .lines()
        .any(|l| l == "vm.swappiness = 10"));
    let findings = tuning::check_profile("latency", &t.root).expect("check");
    let drift: BTreeSet<String> = findings
        .iter()
        .filter(|f| f.status == Status::Drift)
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(drift, names(&["irq-affinity"]));
    let _ = fs::remove_file(save);
}

#[test]
fn given_an_applied_host_when_reverting_should_restore_every_file_byte_for_byte() {
    let t = Tree::stock_host();
    let before = t.snapshot();
    let save = t.root.with_extension("save");
    let applied = t.os_sh(&["--apply", "--save", save.to_str().expect("utf8 path")]);
    assert_eq!(applied.status.code(), Some(1), "{}", stderr(&applied));
    assert_ne!(t.snapshot(), before);
    let out = t.os_sh(&["--revert", save.to_str().expect("utf8 path")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        t.snapshot(),
        before,
        "revert must restore the tree exactly, created dirs included"
    );
    let _ = fs::remove_file(save);
}

#[test]
fn given_an_existing_save_file_when_applying_should_refuse_and_change_nothing() {
    let t = Tree::stock_host();
    let before = t.snapshot();
    let save = t.root.with_extension("save");
    fs::write(&save, "precious\n").expect("write");
    let out = t.os_sh(&["--apply", "--save", save.to_str().expect("utf8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&save).expect("read"), "precious\n");
    assert_eq!(t.snapshot(), before);
    let _ = fs::remove_file(save);
}

#[test]
fn given_dry_run_when_run_should_print_the_commands_and_change_nothing() {
    let t = Tree::stock_host();
    let before = t.snapshot();
    for args in [&["--dry-run"][..], &["--apply", "--dry-run"][..]] {
        let out = t.os_sh(args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let swappiness = t.path("/proc/sys/vm/swappiness");
        assert!(
            text.contains(&format!(
                "would-run: printf '%s\\n' 10 > {}",
                swappiness.display()
            )),
            "{text}"
        );
        assert!(text.contains("99-rocketcore.conf"), "{text}");
        assert_eq!(t.snapshot(), before, "{args:?} changed the tree");
    }
}

#[test]
fn given_bad_usage_when_run_should_exit_two_with_a_one_line_message() {
    let t = Tree::stock_host();
    let cases: [(&[&str], &str); 6] = [
        (&["--frobnicate"], "unknown option '--frobnicate'"),
        (&["--profile", "nope"], "no profile 'nope'"),
        (&["--profile"], "--profile needs a name"),
        (&["--apply", "--revert", "x"], "cannot be combined"),
        (&["--revert", "/nonexistent/save"], "cannot read save file"),
        (&["--check", "--save", "x"], "--save goes with --apply"),
    ];
    for (args, message) in cases {
        let out = t.os_sh(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("os.sh: ") && err.contains(message),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn given_a_root_without_proc_sys_when_checking_should_exit_two_like_the_broker() {
    let t = Tree::empty("bare");
    let out = t.os_sh(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("proc/sys"), "{}", stderr(&out));
    assert_eq!(
        tuning::run_check_cli("latency", &t.root, &mut Vec::new()),
        2
    );
}
