//! The broker's own figures for operators (§3.10): GET_BROKER_RUNTIME_INFO, read by
//! `mqadmin clusterList` (version, TPS in/out, hours of data kept, disk ratio, today's and
//! yesterday's totals) and printed whole by `mqadmin brokerStatus`; GET_BROKER_CONFIG
//! (`mqadmin getBrokerConfig`), the configuration in effect as `key=value` lines.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{Reject, Reply};
use crate::broker::counters::tps_text;
use crate::broker::queue_ops::{execute_on_every_shard, LogStats, QueueReply, ShardOp};
use crate::broker::{lock, ShardCtx};
use crate::remoting::codes::{response as rs, BROKER_VERSION};
use crate::remoting::RemotingCommand;

/// The release our protocol version number names (MQVersion: 409 = V4_9_8).
pub const BROKER_VERSION_DESC: &str = "V4_9_8";

/// Store figures over every log of every shard.
async fn store_stats(ctx: &Rc<ShardCtx>) -> Result<LogStats, Reject> {
    let replies = execute_on_every_shard(ctx, || ShardOp::LogStats)
        .await
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    let mut all = LogStats::default();
    for r in replies {
        match r {
            QueueReply::LogStats(s) => all = all.merge(s),
            other => return Err(Reject::unexpected(other)),
        }
    }
    Ok(all)
}

/// Java's uptime text.
fn runtime_text(secs: u64) -> String {
    format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

pub async fn runtime_info(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let store = store_stats(ctx).await?;
    let flow = ctx.shared.counters.flow(std::time::Instant::now());
    let shared = &ctx.shared;
    let mut t: BTreeMap<&str, String> = BTreeMap::new();
    t.insert("brokerVersionDesc", BROKER_VERSION_DESC.into());
    t.insert("brokerVersion", BROKER_VERSION.to_string());
    t.insert("bootTimestamp", shared.boot_ms.to_string());
    let up_ms = rocketcore_shards::store::now_ms().saturating_sub(shared.boot_ms);
    t.insert("runtime", runtime_text(up_ms.max(0) as u64 / 1000));
    t.insert("putTps", tps_text(&flow.put_tps));
    t.insert("getTransferedTps", tps_text(&flow.get_tps));
    for (put_key, get_key, totals) in [
        ("msgPutTotalTodayNow", "msgGetTotalTodayNow", flow.now),
        (
            "msgPutTotalTodayMorning",
            "msgGetTotalTodayMorning",
            flow.today_morning,
        ),
        (
            "msgPutTotalYesterdayMorning",
            "msgGetTotalYesterdayMorning",
            flow.yesterday_morning,
        ),
    ] {
        t.insert(put_key, totals.put.to_string());
        t.insert(get_key, totals.get.to_string());
    }
    // Requests are served on the connection's shard as they arrive: there is no send or pull
    // thread-pool queue to wait in, and no page-cache lock.
    for k in [
        "sendThreadPoolQueueSize",
        "pullThreadPoolQueueSize",
        "sendThreadPoolQueueHeadWaitTimeMills",
        "pullThreadPoolQueueHeadWaitTimeMills",
        "pageCacheLockTimeMills",
    ] {
        t.insert(k, "0".into());
    }
    // clusterList computes hours of data kept from this; empty when nothing is stored.
    t.insert(
        "earliestMessageTimeStamp",
        store
            .earliest_store_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default(),
    );
    t.insert("commitLogDiskRatio", format!("{}", store.disk_used_ratio));
    t.insert(
        "commitLogMinOffset",
        store.min_phys.unwrap_or(0).to_string(),
    );
    t.insert("commitLogMaxOffset", store.max_phys.to_string());
    t.insert("flushDiskType", shared.cfg.flush_disk_type.name().into());
    t.insert("shards", shared.shards.to_string());
    t.insert("commitLogs", store.logs.to_string());
    let body = serde_json::json!({ "table": t }).to_string();
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS).with_body(body.into_bytes()))
}

/// The configuration in effect, as broker.properties lines, with the port and NameServer
/// addresses actually in use (a configured port 0 means an ephemeral one). The configuration
/// does not change while the broker runs, so its data version is the boot time.
pub fn broker_config(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let shared = &ctx.shared;
    let mut props = shared.cfg.properties();
    shared.runtime.overlay(&mut props);
    for (k, v) in props.iter_mut() {
        match *k {
            "listenPort" => *v = shared.store_host().port().to_string(),
            "namesrvAddr" => {
                if let Some(addrs) = shared.namesrv_addrs.get() {
                    *v = addrs.join(";");
                }
            }
            _ => {}
        }
    }
    let mut body = String::new();
    for (k, v) in props {
        body.push_str(k);
        body.push('=');
        body.push_str(&v);
        body.push('\n');
    }
    let version = serde_json::json!({ "counter": 0, "timestamp": ctx.shared.boot_ms });
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS)
        .with_field("version", version.to_string())
        .with_body(body.into_bytes()))
}

/// UPDATE_BROKER_CONFIG (`mqadmin updateBrokerConfig`): `key=value` lines for the keys that can
/// change while the broker runs (all applied or none). A new brokerPermission is registered with
/// the NameServer at once, with a new data version so it replaces the routes. The change lasts
/// until the broker restarts: the configuration file is not rewritten.
pub async fn update_broker_config(ctx: &Rc<ShardCtx>, cmd: &RemotingCommand) -> Reply {
    let text = std::str::from_utf8(&cmd.body)
        .map_err(|_| Reject::new(rs::SYSTEM_ERROR, "the body is not UTF-8 text"))?;
    let pairs = crate::config::parse_properties(text, "UPDATE_BROKER_CONFIG")
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e.to_string()))?;
    let shared = &ctx.shared;
    let permission_changed = shared
        .runtime
        .update(&pairs)
        .map_err(|e| Reject::new(rs::SYSTEM_ERROR, e))?;
    tracing::info!(
        ?pairs,
        "broker configuration updated at runtime (until restart)"
    );
    if permission_changed {
        lock(&shared.topics).data_version.counter += 1;
        if let Err(e) = crate::broker::register::register_once(shared).await {
            tracing::warn!(error = %e, "registration after a permission change failed; the periodic one will retry");
        }
    }
    Ok(RemotingCommand::response_to(cmd, rs::SUCCESS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_javas() {
        assert_eq!(
            runtime_text(2 * 86_400 + 3 * 3_600 + 4 * 60 + 5),
            "[ 2 days, 3 hours, 4 minutes, 5 seconds ]"
        );
        assert_eq!(runtime_text(0), "[ 0 days, 0 hours, 0 minutes, 0 seconds ]");
    }
}
