//! rocketcore-bench: an open-loop RocketMQ load generator with HDR histograms, reports and a capacity planner.
//! It speaks the remoting protocol through rocketcore's codec and needs only a NameServer address.

pub mod calibrate;
pub mod cli;
pub mod consume;
pub mod e2e;
pub mod floor;
pub mod hist;
pub mod plan;
pub mod plot;
pub mod produce;
pub mod proto;
pub mod ramp;
pub mod report;
pub mod route;
pub mod rpc;
pub mod stalls;
pub mod stats;
pub mod util;
