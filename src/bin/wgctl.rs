//! `wgctl`: the operator's CLI. It edits the TOML file atomically and talks
//! to the running `ipieced` over its control socket.

use clap::{Parser, Subcommand};
use ipiece::aws::ec2::{describe_operation, Ec2};
use ipiece::aws::import::{self as aws_import, ImportOptions, VpnConfiguration};
use ipiece::aws::plan as aws_plan;
use ipiece::config::edit::{next_free_address, ConfigEditor, EditError, NewPeer};
use ipiece::config::{
    generate_private_key, public_key, read_key_file, write_secret_file, ClientKeys, Config, Key,
};
use ipiece::control::client::{self, ClientError};
use ipiece::control::{Request, Response};
use ipiece::gateway::GatewayStatus;
use ipiece::wg::client_config::{endpoint, qr_terminal, ClientConfig};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The seed topology `wgctl init` writes when the config file is absent.
const SEED: &str = include_str!("../../configs/gateway.toml");
/// How long `wgctl` waits for the daemon.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);

/// ipiece operator CLI: peers, status, reload.
#[derive(Parser, Debug)]
#[command(name = "wgctl", version, about)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "IPIECE_CONFIG",
        default_value = "/etc/ipiece/gateway.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the gateway's WireGuard key (mode 0600) and, when the config
    /// file is absent, a config from the seed template.
    Init {
        /// Host name or address laptops dial (written into a new config).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Validate the config file; exit 1 on any error.
    Check,
    /// Add a laptop: allocate its address, write the TOML, apply it to the
    /// running daemon and print its client config.
    AddPeer {
        /// Peer name ([A-Za-z0-9_.-], unique).
        name: String,
        /// Tunnel address (default: the next free one in the WireGuard subnet).
        #[arg(long)]
        ip: Option<IpAddr>,
        /// The peer's own public key (then no client key is stored).
        #[arg(long)]
        public_key: Option<String>,
        /// Generate a preshared key for this peer.
        #[arg(long)]
        psk: bool,
        /// Persistent keepalive in seconds (default 25, 0 = off).
        #[arg(long)]
        keepalive: Option<u16>,
        /// DNS server(s) for the client config (default: the gateway's
        /// WireGuard address when [dns] is on).
        #[arg(long)]
        dns: Vec<IpAddr>,
        /// Make it a site peer: the gateway initiates the handshake to
        /// HOST:PORT and keeps the session up (the printed config still
        /// dials this gateway, for the other end).
        #[arg(long, value_name = "HOST:PORT")]
        endpoint: Option<String>,
        /// Write the client config to this file (mode 0600) instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also print the client config as a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Remove a peer (its session is cut at once).
    RemovePeer {
        /// Peer name.
        name: String,
    },
    /// List the peers in the config file.
    ListPeers,
    /// Print a peer's client config again (needs its stored private key).
    Export {
        /// Peer name.
        name: String,
        /// Write to this file (mode 0600) instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also print a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Enable a peer.
    Enable {
        /// Peer name.
        name: String,
    },
    /// Disable a peer (kept in the file, session cut).
    Disable {
        /// Peer name.
        name: String,
    },
    /// Show the running daemon's peers and counters.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to re-read the config file.
    Reload,
    /// List the DHCP leases of the LAN (dnsmasq's, through the daemon).
    Leases {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Operate an IPsec tunnel: `up` (start it now), `down` (delete its
    /// SAs until `up`), `rekey` (rekey its CHILD SA now).
    Tunnel {
        /// up, down or rekey.
        #[arg(value_parser = ["up", "down", "rekey"])]
        action: String,
        /// Tunnel name.
        name: String,
    },
    /// The AWS side of the IPsec tunnels.
    Aws {
        #[command(subcommand)]
        cmd: AwsCmd,
    },
    /// The firewall and NAT ([firewall] in the config file).
    Firewall {
        #[command(subcommand)]
        cmd: FirewallCmd,
    },
    /// Import another product's configuration into the config file.
    Import {
        #[command(subcommand)]
        cmd: ImportCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ImportCmd {
    /// A pfSense 2.5-2.7 config.xml (Diagnostics > Backup & Restore): the
    /// WireGuard tunnel and peers (pfSense-pkg-WireGuard), the IPsec
    /// tunnels, aliases, rules and port forwards, the LAN address and its
    /// DHCP server; keys into 0600 files; one atomic edit. Prints what was written and a report of
    /// everything that was not.
    Pfsense {
        /// The config.xml.
        file: PathBuf,
        /// Print the change to the config file as a diff and the report;
        /// write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace peers, tunnels, rules, port forwards and aliases that
        /// have an imported one's name (or key, or remote address), and the
        /// gateway's key while the file has peers.
        #[arg(long)]
        replace: bool,
        /// The WireGuard tunnel to import (pfSense's name, e.g. tun_wg1);
        /// default: the first enabled one with peers.
        #[arg(long, value_name = "NAME")]
        wg_tunnel: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum FirewallCmd {
    /// The nftables ruleset and its counters: the running daemon's, else
    /// the one the config file renders to.
    Show {
        /// Machine-readable output (status and ruleset).
        #[arg(long)]
        json: bool,
    },
    /// Validate the config file and ask the kernel whether it would take
    /// the ruleset (`nft -c`; changes nothing).
    Check,
}

#[derive(Subcommand, Debug)]
enum AwsCmd {
    /// Import a VPN connection: its two tunnels become [[ipsec.tunnels]]
    /// (matched by AWS outside address: a re-import updates them in place),
    /// their pre-shared keys 0600 files under ipsec/, and the VPC's CIDR
    /// blocks remote prefixes. Online (`wgctl aws import vpn-...`: read from
    /// AWS with the standard credential chain, tunnel options included, and
    /// [aws] pointed at the connection) or offline (`--from-xml FILE`).
    Import {
        /// The VPN connection (`vpn-...`) to read from AWS.
        #[arg(
            value_name = "VPN_ID",
            required_unless_present = "from_xml",
            conflicts_with = "from_xml"
        )]
        vpn_id: Option<String>,
        /// The region of the connection (default: aws.region of the file,
        /// else AWS_REGION / AWS_DEFAULT_REGION).
        #[arg(long, value_name = "REGION", requires = "vpn_id")]
        region: Option<String>,
        /// The EC2 endpoint (default: aws.endpoint_url of the file, else the
        /// region's); written into [aws].
        #[arg(long, value_name = "URL", requires = "vpn_id")]
        endpoint_url: Option<String>,
        /// Offline: the connection's CustomerGatewayConfiguration XML, e.g. saved by
        /// `aws ec2 describe-vpn-connections --vpn-connection-ids vpn-...
        /// --query 'VpnConnections[0].CustomerGatewayConfiguration' --output text`.
        #[arg(long, value_name = "FILE")]
        from_xml: Option<PathBuf>,
        /// Tunnel names are PREFIX-1 and PREFIX-2 (by ascending AWS outside address).
        #[arg(long, value_name = "PREFIX", default_value = "aws")]
        name_prefix: String,
        /// A CIDR block of the VPC, added to wireguard.remote_prefixes (repeat
        /// for several; an online import adds the VPC's blocks itself).
        #[arg(long = "vpc-cidr", value_name = "CIDR")]
        vpc_cidr: Vec<IpNet>,
    },
    /// Show what `sync` would change at AWS (VPN connection static routes,
    /// route table routes to the VGW): exit 0 when in step, 2 when changes
    /// are pending, 1 on error. Needs [aws] and AWS credentials.
    Plan {
        /// Plan the removal of routes to the VGW no longer in the file.
        #[arg(long)]
        prune: bool,
    },
    /// Apply the plan, then plan again and print the result.
    Sync {
        /// Also remove routes to the VGW no longer in the file.
        #[arg(long)]
        prune: bool,
    },
}

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Aws {
        cmd: AwsCmd::Plan { prune } | AwsCmd::Sync { prune },
    } = &cli.cmd
    {
        let apply = matches!(
            cli.cmd,
            Cmd::Aws {
                cmd: AwsCmd::Sync { .. }
            }
        );
        return match aws_plan(&cli.config, *prune, apply) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("wgctl: {e}");
                ExitCode::from(aws_plan::EXIT_ERROR)
            }
        };
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wgctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let path = cli.config.as_path();
    match &cli.cmd {
        Cmd::Init { endpoint } => init(path, endpoint.as_deref()),
        Cmd::Check => {
            let cfg = load(path)?;
            println!(
                "{}: OK ({} peers, {} enabled)",
                path.display(),
                cfg.peers.len(),
                cfg.peers.iter().filter(|p| p.enabled).count()
            );
            if !cfg.firewall.enabled {
                println!("warning: {}", ipiece::firewall::DISABLED_WARNING);
            }
            for w in cfg.warnings() {
                println!("warning: {w}");
            }
            if let Err(e) = ipiece::dataplane::lan::preflight(&cfg) {
                println!("warning: ipieced will not start: {e}");
            }
            Ok(())
        }
        Cmd::Firewall {
            cmd: FirewallCmd::Show { json },
        } => firewall_show(path, *json),
        Cmd::Firewall {
            cmd: FirewallCmd::Check,
        } => firewall_check(path),
        Cmd::AddPeer {
            name,
            ip,
            public_key,
            psk,
            keepalive,
            dns,
            endpoint,
            output,
            qr,
        } => add_peer(
            path,
            name,
            *ip,
            public_key.as_deref(),
            *psk,
            *keepalive,
            dns,
            endpoint.as_deref(),
            output.as_deref(),
            *qr,
        ),
        Cmd::RemovePeer { name } => remove_peer(path, name),
        Cmd::ListPeers => list_peers(path),
        Cmd::Export { name, output, qr } => {
            let cfg = load(path)?;
            let peer = cfg
                .peer(name)
                .ok_or_else(|| format!("no peer named {name:?} in {}", path.display()))?;
            let Some(keyfile) = &peer.private_key_file else {
                return Err(format!(
                    "peer {name:?} brought its own public key, so ipiece never had its private key: \
                     its client config lives on that laptop (the gateway side is in {})",
                    path.display()
                ));
            };
            let key = read_key_file(keyfile).map_err(|e| format!("peer {name:?}: {e}"))?;
            emit_client(&cfg, name, Some(&key), output.as_deref(), *qr)
        }
        Cmd::Enable { name } => set_enabled(path, name, true),
        Cmd::Disable { name } => set_enabled(path, name, false),
        Cmd::Status { json } => status(path, *json),
        Cmd::Leases { json } => leases(path, *json),
        Cmd::Tunnel { action, name } => match ask(
            path,
            &Request::Tunnel {
                name: name.clone(),
                action: action.clone(),
            },
        )? {
            Response::Done { message } => {
                println!("{message}");
                Ok(())
            }
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected answer from ipieced: {other:?}")),
        },
        Cmd::Aws {
            cmd:
                AwsCmd::Import {
                    vpn_id,
                    region,
                    endpoint_url,
                    from_xml,
                    name_prefix,
                    vpc_cidr,
                },
        } => match (vpn_id, from_xml) {
            (_, Some(xml)) => aws_import_xml(path, xml, name_prefix, vpc_cidr),
            (Some(id), None) => aws_import_online(
                path,
                id,
                region.as_deref(),
                endpoint_url.as_deref(),
                name_prefix,
                vpc_cidr,
            ),
            (None, None) => Err("give a VPN connection ID or --from-xml FILE".into()),
        },
        Cmd::Aws {
            cmd: AwsCmd::Plan { .. } | AwsCmd::Sync { .. },
        } => unreachable!("handled in main"),
        Cmd::Import {
            cmd:
                ImportCmd::Pfsense {
                    file,
                    dry_run,
                    replace,
                    wg_tunnel,
                },
        } => import_pfsense(path, file, *dry_run, *replace, wg_tunnel.clone()),
        Cmd::Reload => match ask(path, &Request::Reload)? {
            Response::Reloaded(o) => {
                print_reload(&o);
                Ok(())
            }
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected answer from ipieced: {other:?}")),
        },
    }
}

/// The policy of the config file with its interfaces (the file's, else
/// the routes').
fn local_ruleset(path: &Path) -> Result<(ipiece::firewall::Policy, String)> {
    use ipiece::dataplane::firewall as fw;
    let cfg = load(path)?;
    let policy = ipiece::firewall::Policy::compile(&cfg);
    let ifs = fw::interfaces(&policy).map_err(|e| e.to_string())?;
    let text = policy.render(&ifs);
    Ok((policy, text))
}

fn firewall_check(path: &Path) -> Result<()> {
    use ipiece::dataplane::firewall as fw;
    let (policy, text) = local_ruleset(path)?;
    fw::check(&text).map_err(|e| e.to_string())?;
    println!(
        "{}: firewall OK ({} rules, {} port forwards; nft -c accepts the ruleset)",
        path.display(),
        policy.rules.len(),
        policy.forwards.len()
    );
    if !policy.enabled {
        println!("warning: {}", ipiece::firewall::DISABLED_WARNING);
    }
    Ok(())
}

fn print_counters(title: &str, counters: &[ipiece::firewall::RuleCounter]) {
    if counters.is_empty() {
        return;
    }
    println!("# {title}");
    for c in counters {
        println!(
            "#   {:<40} {:>12} packets {:>14} bytes",
            c.name, c.packets, c.bytes
        );
    }
}

fn firewall_show(path: &Path, json: bool) -> Result<()> {
    match ask(path, &Request::Firewall) {
        Ok(Response::Firewall { ruleset, status }) => {
            if json {
                let v = serde_json::json!({ "ruleset": ruleset, "status": status });
                println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
                return Ok(());
            }
            print!("{ruleset}");
            if let Some(e) = &status.last_error {
                println!("# last reload refused: {e}");
            }
            for w in &status.warnings {
                println!("# warning: {w}");
            }
            print_counters("kernel counters (nftables)", &status.kernel);
            print_counters("core counters (WireGuard <-> ESP)", &status.core);
            Ok(())
        }
        Ok(Response::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer from ipieced: {other:?}")),
        Err(e) => {
            let (_, text) = local_ruleset(path)?;
            eprintln!("wgctl: ipieced does not answer ({e}); the ruleset the file renders to:");
            if json {
                let v = serde_json::json!({ "ruleset": text });
                println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
            } else {
                print!("{text}");
            }
            Ok(())
        }
    }
}

fn load(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| format!("{} is invalid:\n{e}", path.display()))
}

/// The daemon's control socket, read loosely so that a file that no longer
/// validates still reaches the daemon (which then reports the errors).
fn control_socket(path: &Path) -> PathBuf {
    if let Ok(cfg) = Config::load_with(path, ClientKeys::Skip) {
        return cfg.gateway.control_socket;
    }
    loose_control_socket(path)
}

/// `gateway.control_socket` read from the file without validating it.
fn loose_control_socket(path: &Path) -> PathBuf {
    let loose = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
        .and_then(|d| {
            d.get("gateway")
                .and_then(|g| g.get("control_socket"))
                .and_then(|v| v.as_str())
                .map(PathBuf::from)
        });
    match loose {
        Some(p) if p.is_absolute() => p,
        Some(p) => config_dir(path).join(p),
        None => PathBuf::from(ipiece::config::DEFAULT_CONTROL_SOCKET),
    }
}

fn ask(path: &Path, req: &Request) -> Result<Response> {
    client::request(&control_socket(path), req, DAEMON_TIMEOUT).map_err(|e| e.to_string())
}

fn print_reload(o: &ipiece::gateway::ApplyOutcome) {
    let p = &o.peers;
    println!(
        "reloaded: {} added, {} removed, {} restarted, {} updated, {} unchanged",
        p.added.len(),
        p.removed.len(),
        p.restarted.len(),
        p.updated.len(),
        p.unchanged
    );
    for f in &o.restart_required {
        println!("note: {f} changed; restart ipieced to apply it");
    }
    if !o.tunnels_started.is_empty() {
        println!(
            "IPsec tunnels (re)started: {}",
            o.tunnels_started.join(", ")
        );
    }
    if !o.tunnels_removed.is_empty() {
        println!("IPsec tunnels removed: {}", o.tunnels_removed.join(", "));
    }
}

/// Applies the file to the daemon if one is running; a daemon that is not
/// running is not an error (the file is the source of truth).
fn apply_to_daemon(path: &Path) -> Result<()> {
    apply_to_daemon_at(&control_socket(path))
}

/// [`apply_to_daemon`] through `socket`, the control socket of the
/// configuration just written (no need to read the file again).
fn apply_to_daemon_at(socket: &Path) -> Result<()> {
    match client::request(socket, &Request::Reload, DAEMON_TIMEOUT) {
        Ok(Response::Reloaded(o)) => {
            eprint!("ipieced: ");
            let p = &o.peers;
            eprintln!(
                "applied ({} added, {} removed, {} restarted, {} unchanged)",
                p.added.len(),
                p.removed.len(),
                p.restarted.len(),
                p.unchanged
            );
            Ok(())
        }
        Ok(Response::Error { message }) => Err(format!(
            "the file was written but ipieced refused it: {message}"
        )),
        Ok(other) => Err(format!("unexpected answer from ipieced: {other:?}")),
        Err(ClientError::NotRunning { .. }) => {
            eprintln!("ipieced is not running; the change applies when it starts");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Locks the file for an edit and reads it; an edit starts only from a
/// valid file.
fn open_editor(path: &Path) -> Result<(ConfigEditor, Config)> {
    // The laptops' stored private keys are checked by `wgctl check` and
    // `export`, not by every edit (an X25519 multiplication each).
    let (editor, cfg) =
        ConfigEditor::open_checked(path, ClientKeys::Skip).map_err(|e| e.to_string())?;
    let cfg = cfg.map_err(|e| format!("{} is invalid; fix it first:\n{e}", path.display()))?;
    Ok((editor, cfg))
}

fn config_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn init(path: &Path, endpoint_host: Option<&str>) -> Result<()> {
    let existed = path.exists();
    if !existed {
        let mut doc: toml_edit::DocumentMut = SEED.parse().expect("the seed template parses");
        if let Some(host) = endpoint_host {
            doc["gateway"]["public_endpoint"] = toml_edit::value(host);
        }
        let dir = config_dir(path);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write_secret_file(path, doc.to_string().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {} from the seed template", path.display());
    } else if endpoint_host.is_some() {
        println!(
            "{} exists and was left unchanged (edit gateway.public_endpoint there)",
            path.display()
        );
    }
    // The key file named by the config (valid or not yet: read it loosely).
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let keyfile = doc
        .get("wireguard")
        .and_then(|w| w.get("private_key_file"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{}: wireguard.private_key_file is missing", path.display()))?;
    let keypath = {
        let p = PathBuf::from(keyfile);
        if p.is_absolute() {
            p
        } else {
            config_dir(path).join(p)
        }
    };
    let key = if keypath.exists() {
        let k = read_key_file(&keypath).map_err(|e| e.to_string())?;
        println!("kept the existing key {}", keypath.display());
        k
    } else {
        let k = generate_private_key();
        write_secret_file(&keypath, format!("{k}\n").as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", keypath.display()))?;
        println!(
            "wrote the gateway's private key to {} (mode 0600)",
            keypath.display()
        );
        k
    };
    println!("gateway public key: {}", public_key(&key));
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name != "."
        && name != ".."
}

#[allow(clippy::too_many_arguments)]
fn add_peer(
    path: &Path,
    name: &str,
    ip: Option<IpAddr>,
    their_public: Option<&str>,
    psk: bool,
    keepalive: Option<u16>,
    dns: &[IpAddr],
    endpoint: Option<&str>,
    output: Option<&Path>,
    qr: bool,
) -> Result<()> {
    if !valid_name(name) {
        return Err(format!(
            "peer name {name:?}: use 1 to 64 of A-Z a-z 0-9 _ . -"
        ));
    }
    let (mut editor, cfg) = open_editor(path)?;
    if cfg.peer(name).is_some() {
        return Err(format!(
            "a peer named {name:?} already exists in {}",
            path.display()
        ));
    }
    let address = match ip {
        Some(a) => a,
        None => next_free_address(&cfg).ok_or_else(|| {
            format!(
                "the WireGuard subnet {} has no free address left",
                cfg.wg_subnet()
            )
        })?,
    };
    let dir = config_dir(path);
    let mut created: Vec<PathBuf> = Vec::new();
    let cleanup = |created: &[PathBuf]| {
        for f in created {
            let _ = std::fs::remove_file(f);
        }
    };
    let (public, private, key_rel) = match their_public {
        Some(k) => {
            let k: Key = k.trim().parse().map_err(|e| format!("--public-key: {e}"))?;
            (k, None, None)
        }
        None => {
            let private = generate_private_key();
            let rel = PathBuf::from(format!("peers/{name}.key"));
            let abs = dir.join(&rel);
            if abs.exists() {
                return Err(format!(
                    "{} already exists (left from an earlier peer?); remove it first",
                    abs.display()
                ));
            }
            write_secret_file(&abs, format!("{private}\n").as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", abs.display()))?;
            created.push(abs);
            (public_key(&private), Some(private), Some(rel))
        }
    };
    let psk_rel = if psk {
        let rel = PathBuf::from(format!("peers/{name}.psk"));
        let abs = dir.join(&rel);
        let k = generate_private_key(); // 32 random bytes from the OS RNG
        if let Err(e) = write_secret_file(&abs, format!("{k}\n").as_bytes()) {
            cleanup(&created);
            return Err(format!("cannot write {}: {e}", abs.display()));
        }
        created.push(abs);
        Some(rel)
    } else {
        None
    };
    let new = NewPeer {
        name: name.to_string(),
        public_key: public,
        address,
        psk_file: psk_rel,
        private_key_file: key_rel,
        keepalive,
        dns: dns.to_vec(),
        endpoint: endpoint.map(str::to_owned),
    };
    let res = editor
        .add_peer(&new)
        .map_err(|e| e.to_string())
        .and_then(|()| editor.commit_config().map_err(|e| e.to_string()));
    let cfg = match res {
        Ok(cfg) => cfg,
        Err(e) => {
            cleanup(&created);
            return Err(e);
        }
    };
    eprintln!(
        "added peer {name} with address {address} to {}",
        path.display()
    );
    let applied = apply_to_daemon_at(&cfg.gateway.control_socket);
    emit_client(&cfg, name, private.as_ref(), output, qr)?;
    applied
}

/// `wgctl aws import --from-xml`: reads the XML, upserts the tunnels and
/// remote prefixes, writes the PSK files and the TOML in one commit (all or
/// nothing), prints what changed and applies the file to a running daemon.
/// `wgctl aws plan` (`apply` false) and `wgctl aws sync` (`apply` true):
/// the exit status, or an error (exit 1).
fn aws_plan(path: &Path, prune: bool, apply: bool) -> Result<u8> {
    let cfg = load(path)?;
    let Some(aws) = cfg.aws.clone() else {
        return Err(format!(
            "{} has no [aws] section: add region and vpn_connection_id (README: AWS)",
            path.display()
        ));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async {
        let ec2 = Ec2::connect(&aws).await.map_err(|e| e.to_string())?;
        let state = ec2.read_state().await.map_err(|e| e.to_string())?;
        let plan = aws_plan::plan(&ec2.plan_input(&cfg, &state, prune));
        if !apply {
            print!("{}", plan.render());
            return Ok(plan.exit_code());
        }
        if plan.operations.is_empty() {
            print!("{}", plan.render());
            return Ok(aws_plan::EXIT_IN_STEP);
        }
        let total = plan.operations.len();
        ec2.apply(&state.vgw_id, &plan.operations, |op| {
            println!(
                "done: {}",
                describe_operation(op, &aws.vpn_connection_id, &state.vgw_id)
            )
        })
            .await
            .map_err(|(done, e)| {
                format!("{e}\n({done} of {total} changes were applied before the failure; run `wgctl aws plan` to see the rest)")
            })?;
        println!("applied {total} change(s); AWS now:");
        let state = ec2.read_state().await.map_err(|e| e.to_string())?;
        let after = aws_plan::plan(&ec2.plan_input(&cfg, &state, prune));
        print!("{}", after.render());
        Ok(after.exit_code())
    })
}

fn aws_import_xml(path: &Path, xml: &Path, name_prefix: &str, vpc_cidrs: &[IpNet]) -> Result<()> {
    aws_import::check_name_prefix(name_prefix).map_err(|e| format!("--name-prefix: {e}"))?;
    let vpn = VpnConfiguration::load(xml).map_err(|e| e.to_string())?;
    let opts = ImportOptions {
        name_prefix: name_prefix.to_owned(),
        vpc_cidrs: vpc_cidrs.to_vec(),
    };
    write_import(path, &vpn, &opts, Vec::new(), None)
}

/// `wgctl aws import VPN_ID`: reads the connection from AWS (its XML, its
/// tunnel options, its VGW's VPC and that VPC's CIDR blocks), then writes
/// it like `--from-xml` and points [aws] at it. Nothing is written when
/// anything fails.
fn aws_import_online(
    path: &Path,
    id: &str,
    region: Option<&str>,
    endpoint_url: Option<&str>,
    name_prefix: &str,
    extra_cidrs: &[IpNet],
) -> Result<()> {
    aws_import::check_name_prefix(name_prefix).map_err(|e| format!("--name-prefix: {e}"))?;
    let cfg = load(path)?;
    let id = id.trim();
    let file_aws = cfg.aws.as_ref();
    let region = region
        .map(str::to_owned)
        .or_else(|| file_aws.map(|a| a.region.clone()))
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        })
        .ok_or_else(|| {
            "no region: give --region (or set aws.region in the file, or AWS_REGION)".to_owned()
        })?;
    ipiece::config::check_aws_connection(&region, id)?;
    let endpoint = endpoint_url
        .map(str::to_owned)
        .or_else(|| file_aws.and_then(|a| a.endpoint_url.clone()));
    let aws = ipiece::config::AwsConfig {
        region: region.clone(),
        vpn_connection_id: id.to_owned(),
        route_tables: ipiece::config::RouteTables::Ids(Vec::new()),
        routing: ipiece::config::AwsRouting::Static,
        sync_interval: None,
        endpoint_url: endpoint,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let online = rt.block_on(async {
        let ec2 = Ec2::connect(&aws).await.map_err(|e| e.to_string())?;
        ec2.read_import().await.map_err(|e| e.to_string())
    })?;
    let source = PathBuf::from(format!("{id} (CustomerGatewayConfiguration)"));
    let mut vpn = VpnConfiguration::parse(&source, &online.xml).map_err(|e| e.to_string())?;
    let mut warnings = vpn.merge_tunnel_options(&online.tunnel_options);
    if online.static_routes_only == Some(false) && !vpn.uses_bgp() {
        warnings.push(format!(
            "{id} routes with BGP (StaticRoutesOnly is false); ipiece only does static routing: \
             recreate the VPN connection with static routing to route through ipiece"
        ));
    }
    if vpn.vpn_gateway_id.is_none() {
        vpn.vpn_gateway_id = Some(online.vgw_id.clone());
    }
    let mut vpc_cidrs: Vec<IpNet> = online.vpc_cidrs.clone();
    for c in extra_cidrs {
        if !vpc_cidrs.contains(c) {
            vpc_cidrs.push(*c);
        }
    }
    if online.vpc_id.is_none() {
        warnings.push(format!(
            "{} is not attached to a VPC: no remote prefix was learnt (use --vpc-cidr)",
            online.vgw_id
        ));
    }
    let opts = ImportOptions {
        name_prefix: name_prefix.to_owned(),
        vpc_cidrs,
    };
    let section = endpoint_url.map(str::to_owned);
    write_import(path, &vpn, &opts, warnings, Some((region, section)))
}

/// Writes an import in one commit (tunnels, PSK files, remote prefixes and,
/// online, [aws]), prints what changed and applies the file to a running
/// daemon.
fn write_import(
    path: &Path,
    vpn: &VpnConfiguration,
    opts: &ImportOptions,
    mut warnings: Vec<String>,
    aws_section: Option<(String, Option<String>)>,
) -> Result<()> {
    let (mut editor, cfg) = open_editor(path)?;
    let report = aws_import::apply(&mut editor, &cfg, vpn, opts).map_err(|e| e.to_string())?;
    let mut aws_changed = Vec::new();
    if let (Some((region, endpoint)), Some(id)) = (&aws_section, &vpn.vpn_connection_id) {
        aws_changed = editor
            .set_aws_connection(region, id, endpoint.as_deref())
            .map_err(|e| e.to_string())?;
    }
    editor.commit().map_err(|e| match e {
        EditError::Invalid(errs) => {
            format!("the imported configuration does not validate; nothing was written:\n{errs}")
        }
        other => format!("{other}; nothing was written"),
    })?;
    warnings.extend(report.warnings.iter().cloned());
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if report.changed() {
        for n in &report.notes {
            eprintln!("note: {n}");
        }
    }
    let what = match &vpn.vpn_gateway_id {
        Some(vgw) => format!("{} ({vgw})", vpn.display_name()),
        None => vpn.display_name(),
    };
    println!("{what} -> {}:", path.display());
    for t in &report.tunnels {
        println!("  {t}");
    }
    for p in &report.remote_prefixes_added {
        println!("  wireguard.remote_prefixes: added {p}");
    }
    for p in &report.remote_prefixes_kept {
        println!("  wireguard.remote_prefixes: {p} already routed");
    }
    if !aws_changed.is_empty() {
        println!("  [aws]: set {}", aws_changed.join(", "));
    }
    if !report.changed() && aws_changed.is_empty() {
        println!("no changes");
        return Ok(());
    }
    apply_to_daemon(path)
}

/// `wgctl import pfsense`: reads the XML (nothing is opened for writing
/// before it parses), writes the plan in one commit or, with `dry_run`,
/// prints the diff; then the summary and the report.
fn import_pfsense(
    path: &Path,
    xml: &Path,
    dry_run: bool,
    replace: bool,
    wg_tunnel: Option<String>,
) -> Result<()> {
    use ipiece::pfsense;
    if !path.exists() {
        return Err(format!(
            "{} does not exist: create it first with `wgctl init --endpoint HOST`, then import into it",
            path.display()
        ));
    }
    let plan = pfsense::load(xml, &pfsense::ParseOptions { wg_tunnel })
        .map_err(|e| format!("{e}; nothing was written"))?;
    let (mut editor, cfg) = open_editor(path)?;
    let before = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let applied = pfsense::apply(
        &mut editor,
        &cfg,
        &plan,
        &pfsense::ImportOptions { replace },
    )
    .map_err(|e| e.to_string())?;
    let version = plan
        .version
        .as_deref()
        .map(|v| format!(" (config version {v})"))
        .unwrap_or_default();
    if dry_run {
        let diff = pfsense::diff::unified(
            &before,
            &editor.to_text(),
            &path.display().to_string(),
            &format!("{} (after import)", path.display()),
        );
        println!(
            "dry run: {}{version} -> {}; nothing was written",
            xml.display(),
            path.display()
        );
        if diff.is_empty() {
            println!("(no change to {})", path.display());
        } else {
            print!("{diff}");
        }
    } else {
        editor.commit().map_err(|e| match e {
            EditError::Invalid(errs) => format!(
                "the imported configuration does not validate; nothing was written:\n{errs}"
            ),
            other => format!("{other}; nothing was written"),
        })?;
        println!("{}{version} -> {}:", xml.display(), path.display());
    }
    for l in &applied.lines {
        println!("  {l}");
    }
    let report = pfsense::full_report(&plan, &applied);
    println!("not imported ({}):", report.not_mapped.len());
    for i in &report.not_mapped {
        println!("  {i}");
    }
    println!("notes ({}):", report.notes.len());
    for i in &report.notes {
        println!("  {i}");
    }
    if dry_run {
        return Ok(());
    }
    apply_to_daemon(path)
}

fn emit_client(
    cfg: &Config,
    name: &str,
    private: Option<&Key>,
    output: Option<&Path>,
    qr: bool,
) -> Result<()> {
    let peer = cfg
        .peer(name)
        .ok_or_else(|| format!("no peer named {name:?}"))?;
    let gw_private = read_key_file(&cfg.wireguard.private_key_file)
        .map_err(|e| format!("wireguard.private_key_file: {e}"))?;
    let server_public = public_key(&gw_private);
    let psk = match &peer.psk_file {
        Some(f) => Some(read_key_file(f).map_err(|e| format!("peer {name:?}: {e}"))?),
        None => None,
    };
    let Some(private) = private else {
        eprintln!(
            "peer {name} brought its own public key: give its owner these values for the [Peer] section:\n  \
             PublicKey = {server_public}\n  Endpoint = {}\n  AllowedIPs = {}\n  Address = {}",
            endpoint(&cfg.gateway.public_endpoint, cfg.wireguard.listen_port),
            cfg.client_allowed_ips()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            peer.address
        );
        return Ok(());
    };
    let allowed = cfg.client_allowed_ips();
    let dns = ipiece::lan::client_dns(cfg, peer);
    let conf = ClientConfig {
        comment: format!("ipiece peer {} (gateway {})", peer.name, cfg.gateway.name),
        private_key: private,
        address: peer.address,
        dns: &dns,
        mtu: Some(cfg.wireguard.mtu),
        server_public_key: &server_public,
        preshared_key: psk.as_ref(),
        endpoint: endpoint(&cfg.gateway.public_endpoint, cfg.wireguard.listen_port),
        allowed_ips: &allowed,
        persistent_keepalive: peer.keepalive,
    }
    .render();
    match output {
        Some(f) => {
            write_secret_file(f, conf.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
            eprintln!("client config written to {} (mode 0600)", f.display());
        }
        None => print!("{conf}"),
    }
    if qr {
        let code = qr_terminal(&conf).map_err(|e| format!("QR code: {e}"))?;
        println!("{code}");
    }
    Ok(())
}

fn remove_peer(path: &Path, name: &str) -> Result<()> {
    let (mut editor, cfg) = open_editor(path)?;
    let peer = cfg
        .peer(name)
        .ok_or_else(|| format!("no peer named {name:?} in {}", path.display()))?
        .clone();
    editor.remove_peer(name).map_err(|e| e.to_string())?;
    let cfg = editor.commit_config().map_err(|e| e.to_string())?;
    eprintln!("removed peer {name} from {}", path.display());
    // The peer's secrets are useless now; do not leave them lying around.
    for f in [&peer.private_key_file, &peer.psk_file]
        .into_iter()
        .flatten()
    {
        if std::fs::remove_file(f).is_ok() {
            eprintln!("deleted {}", f.display());
        }
    }
    apply_to_daemon_at(&cfg.gateway.control_socket)
}

fn set_enabled(path: &Path, name: &str, enabled: bool) -> Result<()> {
    let (mut editor, cfg) = open_editor(path)?;
    if cfg.peer(name).is_none() {
        return Err(format!("no peer named {name:?} in {}", path.display()));
    }
    editor
        .set_peer_enabled(name, enabled)
        .map_err(|e| e.to_string())?;
    let cfg = editor.commit_config().map_err(|e| e.to_string())?;
    eprintln!(
        "peer {name} {} in {}",
        if enabled { "enabled" } else { "disabled" },
        path.display()
    );
    apply_to_daemon_at(&cfg.gateway.control_socket)
}

fn list_peers(path: &Path) -> Result<()> {
    let cfg = Config::load_with(path, ClientKeys::Skip)
        .map_err(|e| format!("{} is invalid:\n{e}", path.display()))?;
    println!(
        "{:<20} {:<18} {:<8} {:<4} {:<9} {:<44} ENDPOINT",
        "NAME", "ADDRESS", "ENABLED", "PSK", "KEEPALIVE", "PUBLIC KEY"
    );
    for p in &cfg.peers {
        println!(
            "{:<20} {:<18} {:<8} {:<4} {:<9} {:<44} {}",
            p.name,
            p.address,
            if p.enabled { "yes" } else { "no" },
            if p.psk_file.is_some() { "yes" } else { "no" },
            p.keepalive,
            p.public_key.to_string(),
            // A site peer's, which the gateway dials; laptops have none.
            p.endpoint.as_ref().map_or("-", |e| e.text.as_str())
        );
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

fn human_age(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m{}s ago", s / 60, s % 60),
        _ => format!("{}h{}m ago", s / 3600, (s % 3600) / 60),
    }
}

fn status(path: &Path, json: bool) -> Result<()> {
    // Read once: the control socket, and below the peers disabled in it.
    let loaded = Config::load_with(path, ClientKeys::Skip);
    let socket = match &loaded {
        Ok(cfg) => cfg.gateway.control_socket.clone(),
        Err(_) => loose_control_socket(path),
    };
    let answer =
        client::request(&socket, &Request::Status, DAEMON_TIMEOUT).map_err(|e| e.to_string())?;
    let st: GatewayStatus = match answer {
        Response::Status(s) => *s,
        Response::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer from ipieced: {other:?}")),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&st).expect("status serializes")
        );
        return Ok(());
    }
    println!(
        "gateway {}: interface {} {} udp/{} up {}s",
        st.name, st.tun_name, st.address, st.listen_port, st.uptime_secs
    );
    println!("  public key: {}", st.public_key);
    println!(
        "  {:<18} {:<22} {:<16} {:>12} {:>12}  ALLOWED IPS",
        "PEER", "ENDPOINT", "HANDSHAKE", "RX", "TX"
    );
    // One write for the table, not one per peer (10,000 of them).
    let mut table = String::with_capacity(st.peers.len() * 100);
    for p in &st.peers {
        use std::fmt::Write as _;
        let _ = writeln!(
            table,
            "  {:<18} {:<22} {:<16} {:>12} {:>12}  {}",
            p.name,
            p.endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "(none)".into()),
            p.last_handshake_age_secs
                .map(human_age)
                .unwrap_or_else(|| "never".into()),
            human_bytes(p.rx_bytes),
            human_bytes(p.tx_bytes),
            p.allowed_ips
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print!("{table}");
    for p in st.peers.iter().filter(|p| p.site) {
        println!(
            "  site peer {}: the gateway initiates to {}, keepalive {}",
            p.name,
            p.configured_endpoint
                .map(|e| e.to_string())
                .unwrap_or_else(|| "(none)".into()),
            match p.gateway_keepalive {
                0 => "off".to_string(),
                k => format!("{k} s"),
            }
        );
    }
    match loaded {
        Ok(cfg) => {
            let disabled: Vec<&str> = cfg
                .peers
                .iter()
                .filter(|p| !p.enabled)
                .map(|p| p.name.as_str())
                .collect();
            if !disabled.is_empty() {
                println!("  disabled in the file: {}", disabled.join(", "));
            }
        }
        Err(e) => println!(
            "  warning: {} does not validate (the daemon runs its last good configuration):\n{e}",
            path.display()
        ),
    }
    for t in &st.tunnels {
        print_tunnel(t);
    }
    if let Some(f) = &st.firewall {
        print_firewall(f);
    }
    if let Some(a) = &st.aws {
        print_aws(a);
    }
    if let Some(l) = &st.lan {
        print_lan(l);
    }
    let w = &st.wireguard;
    let c = &st.counters;
    println!(
        "  counters: udp rx {} | tun rx {} tx {} | malformed {} unknown-peer {} handshake-refused {} cookies {} handshake-limited {} | no-route {} remote-unrouted {} | esp tx {} rx {}",
        c.udp_rx, c.tun_rx, c.tun_tx, w.rx_malformed, w.rx_unknown_peer, w.rx_handshake_refused,
        w.cookies_sent, w.rx_handshake_limited, c.tun_no_route, c.remote_unrouted, c.esp_tx, c.esp_rx
    );
    println!(
        "  mss/mtu: mss-clamped {} | fragmented {} | frag-needed sent {} | too-big dropped {}",
        c.mss_clamped, c.fragmented, c.frag_needed_sent, c.too_big_dropped
    );
    Ok(())
}

fn print_lan(l: &ipiece::lan::LanStatus) {
    let services = match (l.dhcp, l.dns) {
        (true, true) => "DHCP and DNS",
        (true, false) => "DHCP",
        (false, true) => "DNS",
        (false, false) => "nothing",
    };
    let listen: Vec<String> = l.listen.iter().map(ToString::to_string).collect();
    println!(
        "  lan services (dnsmasq, {services} on {}): {}{}, restarts {}{}",
        listen.join(", "),
        l.state,
        l.pid.map(|p| format!(" pid {p}")).unwrap_or_default(),
        l.restarts,
        l.restart_in_secs
            .map(|s| format!(", next start in {s}s"))
            .unwrap_or_default()
    );
    if let Some(e) = &l.last_error {
        println!("    last error: {e}");
    }
    if l.dhcp {
        println!("    DHCP leases: {} (wgctl leases)", l.leases.len());
    }
    if !l.unnamed_peers.is_empty() {
        println!(
            "    warning: peers without a DNS name (their names are no DNS names): {}",
            l.unnamed_peers.join(", ")
        );
    }
}

/// `wgctl leases`: the DHCP leases from the running daemon's dnsmasq.
fn leases(path: &Path, json: bool) -> Result<()> {
    let st: GatewayStatus = match ask(path, &Request::Status)? {
        Response::Status(s) => *s,
        Response::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer from ipieced: {other:?}")),
    };
    let Some(lan) = st.lan.filter(|l| l.dhcp) else {
        return Err(format!(
            "the running ipieced serves no DHCP: add [lan] and [lan.dhcp] to {}",
            path.display()
        ));
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&lan.leases).expect("leases serialize")
        );
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("{:<16} {:<18} {:<24} EXPIRES", "ADDRESS", "MAC", "HOSTNAME");
    for l in &lan.leases {
        let expires = match l.expires {
            None => "never".to_owned(),
            Some(t) if t <= now => "expired".to_owned(),
            Some(t) => format!("in {}s", t - now),
        };
        println!(
            "{:<16} {:<18} {:<24} {expires}",
            l.address.to_string(),
            l.mac,
            l.hostname.as_deref().unwrap_or("-")
        );
    }
    if lan.leases.is_empty() {
        eprintln!("no leases");
    }
    Ok(())
}

fn print_firewall(f: &ipiece::firewall::FirewallStatus) {
    match (&f.interfaces, f.enabled) {
        (_, false) => println!("  firewall: DISABLED"),
        (Some(i), true) => println!("  firewall: on (wan {}, lan {})", i.wan, i.lan),
        (None, true) => println!("  firewall: on"),
    }
    for w in &f.warnings {
        println!("  warning: {w}");
    }
    if let Some(e) = &f.last_error {
        println!("  warning: last reload refused: {e}");
    }
    let dropped: u64 = f
        .kernel
        .iter()
        .filter(|c| c.name.ends_with("default drop") || c.name == "anti-spoofing")
        .map(|c| c.packets)
        .sum();
    let core_rules: u64 = f
        .core
        .iter()
        .filter(|c| c.name.starts_with("rule "))
        .map(|c| c.packets)
        .sum();
    println!("  firewall counters: kernel default drops {dropped} | core rule matches {core_rules} (wgctl firewall show for each rule)");
}

fn print_aws(a: &ipiece::aws::sync::AwsStatus) {
    let secs = |v: Option<u64>| v.map_or("-".to_owned(), |s| format!("{s}s"));
    println!(
        "  aws {} ({}): sync every {}s; last {} ago: {}; next in {}{}",
        a.vpn_connection_id,
        a.region,
        a.sync_interval_secs,
        secs(a.last_sync_secs),
        a.last_result.as_deref().unwrap_or("not run yet"),
        secs(a.next_sync_secs),
        if a.consecutive_failures > 0 {
            format!(" ({} failures in a row)", a.consecutive_failures)
        } else {
            String::new()
        }
    );
    if let Some(e) = &a.last_error {
        println!("    last error: {e}");
    }
    for op in &a.last_applied {
        println!("    applied: {op}");
    }
    for c in &a.conflicts {
        println!("    conflict: {c}");
    }
    for s in &a.stale {
        println!("    stale (wgctl aws sync --prune removes it): {s}");
    }
    for t in &a.tunnels {
        println!(
            "    AWS {} {}{}{}; ipiece {}: {}",
            t.outside_ip,
            t.aws_status,
            if t.aws_message.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.aws_message)
            },
            t.aws_last_change
                .as_deref()
                .map(|c| format!(" since {c}"))
                .unwrap_or_default(),
            t.tunnel.as_deref().unwrap_or("(no tunnel)"),
            t.ipiece_state
        );
        if let Some(w) = &t.warning {
            println!("    warning: {w}");
        }
    }
}

fn print_tunnel(t: &ipiece::ipsec::TunnelStatus) {
    let state = serde_json::to_value(t.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!(
        "  tunnel {} [{state}{}] priority {} {} -> {}",
        t.name,
        if t.carrying {
            ", carrying outbound"
        } else {
            ""
        },
        t.priority,
        t.local.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        t.remote
    );
    let secs =
        |v: Option<u64>, none: &str| v.map(|s| format!("{s}s")).unwrap_or_else(|| none.into());
    if let (Some((i, r)), Some(suite)) = (&t.ike_spis, &t.ike_suite) {
        println!(
            "    IKE {suite} SPIs {i}_i {r}_r, NAT-T {}{}, up {}, last rekey {}, last DPD answer {}{}",
            if t.nat_t { "on" } else { "off" },
            if t.local_behind_nat { " (we are behind NAT)" } else { "" },
            secs(t.established_secs, "-"),
            secs(t.last_rekey_secs, "never"),
            secs(t.last_dpd_answer_secs, "never"),
            t.inner_mtu
                .map(|m| format!(", tunnel MTU {m}"))
                .unwrap_or_default(),
        );
    }
    for c in &t.children {
        println!(
            "    ESP {} SPIs {}_i {}_o{} age {}s: in {} pkts / {}, out {} pkts / {}, replayed {}, auth failed {}",
            c.suite,
            c.spi_in,
            c.spi_out,
            if c.active { " (active)" } else { "" },
            c.age_secs,
            c.counters.packets_in,
            human_bytes(c.counters.bytes_in),
            c.counters.packets_out,
            human_bytes(c.counters.bytes_out),
            c.counters.replayed,
            c.counters.integrity_failed
        );
    }
    print_probe(t);
    if let Some(e) = &t.last_error {
        println!("    last error: {e}");
    }
}

/// `2026-12-05T06:05:50Z` for seconds since the Unix epoch (Howard
/// Hinnant's civil_from_days).
fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The probe line of a tunnel, why it carries or not, and its last switch.
fn print_probe(t: &ipiece::ipsec::TunnelStatus) {
    if let Some(p) = &t.probe {
        let health = serde_json::to_value(p.health)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |m| format!("{m:.1} ms"));
        let mut line = format!(
            "    probe {} -> {} every {} ms: {health}, RTT last {} avg {}, loss {:.1}% of {}",
            p.local,
            p.remote,
            p.interval_ms,
            ms(p.rtt_last_ms),
            ms(p.rtt_avg_ms),
            p.loss_percent,
            p.window
        );
        if p.lost_in_a_row > 0 {
            line.push_str(&format!(", {} lost in a row", p.lost_in_a_row));
        }
        if let Some(left) = p.hold_down_left_secs {
            line.push_str(&format!(", hold-down {left}s left"));
        }
        println!("{line}");
        if p.unanswered {
            println!(
                "    probing unanswered: the peer answers no probe; judged by the ESP it sends \
                 (last {})",
                p.last_esp_in_secs
                    .map_or("never".to_string(), |s| format!("{s}s ago"))
            );
        }
        if let Some(why) = &p.skipped {
            println!("    probes not sent: {why}");
        }
    }
    if !t.carrying_reason.is_empty() && (t.carrying || t.probe.is_some() || t.switches_away > 0) {
        println!(
            "    {}: {}",
            if t.carrying {
                "carrying"
            } else {
                "not carrying"
            },
            t.carrying_reason
        );
    }
    if let Some(s) = &t.last_switch {
        println!(
            "    switches: {} away, {} to; last {}s ago{}, {} -> {}: {}",
            t.switches_away,
            t.switches_to,
            s.secs_ago,
            s.at_unix
                .map(|at| format!(" ({})", utc_time(at)))
                .unwrap_or_default(),
            s.from.as_deref().unwrap_or("(none)"),
            s.to.as_deref().unwrap_or("(none)"),
            s.reason
        );
    }
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_time_formats_rfc3339() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_796_451_481), "2026-12-05T06:18:01Z");
        assert_eq!(utc_time(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
