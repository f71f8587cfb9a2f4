//! Queue locks for orderly consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ, §3.5, §6.9).
//!
//! An orderly consumer in CLUSTERING mode consumes a queue only while it holds the queue's lock
//! on the broker, and renews its locks every 20 s. A lock is granted when the queue is free,
//! already held by the asking client, or held by a lock not renewed for
//! [`LOCK_MAX_LIVE`] (RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`): a client that died
//! without unlocking frees its queues after that long. Locks live in memory only, as in
//! RocketMQ: after a restart every client locks again on its next renewal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub const LOCK_MAX_LIVE: Duration = Duration::from_secs(60);

/// A message queue as the lock bodies name it. Fields in fastjson's (alphabetical) order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

/// The LOCK_BATCH_MQ and UNLOCK_BATCH_MQ request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchBody {
    pub consumer_group: String,
    pub client_id: String,
    #[serde(default)]
    pub mq_set: Vec<MessageQueue>,
}

#[derive(Debug, Serialize)]
pub struct LockBatchReply<'a> {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: &'a [MessageQueue],
}

#[derive(Debug, Clone)]
struct Holder {
    client_id: String,
    renewed: Instant,
}

#[derive(Debug, Default)]
pub struct QueueLocks {
    /// consumer group → queue → holder.
    groups: HashMap<String, HashMap<MessageQueue, Holder>>,
}

impl QueueLocks {
    /// Locks (or renews) each queue of `mqs` for `client` where it may; returns the queues the
    /// client now holds, in request order.
    pub fn lock(
        &mut self,
        group: &str,
        client: &str,
        mqs: &[MessageQueue],
        now: Instant,
    ) -> Vec<MessageQueue> {
        let held = self.groups.entry(group.to_string()).or_default();
        let mut granted = Vec::new();
        for mq in mqs {
            let free = held.get(mq).is_none_or(|h| {
                h.client_id == client || now.saturating_duration_since(h.renewed) > LOCK_MAX_LIVE
            });
            if free {
                held.insert(
                    mq.clone(),
                    Holder {
                        client_id: client.to_string(),
                        renewed: now,
                    },
                );
                granted.push(mq.clone());
            }
        }
        granted
    }

    /// Frees the queues of `mqs` that `client` holds; others' locks stay.
    pub fn unlock(&mut self, group: &str, client: &str, mqs: &[MessageQueue]) {
        let Some(held) = self.groups.get_mut(group) else {
            return;
        };
        for mq in mqs {
            if held.get(mq).is_some_and(|h| h.client_id == client) {
                held.remove(mq);
            }
        }
        if held.is_empty() {
            self.groups.remove(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "b".into(),
            queue_id: q,
            topic: "T".into(),
        }
    }

    #[test]
    fn a_queue_is_held_by_one_client_until_it_unlocks_or_stops_renewing() {
        let mut locks = QueueLocks::default();
        let t0 = Instant::now();
        assert_eq!(
            locks.lock("G", "c1", &[mq(0), mq(1)], t0),
            vec![mq(0), mq(1)]
        );
        // Another client of the group gets only the free queue.
        assert_eq!(locks.lock("G", "c2", &[mq(1), mq(2)], t0), vec![mq(2)]);
        // Another group locks independently.
        assert_eq!(locks.lock("H", "c2", &[mq(0)], t0), vec![mq(0)]);
        // The holder renews.
        let t1 = t0 + Duration::from_secs(50);
        assert_eq!(locks.lock("G", "c1", &[mq(0)], t1), vec![mq(0)]);
        // A lock not renewed for longer than LOCK_MAX_LIVE is taken over; a renewed one is not.
        let t2 = t0 + LOCK_MAX_LIVE + Duration::from_secs(1);
        assert_eq!(locks.lock("G", "c2", &[mq(0), mq(1)], t2), vec![mq(1)]);
        // Unlock frees only the caller's queues.
        locks.unlock("G", "c2", &[mq(0)]);
        assert_eq!(
            locks.lock("G", "c3", &[mq(0)], t2),
            Vec::<MessageQueue>::new()
        );
        locks.unlock("G", "c1", &[mq(0)]);
        assert_eq!(locks.lock("G", "c3", &[mq(0)], t2), vec![mq(0)]);
    }

    #[test]
    fn bodies_parse_as_clients_send_them_and_replies_use_the_java_field_names() {
        let body = r#"{"clientId":"127.0.0.1@1#2","consumerGroup":"CG","onlyThisBroker":false,
            "mqSet":[{"brokerName":"b","queueId":3,"topic":"T"}]}"#;
        let parsed: LockBatchBody = serde_json::from_str(body).expect("lock body");
        assert_eq!(parsed.consumer_group, "CG");
        assert_eq!(parsed.mq_set, vec![mq(3)]);
        let reply = serde_json::to_string(&LockBatchReply {
            lock_ok_mq_set: &parsed.mq_set,
        })
        .expect("reply");
        assert_eq!(
            reply,
            r#"{"lockOKMQSet":[{"brokerName":"b","queueId":3,"topic":"T"}]}"#
        );
    }
}
