//! The NameServer: broker registrations, topic routes, cluster info and KV config (§3.9).
//! Embedded in `rocketcore broker` by default, standalone as `rocketcore namesrv`.

mod handlers;
mod routes;

pub use routes::RouteInfo;

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketcore_shards::runtime::{sleep, spawn, TcpListener};

use crate::net::{serve_connection, Conn, Handler};
use crate::remoting::RemotingCommand;

/// Brokers that have not re-registered for this long are dropped.
pub const BROKER_EXPIRY: Duration = Duration::from_secs(120);
const SCAN_INTERVAL: Duration = Duration::from_secs(10);

pub struct NameServer {
    pub routes: Arc<Mutex<RouteInfo>>,
}

impl Handler for NameServer {
    async fn handle(
        self: &Rc<Self>,
        cmd: RemotingCommand,
        _conn: &Conn,
    ) -> Option<RemotingCommand> {
        Some(handlers::handle(&self.routes, &cmd))
    }
}

/// Serves the NameServer on `listener` (on the current shard) and expires silent brokers.
pub fn serve(listener: TcpListener, routes: Arc<Mutex<RouteInfo>>) {
    let ns = Rc::new(NameServer {
        routes: routes.clone(),
    });
    spawn(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => spawn(serve_connection(stream, ns.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "namesrv accept failed");
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    spawn(async move {
        loop {
            sleep(SCAN_INTERVAL).await;
            let expired = match routes.lock() {
                Ok(mut r) => r.expire(BROKER_EXPIRY),
                Err(_) => Vec::new(),
            };
            for addr in expired {
                tracing::warn!(broker = %addr, "broker expired after 120 s without registration");
            }
        }
    });
}

/// `rocketcore namesrv`: one executor serving the NameServer until SIGTERM/SIGINT.
pub fn run_standalone(bind: std::net::Ipv4Addr, port: u16) -> Result<(), String> {
    let cfg = rocketcore_shards::runtime::RuntimeConfig {
        shards: 1,
        pin: false,
        name: "namesrv".into(),
        ..Default::default()
    };
    crate::broker::block_signals();
    let (stop, join) = rocketcore_shards::runtime::run_pool::<(), _, _, Result<(), String>>(
        &cfg,
        move |shard| async move {
            let listener = TcpListener::bind((bind, port))
                .map_err(|e| format!("cannot listen on {bind}:{port}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            serve(listener, Arc::new(Mutex::new(RouteInfo::default())));
            println!("rocketcore namesrv ready namesrv={addr}");
            shard.shutdown_requested().await;
            Ok(())
        },
    )
    .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        crate::broker::wait_for_signal();
        stop.stop();
    });
    join.join()
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .unwrap_or(Ok(()))
}
