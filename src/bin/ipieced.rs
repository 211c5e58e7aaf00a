//! `ipieced`: the gateway daemon, in the foreground (systemd runs it as is).

use clap::{Parser, ValueEnum};
use ipiece::config::{ClientKeys, Config};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// ipiece gateway daemon: userspace WireGuard (and IPsec) with the TOML file
/// as the source of truth. SIGHUP reloads the file, SIGTERM stops cleanly.
#[derive(Parser, Debug)]
#[command(name = "ipieced", version, about)]
struct Args {
    /// The configuration file.
    #[arg(
        long,
        env = "IPIECE_CONFIG",
        default_value = "/etc/ipiece/gateway.toml"
    )]
    config: PathBuf,
    /// State directory: dnsmasq's configuration, hosts and lease files.
    #[arg(long, env = "IPIECE_STATE_DIR", default_value = "/var/lib/ipiece")]
    state_dir: PathBuf,
    /// Log line format (level filter from IPIECE_LOG, e.g. "info,ipiece=debug").
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPIECE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // The daemon never reads the laptops' private key files (`wgctl check`
    // does).
    let cfg = match Config::load_with(&args.config, ClientKeys::Skip) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ipieced: configuration rejected:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipieced: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(ipiece::dataplane::run(args.config, cfg, args.state_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ipieced: {e}");
            ExitCode::FAILURE
        }
    }
}
