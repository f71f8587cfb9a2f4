//! Recovery against torn tails and bit flips (see the fault model in src/recovery/mod.rs).

mod common;

use common::*;
use rocketcore_shards::{FlushMode, Log, StoreError};
use std::io::{Read, Seek, SeekFrom, Write};

fn reopen_bodies(dir: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = Log::open(config(&dir, FlushMode::Sync))
            .await
            .map_err(|e| e.to_string())?;
        let b = bodies(&log, "T").await;
        log.stop().await.map_err(|e| e.to_string())?;
        Ok(b)
    })
}

fn expected(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(body).collect()
}

/// Simulates a crash that persisted only the first `cut` bytes of the data: the rest of the
/// segment reads as zeros (an unwritten tail) and the abort marker stays.
fn cut_at(dir: &std::path::Path, cut: u64, garbage: bool) {
    let path = segment_path(dir, 0);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open segment");
    let len = f.metadata().expect("meta").len();
    f.seek(SeekFrom::Start(cut)).expect("seek");
    let fill: Vec<u8> = if garbage {
        (0..(len - cut)).map(|i| (i * 7 + 0xF3) as u8).collect()
    } else {
        vec![0; (len - cut) as usize]
    };
    f.write_all(&fill[..(len - cut).min(4096) as usize])
        .expect("write");
    if (len - cut) > 4096 {
        f.write_all(&vec![0; (len - cut - 4096) as usize])
            .expect("zero");
    }
    f.sync_all().expect("sync");
    std::fs::write(dir.join("abort"), b"").expect("abort marker");
}

#[test]
fn given_a_torn_tail_when_recovering_should_keep_exactly_the_complete_records() {
    let template = tempfile::tempdir().expect("tempdir");
    let n = 40;
    write_clean(template.path(), n);
    let layout = layout(template.path());
    assert_eq!(layout.len(), n);
    // Every cut point inside the last three records, both as zeros and as garbage.
    let first_cut = layout[n - 3].0;
    let end = layout[n - 1].0 + layout[n - 1].1 as u64;
    let mut cases = 0;
    for cut in (first_cut..=end).step_by(7).chain([end]) {
        for garbage in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            copy_dir(template.path(), dir.path());
            // The checkpoint must not vouch for the torn part.
            std::fs::write(
                dir.path().join("checkpoint"),
                format!("{{\"durable\":{first_cut},\"dispatched\":0}}"),
            )
            .expect("cp");
            cut_at(dir.path(), cut, garbage);
            let complete = layout.iter().filter(|(p, s)| p + *s as u64 <= cut).count();
            let got = reopen_bodies(dir.path()).expect("recovers");
            assert_eq!(got, expected(complete), "cut at {cut} garbage={garbage}");
            // And a second recovery of the recovered store agrees (the torn bytes are gone).
            assert_eq!(
                reopen_bodies(dir.path()).expect("recovers again"),
                expected(complete)
            );
            cases += 1;
        }
    }
    assert!(cases > 50);
}

fn flip_bit_in_body(dir: &std::path::Path, rec: (u64, u32)) {
    let path = segment_path(dir, 0);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    // The body sits before the topic (1+1 bytes for "T") and the properties (2 + len bytes).
    let at = rec.0 + rec.1 as u64 - (2 + PROPS.len() as u64) - 2 - 3;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("read");
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&b).expect("write");
    f.sync_all().expect("sync");
}

#[test]
fn given_a_flipped_bit_in_the_last_record_when_recovering_should_drop_only_that_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_clean(dir.path(), 20);
    let layout = layout(dir.path());
    flip_bit_in_body(dir.path(), layout[19]);
    assert_eq!(reopen_bodies(dir.path()).expect("recovers"), expected(19));
}

#[test]
fn given_a_flipped_bit_in_a_middle_record_when_recovering_should_refuse_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_clean(dir.path(), 20);
    let layout = layout(dir.path());
    flip_bit_in_body(dir.path(), layout[10]);
    let d = dir.path().to_path_buf();
    let err = run(move || async move { Log::open(config(&d, FlushMode::Sync)).await.err() })
        .expect("must refuse");
    match &err {
        StoreError::Corruption { file, offset, .. } => {
            assert!(file.ends_with("00000000000000000000"), "{file}");
            assert_eq!(*offset, layout[10].0);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("00000000000000000000") && text.contains(&layout[10].0.to_string()),
        "{text}"
    );
}

#[test]
fn given_records_across_segments_when_reopened_should_read_all_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 3000; // ~100 bytes each over 64 KiB segments: several rolls with end blanks
    write_clean(dir.path(), n);
    let segs = std::fs::read_dir(dir.path().join("commitlog"))
        .expect("ls")
        .count();
    assert!(segs >= 3, "expected several segments, got {segs}");
    assert_eq!(reopen_bodies(dir.path()).expect("reopen"), expected(n));
}

/// The last segment file cut short (as a crash between creating and preallocating it leaves
/// it, or at any length short of the segment): recovery keeps every record that lies wholly
/// in the file and drops the rest, without a panic on the missing bytes.
#[test]
fn given_a_short_last_segment_file_when_recovering_should_keep_the_records_it_holds() {
    let template = tempfile::tempdir().expect("tempdir");
    let n = 1500; // several 64 KiB segments
    write_clean(template.path(), n);
    let layout = layout(template.path());
    let last_seg = layout.last().expect("records").0 / SEGMENT * SEGMENT;
    let in_last: Vec<&(u64, u32)> = layout.iter().filter(|r| r.0 >= last_seg).collect();
    assert!(in_last.len() > 4, "the last segment holds too few records");
    let mid = in_last[in_last.len() / 2];
    for len in [
        0,
        3,
        7,
        8,
        100,
        4096 + 5,
        mid.0 - last_seg + mid.1 as u64 + 1,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), dir.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), last_seg))
            .expect("open segment");
        f.set_len(len).expect("truncate");
        drop(f);
        std::fs::write(dir.path().join("abort"), b"").expect("abort marker");
        let kept = layout
            .iter()
            .filter(|r| r.0 < last_seg || r.0 + r.1 as u64 <= last_seg + len)
            .count();
        match reopen_bodies(dir.path()) {
            Ok(bodies) => assert_eq!(bodies, expected(kept), "file cut to {len} bytes"),
            Err(e) => panic!("file cut to {len} bytes: {e}"),
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).expect("ls") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A delayed message waits in SCHEDULE_TOPIC_XXXX, queue level − 1, and its queue entry's tag
/// code is its due time (store time + the level's delay), which the broker's delay timer reads.
/// Re-dispatching the commitlog after a crash must rebuild the same due time.
#[test]
fn given_a_delayed_message_its_queue_entry_holds_the_due_time_also_when_rebuilt_after_a_crash() {
    use rocketcore_shards::store::SCHEDULE_TOPIC;
    let dir = tempfile::tempdir().expect("tempdir");
    let due = |dir: std::path::PathBuf| {
        run(move || async move {
            let log = Log::open(config(&dir, FlushMode::Sync))
                .await
                .expect("open");
            if log.max_offset(SCHEDULE_TOPIC, 2) == 0 {
                log.put(&[message(SCHEDULE_TOPIC, 2, b"later", "DELAY\u{1}3")], true)
                    .await
                    .expect("put");
            }
            let e = log.entry(SCHEDULE_TOPIC, 2, 0).expect("queue entry");
            let rec = log.read_record(e.phys, e.size).await.expect("record");
            let stored = rocketcore_shards::message::record::decode(&rec)
                .expect("decodes")
                .store_timestamp;
            log.stop().await.expect("stop");
            (e.tag_code, stored)
        })
    };
    let (tag_code, stored) = due(dir.path().to_path_buf());
    assert_eq!(
        tag_code,
        stored + 10_000,
        "level 3 is due 10 s after it was stored"
    );
    // Crash with nothing dispatched: the queue is rebuilt from the commitlog.
    let cp = std::fs::read_to_string(dir.path().join("checkpoint")).expect("checkpoint");
    let durable: serde_json::Value = serde_json::from_str(&cp).expect("checkpoint json");
    std::fs::write(
        dir.path().join("checkpoint"),
        format!("{{\"durable\":{},\"dispatched\":0}}", durable["durable"]),
    )
    .expect("checkpoint");
    std::fs::write(dir.path().join("abort"), b"").expect("abort marker");
    assert_eq!(due(dir.path().to_path_buf()), (tag_code, stored));
}
