//! Round trips the unit tests do not cover: every field of a decoded record, consume-queue and
//! key-index files cut by a commitlog truncation, and whole messages through a store and a
//! reopen. Plus reads of data older than the tail cache, which go to the segment files.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;
use rocketcore_shards::consume_queue::{ConsumeQueue, CqEntry};
use rocketcore_shards::index::{IndexEntry, KeyIndex};
use rocketcore_shards::message::record::{body_crc, decode, MessageInput};
use rocketcore_shards::{FlushMode, Log};

fn host() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

prop_compose! {
    fn input()(
        topic in "[a-zA-Z0-9_%|-]{1,127}",
        queue_id in 0i32..1024,
        flag in any::<i32>(),
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        properties in "[a-zA-Z0-9\u{1}\u{2} ]{0,200}",
        tx_bits in 0i32..4,
        born_timestamp in any::<i64>(),
        born_host in host(),
        store_host in host(),
        reconsume_times in any::<i32>(),
        prepared_transaction_offset in any::<i64>(),
    ) -> MessageInput {
        let v6 = |h: &SocketAddr, bit: i32| if h.is_ipv6() { bit } else { 0 };
        MessageInput {
            topic: topic.into(), queue_id, flag, body: Bytes::from(body), properties: properties.into(),
            sys_flag: (tx_bits << 2) | v6(&born_host, 0x10) | v6(&store_host, 0x20),
            born_timestamp, born_host, store_host, reconsume_times, prepared_transaction_offset,
        }
    }
}

proptest! {
    #[test]
    fn given_any_message_when_encoded_then_decoded_should_give_back_every_field(
        m in input(), qo in 0i64..i64::MAX, po in 0i64..i64::MAX, ts in any::<i64>(),
    ) {
        let mut buf = Vec::new();
        m.encode_into(&mut buf, qo, po, ts);
        prop_assert_eq!(buf.len(), m.encoded_len());
        let r = decode(&buf).expect("decodes");
        prop_assert_eq!(r.total_size as usize, buf.len());
        prop_assert_eq!(r.body_crc, body_crc(&m.body));
        prop_assert_eq!((r.queue_id, r.flag, r.sys_flag), (m.queue_id, m.flag, m.sys_flag));
        prop_assert_eq!((r.queue_offset, r.physical_offset, r.store_timestamp), (qo, po, ts));
        prop_assert_eq!((r.born_timestamp, r.born_host, r.store_host), (m.born_timestamp, m.born_host, m.store_host));
        prop_assert_eq!((r.reconsume_times, r.prepared_transaction_offset), (m.reconsume_times, m.prepared_transaction_offset));
        prop_assert_eq!(&r.body, &m.body);
        prop_assert_eq!(&*r.topic, &*m.topic);
        prop_assert_eq!(&r.properties, &m.properties);
        // A record cut short anywhere is never decoded as a record.
        let cut = (qo as usize) % buf.len();
        prop_assert!(decode(&buf[..cut]).is_none());
    }

    #[test]
    fn given_a_consume_queue_cut_at_a_commitlog_offset_when_reloaded_should_hold_exactly_the_entries_below(
        sizes in proptest::collection::vec(1u32..5000, 1..200), cut_pick in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q");
        let mut q = ConsumeQueue::new(path.clone());
        let mut phys = 1u64 << 48;
        let mut all = Vec::new();
        for (i, s) in sizes.iter().enumerate() {
            let e = CqEntry { phys, size: *s, tag_code: i as i64 * 31 - 7 };
            q.push(e);
            all.push(e);
            phys += *s as u64;
        }
        q.persist().expect("persist");
        let cut = all[cut_pick.index(all.len())].phys;
        q.truncate_from_phys(cut).expect("truncate");
        let want: Vec<CqEntry> = all.iter().copied().filter(|e| e.phys < cut).collect();
        prop_assert_eq!(q.range(0, usize::MAX), &want[..]);
        let reloaded = ConsumeQueue::load(path, u64::MAX).expect("reload");
        prop_assert_eq!(reloaded.range(0, usize::MAX), &want[..]);
        prop_assert_eq!(std::fs::metadata(dir.path().join("q")).expect("meta").len(), want.len() as u64 * 20);
    }

    #[test]
    fn given_a_key_index_cut_at_a_commitlog_offset_when_reloaded_should_find_only_keys_below(
        keys in proptest::collection::vec("[a-z0-9]{1,8}", 1..60), cut_pick in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        let mut idx = KeyIndex::load(path.clone(), u64::MAX, 8).expect("load");
        let entry = |i: usize| IndexEntry { phys: 1000 + i as u64 * 100, size: 100 };
        for (i, k) in keys.iter().enumerate() {
            idx.add("T", k, entry(i));
        }
        idx.persist().expect("persist");
        let cut = entry(cut_pick.index(keys.len())).phys;
        idx.truncate_from_phys(cut).expect("truncate");
        let reloaded = KeyIndex::load(path, u64::MAX, 8).expect("reload");
        for (i, k) in keys.iter().enumerate() {
            let e = entry(i);
            for index in [&idx, &reloaded] {
                let found = index.candidates("T", k, 0).contains(&e);
                prop_assert_eq!(found, e.phys < cut, "key {} at {}", k, e.phys);
            }
        }
    }
}

/// Stores `batches` (one put per batch, queue 0 of topic "R"), then reads them back before and
/// after a reopen; both must equal the input, message by message and field by field.
fn store_round_trip(batches: Vec<Vec<MessageInput>>, mode: FlushMode) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let sent: Vec<MessageInput> = batches.iter().flatten().cloned().collect();
    let (before, after) = common::run(move || async move {
        let log = Log::open(common::config(&d, mode)).await.expect("open");
        for b in &batches {
            log.put(b, true).await.expect("put");
        }
        let before = read_queue(&log).await;
        log.stop().await.expect("stop");
        let log = Log::open(common::config(&d, mode)).await.expect("reopen");
        let after = read_queue(&log).await;
        log.stop().await.expect("stop");
        (before, after)
    });
    prop_assert_eq!(&before, &after, "records changed across a reopen");
    prop_assert_eq!(before.len(), sent.len());
    for (i, (rec, m)) in before.iter().zip(&sent).enumerate() {
        let r = decode(rec).expect("decodes");
        prop_assert_eq!(r.queue_offset, i as i64);
        prop_assert_eq!(
            (&r.body, r.properties.as_str(), r.flag),
            (&m.body, m.properties.as_str(), m.flag)
        );
        prop_assert_eq!((r.born_host, r.sys_flag), (m.born_host, m.sys_flag));
    }
    Ok(())
}

async fn read_queue(log: &Log) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let r = log.get("R", 0, off, 32, &|_| true).await;
        if r.records.is_empty() {
            return out;
        }
        out.extend(r.records);
        off = r.next_begin_offset;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn given_arbitrary_batches_when_stored_and_reopened_should_read_back_byte_for_byte(
        batches in proptest::collection::vec(proptest::collection::vec(input(), 1..6), 1..12),
        sync in any::<bool>(),
    ) {
        let batches = batches
            .into_iter()
            .map(|b| b.into_iter().map(|mut m| { m.topic = "R".into(); m.queue_id = 0; m }).collect())
            .collect();
        store_round_trip(batches, if sync { FlushMode::Sync } else { FlushMode::Async })?;
    }
}

#[test]
fn given_a_fresh_store_when_reading_data_older_than_the_tail_cache_should_read_it_from_the_segment_files(
) {
    // A fresh executor thread whose first DMA file is a new, never-written segment: glommio's
    // iopoll probe must not be fooled into the poll ring (reads would fail with EOPNOTSUPP).
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let n = 800; // several 64 KiB segments
    let got = common::run(move || async move {
        let mut cfg = common::config(&d, FlushMode::Sync);
        cfg.tail_cache_bytes = 4096;
        let log = Log::open(cfg).await.expect("open");
        for i in 0..n {
            log.put(
                &[common::message("T", 0, &common::body(i), common::PROPS)],
                true,
            )
            .await
            .expect("put");
        }
        let got = common::bodies(&log, "T").await;
        log.stop().await.expect("stop");
        got
    });
    assert_eq!(got, (0..n).map(common::body).collect::<Vec<_>>());
}

#[test]
fn given_records_evicted_from_the_tail_cache_when_a_lagging_consumer_reads_should_get_them_byte_for_byte_with_read_ahead(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    common::run(move || async move {
        let mut cfg = common::config(&d, rocketcore_shards::FlushMode::Sync);
        // No tail cache: every read of written data goes to the segment file.
        cfg.tail_cache_bytes = 0;
        let log = rocketcore_shards::Log::open(cfg).await.expect("open");
        for i in 0..300 {
            let q = (i % 3) as i32;
            log.put(
                &[common::message("T", q, &common::body(i), common::PROPS)],
                true,
            )
            .await
            .expect("put");
        }
        for q in 0..3 {
            let mut off = 0;
            let mut got = Vec::new();
            loop {
                let r = log.get("T", q, off, 32, &|_| true).await;
                if r.records.is_empty() {
                    break;
                }
                for rec in &r.records {
                    let d =
                        rocketcore_shards::message::record::decode(rec).expect("a whole record");
                    assert_eq!(d.queue_id, q);
                    got.push(d.body.to_vec());
                }
                off = r.next_begin_offset;
            }
            let want: Vec<Vec<u8>> = (0..300)
                .filter(|i| i % 3 == q as usize)
                .map(common::body)
                .collect();
            assert_eq!(got, want, "queue {q}");
        }
        log.stop().await.expect("stop");
    });
}

#[test]
fn given_concurrent_sync_appenders_with_segment_warming_when_read_back_from_disk_should_match_byte_for_byte(
) {
    // Segment warming zeroes ahead of the writer while group commits land behind it; a zeroing
    // write that overlapped a data write would show here as records of zeros or a short queue.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    let (appenders, per) = (16usize, 60usize);
    let got = common::run(move || async move {
        let mut cfg = common::config(&d, FlushMode::Sync);
        // Segments of 4 warming steps, warmed 2 steps ahead; nothing served from memory.
        cfg.segment_bytes = 4 << 20;
        cfg.warm_ahead_bytes = 2 << 20;
        cfg.tail_cache_bytes = 0;
        let log = Log::open(cfg).await.expect("open");
        let body = move |a: usize, i: usize| {
            let mut b = common::body(a * per + i);
            // Large enough that the run crosses several segments and many warming steps.
            b.resize(24 * 1024, (a as u8).wrapping_add(1));
            b
        };
        let tasks: Vec<_> = (0..appenders)
            .map(|a| {
                let log = log.clone();
                rocketcore_shards::runtime::spawn_joinable(async move {
                    for i in 0..per {
                        log.put(
                            &[common::message("W", a as i32, &body(a, i), common::PROPS)],
                            true,
                        )
                        .await
                        .expect("put");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("appender finished");
        }
        let mut per_queue = Vec::new();
        for a in 0..appenders {
            let mut off = 0;
            let mut got = Vec::new();
            loop {
                let r = log.get("W", a as i32, off, 32, &|_| true).await;
                if r.records.is_empty() {
                    break;
                }
                for rec in &r.records {
                    got.push(decode(rec).expect("a whole record").body.to_vec());
                }
                off = r.next_begin_offset;
            }
            let want: Vec<Vec<u8>> = (0..per).map(|i| body(a, i)).collect();
            per_queue.push(got == want);
        }
        log.stop().await.expect("stop");
        per_queue
    });
    assert_eq!(
        got,
        vec![true; appenders],
        "queues read back intact from disk"
    );
}

#[test]
fn given_more_index_and_queue_entries_than_memory_keeps_when_looked_up_should_read_them_back_from_the_files(
) {
    // 6000 entries, persisted as they go: most leave memory and are read back page by page.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut idx = KeyIndex::load(dir.path().join("keys"), u64::MAX, 97).expect("load");
    let mut q = ConsumeQueue::new(dir.path().join("q"));
    let n = 6000u64;
    let entry = |i: u64| IndexEntry {
        phys: 4096 + i * 64,
        size: 64,
    };
    for i in 0..n {
        idx.add("T", &format!("key-{}", i % 1500), entry(i));
        q.push(CqEntry {
            phys: entry(i).phys,
            size: 64,
            tag_code: i as i64,
        });
        if i % 700 == 0 {
            idx.persist().expect("persist");
            q.persist().expect("persist");
        }
    }
    idx.persist().expect("persist");
    q.persist().expect("persist");
    assert!(
        q.entries_in_memory() <= 2 * rocketcore_shards::paged::TAIL_KEEP,
        "queue keeps {} entries in memory",
        q.entries_in_memory()
    );
    // Every key occurs 4 times, newest first.
    for k in [0u64, 1, 777, 1499] {
        let want: Vec<IndexEntry> = (0..4).rev().map(|j| entry(k + j * 1500)).collect();
        assert_eq!(idx.candidates("T", &format!("key-{k}"), 0), want, "key-{k}");
        assert_eq!(
            idx.candidates("T", &format!("key-{k}"), entry(k + 1500).phys),
            want[..3].to_vec(),
            "key-{k} above a minimum offset"
        );
    }
    let all = q.range(0, usize::MAX);
    assert_eq!(all.len() as u64, n);
    assert!(all.iter().enumerate().all(|(i, e)| e.tag_code == i as i64));
    let reloaded = KeyIndex::load(dir.path().join("keys"), u64::MAX, 97).expect("reload");
    assert_eq!(
        reloaded.candidates("T", "key-5", 0),
        idx.candidates("T", "key-5", 0)
    );
}
