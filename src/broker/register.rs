//! Registration with the NameServer(s): at startup, every `registerBrokerInterval` (30 s),
//! and at once after a topic change (§3.9).

use std::time::Duration;

use futures_lite::FutureExt;

use super::topics::{PERM_READ, PERM_WRITE};
use super::{lock, BrokerShared};
use crate::net::client::{invoke, invoke_oneway};
use crate::remoting::codes::{request as rq, response as rs};
use crate::remoting::RemotingCommand;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn addrs(shared: &BrokerShared) -> Vec<String> {
    shared.namesrv_addrs.get().cloned().unwrap_or_default()
}

fn header(shared: &BrokerShared, code: i32) -> RemotingCommand {
    let cfg = &shared.cfg;
    let host = shared.store_host();
    RemotingCommand::request(code, next_opaque())
        .with_field("brokerName", &cfg.broker_name)
        .with_field("brokerAddr", host)
        .with_field("clusterName", &cfg.broker_cluster_name)
        .with_field(
            "haServerAddr",
            format!("{}:{}", host.ip(), host.port().wrapping_add(1)),
        )
        .with_field("brokerId", cfg.broker_id)
}

fn next_opaque() -> i32 {
    use std::sync::atomic::{AtomicI32, Ordering};
    static N: AtomicI32 = AtomicI32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Registers with every NameServer; succeeds if at least one accepted.
pub async fn register_once(shared: &BrokerShared) -> Result<(), String> {
    let body = {
        let mut wrapper = lock(&shared.topics).wrapper_json();
        // A broker that may not be read or written advertises every topic with its own
        // permission, as RocketMQ does, so clients stop sending (or pulling) there.
        let perm = shared.runtime.broker_permission();
        if perm & PERM_READ == 0 || perm & PERM_WRITE == 0 {
            if let Some(table) = wrapper["topicConfigTable"].as_object_mut() {
                for tc in table.values_mut() {
                    tc["perm"] = perm.into();
                }
            }
        }
        serde_json::json!({ "filterServerList": [], "topicConfigSerializeWrapper": wrapper })
            .to_string()
    };
    let mut errors = Vec::new();
    let mut ok = false;
    for addr in addrs(shared) {
        let cmd = header(shared, rq::REGISTER_BROKER)
            .with_field("compressed", "false")
            .with_body(body.clone().into_bytes());
        match invoke(&addr, cmd, CALL_TIMEOUT).await {
            Ok(r) if r.code == rs::SUCCESS => ok = true,
            Ok(r) => errors.push(format!(
                "{addr}: code {} {}",
                r.code,
                r.remark.unwrap_or_default()
            )),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if ok {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

pub async fn registration_loop(shared: std::sync::Arc<BrokerShared>) {
    loop {
        let tick = async {
            rocketcore_shards::runtime::sleep(shared.cfg.register_interval).await;
        };
        let wake = async {
            let _ = shared.register_wake.recv().await;
        };
        tick.or(wake).await;
        if let Err(e) = register_once(&shared).await {
            tracing::warn!(error = %e, "register broker failed; will retry");
        }
    }
}

pub async fn unregister(shared: &BrokerShared) {
    for addr in addrs(shared) {
        let _ = invoke_oneway(
            &addr,
            header(shared, rq::UNREGISTER_BROKER),
            Duration::from_secs(1),
        )
        .await;
    }
}
