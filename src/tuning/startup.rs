//! The broker's startup check: only the settings whose drift hurts this process, each turned into one
//! warning line. The broker logs them and starts anyway.
//!
//! Limits (memlock, nofile) are read from `/proc/self/limits` under the root prefix, not from
//! limits.conf: that file is what the kernel enforces on this process, however it was started
//! (systemd's LimitNOFILE=/LimitMEMLOCK= bypass limits.conf entirely, and `*` lines never apply to root).
//! Swappiness and the store disk's scheduler are judged against the latency profile, os.sh's default.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::probe::{self, under};
use super::profile::{Kind, Setting};

/// Descriptors the broker needs besides client connections: store segments, consume-queue and index
/// files, io_uring rings and eventfds, listeners, log files. Generous on purpose: running out is EMFILE
/// on accept(), which the client sees as a refused connection.
pub(crate) const NOFILE_MARGIN: u64 = 4096;

/// CAP_IPC_LOCK: with it, io_uring does not charge registered buffers to RLIMIT_MEMLOCK.
const CAP_IPC_LOCK: u32 = 14;

const FIX: &str = "fix with `sudo ./os.sh --apply` (tuning/README.md)";

pub(crate) fn warnings(
    settings: &[Setting],
    root: &Path,
    store_dir: &Path,
    io_memory_bytes: u64,
    max_connections: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let limits = read_raw_limits(root);
    if let Some(w) = memlock_warning(root, limits.as_deref(), io_memory_bytes) {
        out.push(w);
    }
    if let Some(w) = swappiness_warning(settings, root) {
        out.push(w);
    }
    out.extend(scheduler_warnings(settings, root, store_dir));
    if let Some(w) = nofile_warning(limits.as_deref(), max_connections) {
        out.push(w);
    }
    out
}

fn read_raw_limits(root: &Path) -> Option<String> {
    probe::read_raw(&under(root, "/proc/self/limits"))
}

/// The soft limit from a /proc/self/limits line such as
/// `Max locked memory         8388608              8388608              bytes`.
pub(crate) fn soft_limit(limits: &str, label: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(label))?;
    let soft = line[label.len()..].split_whitespace().next()?;
    probe::to_num(soft)
}

fn memlock_warning(root: &Path, limits: Option<&str>, io_memory_bytes: u64) -> Option<String> {
    let soft = soft_limit(limits?, "Max locked memory")?;
    if soft >= io_memory_bytes || has_cap_ipc_lock(root) {
        return None;
    }
    Some(format!(
        "tuning: memlock (Max locked memory) is {soft} bytes, below the {io_memory_bytes} bytes of io_uring \
         buffers this broker registers: buffer registration fails with ENOMEM; {FIX}"
    ))
}

fn has_cap_ipc_lock(root: &Path) -> bool {
    let Some(status) = probe::read_raw(&under(root, "/proc/self/status")) else {
        return false;
    };
    let Some(line) = status.lines().find(|l| l.starts_with("CapEff:")) else {
        return false;
    };
    let hex = line["CapEff:".len()..].trim();
    u64::from_str_radix(hex, 16)
        .map(|caps| (caps >> CAP_IPC_LOCK) & 1 == 1)
        .unwrap_or(false)
}

fn nofile_warning(limits: Option<&str>, max_connections: u64) -> Option<String> {
    let soft = soft_limit(limits?, "Max open files")?;
    let needed = max_connections.saturating_add(NOFILE_MARGIN);
    if soft >= needed {
        return None;
    }
    Some(format!(
        "tuning: open-files limit (Max open files) is {soft}, below the {needed} that {max_connections} connections \
         plus {NOFILE_MARGIN} store and io_uring descriptors need: accept() fails with EMFILE under load; {FIX}"
    ))
}

fn swappiness_warning(settings: &[Setting], root: &Path) -> Option<String> {
    let setting = settings
        .iter()
        .find(|s| s.kind == Kind::Sysctl && s.target == "vm.swappiness")?;
    let raw = probe::read_raw(&under(root, &probe::sysctl_path(&setting.target)))?;
    let current = probe::squash(&raw);
    let rec = probe::resolve_rec(&setting.recommended, root);
    if probe::judge(setting.compare, &current, &rec) {
        return None;
    }
    Some(format!(
        "tuning: vm.swappiness is {current}, recommended {rec} or less: {}; {FIX}",
        setting.why
    ))
}

fn scheduler_warnings(settings: &[Setting], root: &Path, store_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for disk in store_disks(root, store_dir) {
        let Some(name) = disk
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Some(setting) = scheduler_setting(settings, &name) else {
            continue;
        };
        let Some(raw) = probe::read_raw(&disk.join("queue/scheduler")) else {
            continue;
        };
        let current = probe::selected_choice(&raw);
        let rec = probe::resolve_rec(&setting.recommended, root);
        if !probe::judge(setting.compare, &current, &rec) {
            out.push(format!(
                "tuning: I/O scheduler of {name} (holds {}) is {}, recommended {rec}: {}; {FIX}",
                store_dir.display(),
                if current.is_empty() {
                    "unknown"
                } else {
                    &current
                },
                setting.why
            ));
        }
    }
    out
}

/// The first profile row whose /sys/block/<glob>/queue/scheduler target matches `disk`, as os.sh
/// gives each disk to the first matching row.
fn scheduler_setting<'a>(settings: &'a [Setting], disk: &str) -> Option<&'a Setting> {
    settings.iter().find(|s| {
        s.kind == Kind::Sysfs
            && s.target.starts_with("/sys/block/")
            && s.target.ends_with("/queue/scheduler")
            && probe::expand_matches(
                &s.target["/sys/block/".len()..s.target.len() - "/queue/scheduler".len()],
                disk,
            )
    })
}

/// The whole-disk sysfs directories behind `store_dir`: its st_dev through /sys/dev/block/MAJ:MIN,
/// from a partition up to its disk, and from dm/md devices down to their slaves.
pub(crate) fn store_disks(root: &Path, store_dir: &Path) -> Vec<PathBuf> {
    let Some(dev) = existing_ancestor_dev(store_dir) else {
        return Vec::new();
    };
    let (major, minor) = split_dev(dev);
    let Ok(node) = fs::canonicalize(under(root, &format!("/sys/dev/block/{major}:{minor}"))) else {
        return Vec::new(); // tmpfs, overlay, NFS: no block device to tune
    };
    let mut disks = BTreeSet::new();
    let top = whole_disk(node);
    let slaves: Vec<PathBuf> = fs::read_dir(top.join("slaves"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| fs::canonicalize(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    if slaves.is_empty() {
        disks.insert(top);
    } else {
        disks.extend(slaves.into_iter().map(whole_disk));
    }
    disks.into_iter().collect()
}

fn whole_disk(node: PathBuf) -> PathBuf {
    if node.join("partition").exists() {
        if let Some(parent) = node.parent() {
            return parent.to_path_buf();
        }
    }
    node
}

fn existing_ancestor_dev(path: &Path) -> Option<u64> {
    path.ancestors()
        .find_map(|p| fs::metadata(p).ok())
        .map(|m| m.dev())
}

/// glibc's major()/minor() for a 64-bit dev_t.
pub(crate) fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major, minor)
}
