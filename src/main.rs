//! `rocketcore`: the broker (default), a standalone NameServer, and the host tuning check.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rocketcore::config::{parse_properties, BrokerConfig};

#[derive(Parser)]
#[command(
    name = "rocketcore",
    version,
    about = "A RocketMQ 4.x-compatible broker and NameServer, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker with an embedded NameServer (the default).
    Broker(BrokerArgs),
    /// Run a standalone NameServer.
    Namesrv {
        /// Port to listen on (RocketMQ's default 9876).
        #[arg(long, default_value_t = 9876)]
        listen_port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::Ipv4Addr,
    },
}

#[derive(Args, Clone, Default)]
struct BrokerArgs {
    /// A RocketMQ broker.properties file.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// NameServer address(es), `host:port;host:port` (RocketMQ's -n).
    #[arg(short = 'n', long = "namesrv-addr")]
    namesrv_addr: Option<String>,
    /// Override any configuration key: --set flushDiskType=SYNC_FLUSH (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the host tuning check (as os.sh --check) and exit with its code.
    #[arg(long)]
    check_tuning: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROCKETCORE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Namesrv { listen_port, bind }) => run_namesrv(bind, listen_port),
        Some(Command::Broker(args)) => run_broker(args),
        None => run_broker(cli.broker),
    }
}

fn load_config(args: &BrokerArgs) -> Result<BrokerConfig, String> {
    let mut cfg = BrokerConfig::default();
    if let Some(path) = &args.config {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {name}: {e}"))?;
        let pairs = parse_properties(&text, &name).map_err(|e| e.to_string())?;
        cfg.apply(&pairs, &name).map_err(|e| e.to_string())?;
    }
    if let Some(n) = &args.namesrv_addr {
        cfg.set("namesrvAddr", n).map_err(|e| e.to_string())?;
    }
    let mut overrides = Vec::new();
    for s in &args.set {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--set `{s}`: expected KEY=VALUE"))?;
        overrides.push((k.trim().to_string(), v.trim().to_string()));
    }
    cfg.apply(&overrides, "--set").map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn run_broker(args: BrokerArgs) -> ExitCode {
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rocketcore: {e}");
            return ExitCode::from(2);
        }
    };
    let root = rocketcore::tuning::root_from_env();
    if args.check_tuning {
        let code =
            rocketcore::tuning::run_check_cli(&cfg.tuning_profile, &root, &mut std::io::stdout());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let io_memory = (cfg.shard_io_memory * cfg.shards) as u64;
    for w in rocketcore::tuning::broker_startup_warnings(
        &root,
        &cfg.store_path_root_dir,
        io_memory,
        65_536,
    ) {
        tracing::warn!("{w}");
    }
    tracing::info!(store = %cfg.store_path_root_dir.display(), shards = cfg.shards, flush = ?cfg.flush_disk_type, "starting broker");
    match rocketcore::broker::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocketcore: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_namesrv(bind: std::net::Ipv4Addr, port: u16) -> ExitCode {
    match rocketcore::namesrv::run_standalone(bind, port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rocketcore namesrv: {e}");
            ExitCode::from(1)
        }
    }
}
