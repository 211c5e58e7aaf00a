//! The AWS side (issue 4) against moto's EC2 server, over HTTP with the real
//! aws-sdk-ec2:
//!
//! - `wgctl aws import VPN_ID`: the connection's XML, tunnel options (a
//!   narrowed tunnel and a default one) and VPC CIDR blocks become two
//!   tunnels, 0600 PSK files, remote prefixes and `[aws]`; a re-import
//!   changes nothing; then `plan` exits 2, `sync` creates, `plan` exits 0.
//!   A failed import (unknown connection, unreachable endpoint, no region, a
//!   malformed ID) leaves the file untouched.
//! - `wgctl aws plan` / `sync`: the test creates a VPC, a VGW (attached), a
//!   customer gateway, a static VPN connection and a route table with a
//!   foreign route; `plan` shows the missing routes and exits 2; `sync`
//!   creates them; a second `plan` exits 0; a prefix removed from the TOML is
//!   left alone without `--prune` and removed with it; the foreign route is
//!   never touched; route propagation.
//! - Errors: no credentials, an unreachable endpoint, an unknown VPN
//!   connection, and, with IAM enforced by moto, an access-denied answer
//!   naming the missing action and an unknown access key.
//! - The daemon (root, a network namespace with moto inside): its first
//!   round creates the routes, a reload syncs at once, `wgctl status` shows
//!   AWS's telemetry beside the tunnels and warns after two intervals of
//!   disagreement, and a failed round is reported.
//!
//! moto runs from `tests/moto/server.py` (which adds the EC2 calls and
//! fields moto lacks) in the venv `scripts/test.sh` creates:
//! `$CARGO_TARGET_DIR/moto-venv` (or `IPIECE_MOTO_PYTHON`).
//! `IPIECE_SKIP_MOTO=1` skips these tests when it is missing.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{
    GatewayType, Phase1DhGroupNumbersRequestListValue, Phase1EncryptionAlgorithmsRequestListValue,
    Phase1IntegrityAlgorithmsRequestListValue, VpnConnectionOptionsSpecification,
    VpnTunnelOptionsSpecification,
};
use aws_sdk_ec2::Client;

mod common;

use common::moto_python;

/// moto's server, stopped (stdin closed, then killed) on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        Moto::start_with(&[])
    }

    /// moto with extra environment variables (`INITIAL_NO_AUTH_ACTION_COUNT`).
    fn start_with(envs: &[(&str, &str)]) -> Option<Moto> {
        Moto::start_in(None, envs)
    }

    /// moto on 127.0.0.1 of `ns` (the root namespace's without one).
    fn start_in(ns: Option<&common::Netns>, envs: &[(&str, &str)]) -> Option<Moto> {
        let Some(python) = moto_python() else {
            if std::env::var("IPIECE_SKIP_MOTO").is_ok_and(|v| v == "1") {
                eprintln!("skipped: no moto venv (IPIECE_SKIP_MOTO=1)");
                return None;
            }
            panic!(
                "no moto venv: run scripts/test.sh, or python3 -m venv $CARGO_TARGET_DIR/moto-venv \
                 && $CARGO_TARGET_DIR/moto-venv/bin/pip install 'moto[server]==5.2.5' \
                 (or set IPIECE_MOTO_PYTHON; IPIECE_SKIP_MOTO=1 skips)"
            );
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto/server.py");
        let mut cmd = match ns {
            Some(ns) => ns.command(python.to_str().unwrap(), &[]),
            None => Command::new(python),
        };
        let mut child = cmd
            .arg(script)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read moto's port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("moto did not start: {line:?}"));
        Some(Moto { child, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> Client {
        self.client_as("testing", "testing")
    }

    fn client_as(&self, key_id: &str, secret: &str) -> Client {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new(key_id, secret, None, None, "static"))
            .build();
        Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The AWS side: VPC, attached VGW, customer gateway, static VPN connection,
/// a route table with a foreign route (192.168.50.0/24 to an internet gateway).
struct World {
    vgw: String,
    vpn: String,
    rtb: String,
    igw: String,
    vpc: String,
}

async fn world(ec2: &Client) -> World {
    world_with(ec2, None).await
}

/// [`world`], the VPN connection created with these tunnel options.
async fn world_with(ec2: &Client, tunnels: Option<Vec<VpnTunnelOptionsSpecification>>) -> World {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let vgw = ec2
        .create_vpn_gateway()
        .r#type(GatewayType::Ipsec1)
        .send()
        .await
        .unwrap()
        .vpn_gateway
        .unwrap()
        .vpn_gateway_id
        .unwrap();
    ec2.attach_vpn_gateway()
        .vpc_id(&vpc)
        .vpn_gateway_id(&vgw)
        .send()
        .await
        .unwrap();
    let cgw = ec2
        .create_customer_gateway()
        .r#type(GatewayType::Ipsec1)
        .public_ip("198.51.100.10")
        .bgp_asn(65000)
        .send()
        .await
        .unwrap()
        .customer_gateway
        .unwrap()
        .customer_gateway_id
        .unwrap();
    let vpn = ec2
        .create_vpn_connection()
        .r#type("ipsec.1")
        .customer_gateway_id(cgw)
        .vpn_gateway_id(&vgw)
        .options(
            VpnConnectionOptionsSpecification::builder()
                .static_routes_only(true)
                .set_tunnel_options(tunnels)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpn_connection
        .unwrap()
        .vpn_connection_id
        .unwrap();
    let rtb = ec2
        .create_route_table()
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .route_table
        .unwrap()
        .route_table_id
        .unwrap();
    let igw = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    ec2.attach_internet_gateway()
        .vpc_id(&vpc)
        .internet_gateway_id(&igw)
        .send()
        .await
        .unwrap();
    ec2.create_route()
        .route_table_id(&rtb)
        .destination_cidr_block("192.168.50.0/24")
        .gateway_id(&igw)
        .send()
        .await
        .unwrap();
    World {
        vgw,
        vpn,
        rtb,
        igw,
        vpc,
    }
}

/// (VPN connection static routes, route table routes as (prefix, target)).
async fn aws_routes(ec2: &Client, w: &World) -> (Vec<String>, Vec<(String, String)>) {
    let vpn = ec2
        .describe_vpn_connections()
        .vpn_connection_ids(&w.vpn)
        .send()
        .await
        .unwrap();
    let mut static_routes: Vec<String> = vpn.vpn_connections()[0]
        .routes()
        .iter()
        .filter_map(|r| r.destination_cidr_block().map(str::to_owned))
        .collect();
    static_routes.sort();
    let rt = ec2
        .describe_route_tables()
        .route_table_ids(&w.rtb)
        .send()
        .await
        .unwrap();
    let mut routes: Vec<(String, String)> = rt.route_tables()[0]
        .routes()
        .iter()
        .map(|r| {
            (
                r.destination_cidr_block().unwrap_or_default().to_owned(),
                r.gateway_id().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    routes.sort();
    (static_routes, routes)
}

/// A gateway configuration directory under the temp dir, removed on drop.
struct Dir(PathBuf);

const LANS: &str = "lan_prefixes = [\"172.16.4.0/24\", \"172.16.5.0/24\"]";

impl Dir {
    fn new(aws: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ipiece-aws-moto-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("home")).unwrap();
        let key = dir.join("wg.key");
        fs::write(&key, "YE9gsSZ0E6tpkCfJrIvSdMTp6SsAB4N2vR4CZ8Lb7mI=\n").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let aws = if aws.is_empty() {
            String::new()
        } else {
            format!("\n[aws]\n{aws}")
        };
        let text = format!(
            "# the lab gateway\n[gateway]\nname = \"gw\"\npublic_endpoint = \"198.51.100.10\"\n{LANS}\n\
             control_socket = \"control.sock\"\n\n[wireguard]\naddress = \"172.16.60.1/24\"\n\
             private_key_file = \"wg.key\"\nremote_prefixes = [\"10.0.0.0/16\"] # the VPC\n{aws}"
        );
        fs::write(dir.join("gateway.toml"), text).unwrap();
        Dir(dir)
    }

    fn edit(&self, from: &str, to: &str) {
        let p = self.0.join("gateway.toml");
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains(from));
        fs::write(&p, text.replace(from, to)).unwrap();
    }

    /// Runs wgctl with the test credentials (or none), an empty HOME (no
    /// shared profile) and IMDS off; returns (exit code, stdout, stderr, time).
    fn wgctl(&self, args: &[&str], credentials: bool) -> (i32, String, String, Duration) {
        self.wgctl_as(args, credentials.then_some(("testing", "testing")))
    }

    /// [`Dir::wgctl`] with these credentials (or none).
    fn wgctl_as(
        &self,
        args: &[&str],
        credentials: Option<(&str, &str)>,
    ) -> (i32, String, String, Duration) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgctl"));
        cmd.arg("--config")
            .arg(self.0.join("gateway.toml"))
            .args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env_remove("IPIECE_CONFIG")
            .env("HOME", self.0.join("home"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("IPIECE_AWS_NO_RETRY", "1");
        if let Some((key_id, secret)) = credentials {
            cmd.env("AWS_ACCESS_KEY_ID", key_id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let t = Instant::now();
        let out = cmd.output().expect("run wgctl");
        let elapsed = t.elapsed();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn aws_section(moto: &Moto, w: &World) -> String {
    format!(
        "region = \"us-east-1\"\nvpn_connection_id = \"{}\"\nroute_tables = [\"{}\"]\n\
         endpoint_url = \"{}\"\n",
        w.vpn,
        w.rtb,
        moto.url()
    )
}

#[test]
fn plan_sync_prune_and_foreign_routes() {
    let Some(moto) = Moto::start() else { return };
    let rt = rt();
    let ec2 = moto.client();
    let w = rt.block_on(world(&ec2));
    let dir = Dir::new(&aws_section(&moto, &w));
    let foreign = ("192.168.50.0/24".to_owned(), w.igw.clone());

    // Everything is missing.
    let (code, out, err, _) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 2, "{out}\n{err}");
    for p in ["172.16.4.0/24", "172.16.5.0/24", "172.16.60.0/24"] {
        assert!(out.contains(p), "{p} not in the plan:\n{out}");
    }
    assert!(out.contains(&w.vpn) && out.contains(&w.rtb), "{out}");
    assert!(!out.contains("192.168.50.0/24"), "{out}");
    // plan changes nothing.
    let (vpn_routes, _) = rt.block_on(aws_routes(&ec2, &w));
    assert!(vpn_routes.is_empty());

    // sync creates them.
    let (code, out, err, _) = dir.wgctl(&["aws", "sync"], true);
    assert_eq!(code, 0, "{out}\n{err}");
    let want = vec![
        "172.16.4.0/24".to_owned(),
        "172.16.5.0/24".to_owned(),
        "172.16.60.0/24".to_owned(),
    ];
    let (vpn_routes, table) = rt.block_on(aws_routes(&ec2, &w));
    assert_eq!(vpn_routes, want);
    for p in &want {
        assert!(
            table.contains(&(p.clone(), w.vgw.clone())),
            "{p}: {table:?}"
        );
    }
    assert!(table.contains(&foreign), "{table:?}");

    // In step.
    let (code, out, err, _) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 0, "{out}\n{err}");

    // A prefix removed from the file is left alone without --prune...
    dir.edit(LANS, "lan_prefixes = [\"172.16.4.0/24\"]");
    let (code, out, err, _) = dir.wgctl(&["aws", "sync"], true);
    assert_eq!(code, 0, "{out}\n{err}");
    let (vpn_routes, table) = rt.block_on(aws_routes(&ec2, &w));
    assert_eq!(vpn_routes, want);
    assert!(table.contains(&("172.16.5.0/24".to_owned(), w.vgw.clone())));
    let (code, out, err, _) = dir.wgctl(&["aws", "plan", "--prune"], true);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("172.16.5.0/24"), "{out}");

    // ... and removed with it; the foreign route stays.
    let (code, out, err, _) = dir.wgctl(&["aws", "sync", "--prune"], true);
    assert_eq!(code, 0, "{out}\n{err}");
    let (vpn_routes, table) = rt.block_on(aws_routes(&ec2, &w));
    assert_eq!(vpn_routes, vec!["172.16.4.0/24", "172.16.60.0/24"]);
    assert!(
        !table.iter().any(|(p, _)| p == "172.16.5.0/24"),
        "{table:?}"
    );
    assert!(table.contains(&foreign), "{table:?}");
    let (code, out, err, _) = dir.wgctl(&["aws", "plan", "--prune"], true);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn propagation_and_all_tables() {
    let Some(moto) = Moto::start() else { return };
    let rt = rt();
    let ec2 = moto.client();
    let w = rt.block_on(world(&ec2));
    let aws = aws_section(&moto, &w).replace(
        &format!("route_tables = [\"{}\"]", w.rtb),
        "route_tables = \"all\"\nrouting = \"propagation\"",
    );
    let dir = Dir::new(&aws);
    let (code, out, err, _) = dir.wgctl(&["aws", "sync"], true);
    assert_eq!(code, 0, "{out}\n{err}");
    let (vpn_routes, table) = rt.block_on(aws_routes(&ec2, &w));
    assert_eq!(vpn_routes.len(), 3);
    // Propagated from the VGW, not created.
    assert!(table.contains(&("172.16.4.0/24".to_owned(), w.vgw.clone())));
    let (code, out, err, _) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn no_credentials_is_clear_and_fast() {
    // No server needed: the credential chain fails before any call.
    let dir = Dir::new(
        "region = \"us-east-1\"\nvpn_connection_id = \"vpn-12345678\"\n\
         endpoint_url = \"http://127.0.0.1:9\"\n",
    );
    let (code, out, err, t) = dir.wgctl(&["aws", "plan"], false);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(t < Duration::from_secs(15), "took {t:?}");
}

#[test]
fn unreachable_endpoint_is_clear_and_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = Dir::new(&format!(
        "region = \"us-east-1\"\nvpn_connection_id = \"vpn-12345678\"\n\
         endpoint_url = \"http://127.0.0.1:{port}\"\n"
    ));
    let (code, out, err, t) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("is unreachable"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(t < Duration::from_secs(8), "took {t:?}");
}

#[test]
fn unknown_vpn_connection_names_id_and_region() {
    let Some(moto) = Moto::start() else { return };
    let dir = Dir::new(&format!(
        "region = \"us-east-1\"\nvpn_connection_id = \"vpn-0123456789abcdef0\"\n\
         endpoint_url = \"{}\"\n",
        moto.url()
    ));
    let (code, out, err, t) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("VPN connection vpn-0123456789abcdef0 not found in region us-east-1"),
        "{err}"
    );
    assert!(t < Duration::from_secs(15), "took {t:?}");
}

/// The first tunnel narrowed at AWS: its own inside CIDR and key, phase 1
/// AES-256 / SHA2-256 / group 14 only, DPD timeout 40 s, AWS initiating.
fn narrowed_tunnel() -> VpnTunnelOptionsSpecification {
    VpnTunnelOptionsSpecification::builder()
        .tunnel_inside_cidr("169.254.44.0/30")
        .pre_shared_key("Narrowed.Key_0123456789")
        .phase1_encryption_algorithms(
            Phase1EncryptionAlgorithmsRequestListValue::builder()
                .value("AES256")
                .build(),
        )
        .phase1_integrity_algorithms(
            Phase1IntegrityAlgorithmsRequestListValue::builder()
                .value("SHA2-256")
                .build(),
        )
        .phase1_dh_group_numbers(
            Phase1DhGroupNumbersRequestListValue::builder()
                .value(14)
                .build(),
        )
        .dpd_timeout_seconds(40)
        .startup_action("start")
        .build()
}

fn toml(dir: &Dir) -> toml::Table {
    let text = fs::read_to_string(dir.0.join("gateway.toml")).unwrap();
    text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn online_import_reads_tunnel_options_and_vpc_then_plan_and_sync() {
    let Some(moto) = Moto::start() else { return };
    let rt = rt();
    let ec2 = moto.client();
    let w = rt.block_on(world_with(
        &ec2,
        Some(vec![
            narrowed_tunnel(),
            VpnTunnelOptionsSpecification::builder().build(),
        ]),
    ));
    rt.block_on(
        ec2.associate_vpc_cidr_block()
            .vpc_id(&w.vpc)
            .cidr_block("10.1.0.0/16")
            .send(),
    )
    .unwrap();
    let described = rt
        .block_on(
            ec2.describe_vpn_connections()
                .vpn_connection_ids(&w.vpn)
                .send(),
        )
        .unwrap();
    let opts = described.vpn_connections()[0]
        .options()
        .unwrap()
        .tunnel_options()
        .to_vec();
    let second_psk = opts[1].pre_shared_key().unwrap().to_owned();
    let (ip1, ip2) = (
        opts[0].outside_ip_address().unwrap().to_owned(),
        opts[1].outside_ip_address().unwrap().to_owned(),
    );

    let dir = Dir::new("");
    let url = moto.url();
    let (code, out, err, t) = dir.wgctl(&import_args(&w.vpn, &url), true);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(t < Duration::from_secs(20), "took {t:?}");
    for secret in ["Narrowed.Key_0123456789", second_psk.as_str()] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "a key was printed:\n{out}\n{err}"
        );
    }
    assert!(out.contains("added 10.1.0.0/16"), "{out}");

    let doc = toml(&dir);
    let tunnels = doc["ipsec"]["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), 2, "{doc:#?}");
    let t1 = tunnels[0].as_table().unwrap();
    let t2 = tunnels[1].as_table().unwrap();
    assert_eq!(t1["name"].as_str(), Some("aws-1"));
    assert_eq!(t1["remote_address"].as_str(), Some(ip1.as_str()));
    assert_eq!(t2["remote_address"].as_str(), Some(ip2.as_str()));
    // The tunnel options win over the XML's sample values.
    assert_eq!(t1["inside_cidr"].as_str(), Some("169.254.44.0/30"));
    assert_eq!(t1["ike_proposals"].as_str(), Some("aes256-sha256-modp2048"));
    assert!(t1.get("esp_proposals").is_none(), "{t1:#?}");
    assert_eq!(t1["dpd_timeout"].as_integer(), Some(40));
    assert_eq!(t1["dpd_interval"].as_integer(), Some(10));
    assert_eq!(t1["start_action"].as_str(), Some("wait"));
    // AWS's defaults leave ipiece's defaults.
    assert!(t2.get("ike_proposals").is_none(), "{t2:#?}");
    assert_eq!(t2["dpd_timeout"].as_integer(), Some(30));
    assert_eq!(t2["start_action"].as_str(), Some("initiate"));
    for (t, key) in [(t1, "Narrowed.Key_0123456789"), (t2, second_psk.as_str())] {
        let f = dir.0.join(t["psk_file"].as_str().unwrap());
        assert_eq!(fs::read_to_string(&f).unwrap().trim_end(), key);
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let prefixes: Vec<&str> = doc["wireguard"]["remote_prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(prefixes, ["10.0.0.0/16", "10.1.0.0/16"]);
    let aws = doc["aws"].as_table().unwrap();
    assert_eq!(aws["vpn_connection_id"].as_str(), Some(w.vpn.as_str()));
    assert_eq!(aws["region"].as_str(), Some("us-east-1"));
    assert_eq!(aws["endpoint_url"].as_str(), Some(url.as_str()));
    let text = fs::read_to_string(dir.0.join("gateway.toml")).unwrap();
    assert!(
        text.starts_with("# the lab gateway\n") && text.contains("# the VPC"),
        "{text}"
    );
    let (code, out, err, _) = dir.wgctl(&["check"], false);
    assert_eq!(code, 0, "{out}\n{err}");

    // Importing again changes nothing and adds no tunnel; the region and
    // endpoint now come from [aws].
    let (code, out, err, _) = dir.wgctl(&["aws", "import", w.vpn.as_str()], true);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(
        fs::read_to_string(dir.0.join("gateway.toml")).unwrap(),
        text
    );

    // import -> plan -> sync.
    let (code, out, err, _) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 2, "{out}\n{err}");
    let (code, out, err, _) = dir.wgctl(&["aws", "sync"], true);
    assert_eq!(code, 0, "{out}\n{err}");
    let (vpn_routes, _) = rt.block_on(aws_routes(&ec2, &w));
    assert_eq!(
        vpn_routes,
        vec!["172.16.4.0/24", "172.16.5.0/24", "172.16.60.0/24"]
    );
    let (code, out, err, _) = dir.wgctl(&["aws", "plan"], true);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// `aws import ID --region us-east-1 --endpoint-url URL`.
fn import_args<'a>(id: &'a str, url: &'a str) -> [&'a str; 7] {
    [
        "aws",
        "import",
        id,
        "--region",
        "us-east-1",
        "--endpoint-url",
        url,
    ]
}

#[test]
fn failed_online_import_leaves_the_file_untouched() {
    let Some(moto) = Moto::start() else { return };
    let dir = Dir::new("");
    let before = fs::read_to_string(dir.0.join("gateway.toml")).unwrap();
    let url = moto.url();
    let (code, out, err, t) = dir.wgctl(&import_args("vpn-0123456789abcdef0", &url), true);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("VPN connection vpn-0123456789abcdef0 not found in region us-east-1"),
        "{err}"
    );
    assert!(t < Duration::from_secs(15), "took {t:?}");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = format!("http://127.0.0.1:{port}");
    let (code, out, err, t) = dir.wgctl(&import_args("vpn-0123456789abcdef0", &closed), true);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("is unreachable"), "{err}");
    assert!(t < Duration::from_secs(8), "took {t:?}");
    let (code, out, err, _) = dir.wgctl(&["aws", "import", "vpn-12345678"], true);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("no region"), "{err}");
    let (code, out, err, _) = dir.wgctl(
        &["aws", "import", "vpc-12345678", "--region", "us-east-1"],
        true,
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("\"vpc-12345678\""), "{err}");
    assert_eq!(
        fs::read_to_string(dir.0.join("gateway.toml")).unwrap(),
        before
    );
    assert!(!dir.0.join("ipsec").exists());
    assert!(!dir.0.join("gateway.toml.bak").exists());
}

#[test]
fn access_denied_names_the_missing_iam_action() {
    // moto enforces IAM after three requests: iam_users.py makes them.
    let Some(moto) = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]) else {
        return;
    };
    let python = moto_python().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/moto/iam_users.py");
    let out = Command::new(python)
        .arg(script)
        .arg(moto.url())
        .output()
        .expect("run iam_users.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pair = |who: &str| {
        (
            keys[who][0].as_str().unwrap().to_owned(),
            keys[who][1].as_str().unwrap().to_owned(),
        )
    };
    let (admin_id, admin_secret) = pair("admin");
    let (id, secret) = pair("planner");
    let rt = rt();
    let w = rt.block_on(world(&moto.client_as(&admin_id, &admin_secret)));
    let dir = Dir::new(&aws_section(&moto, &w));

    // Describe* is allowed: plan works.
    let (code, out, err, _) = dir.wgctl_as(&["aws", "plan"], Some((&id, &secret)));
    assert_eq!(code, 2, "{out}\n{err}");
    // Creating routes is not: sync names the action to add.
    let (code, out, err, t) = dir.wgctl_as(&["aws", "sync"], Some((&id, &secret)));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("access denied") && err.contains("`ec2:CreateVpnConnectionRoute`"),
        "{err}"
    );
    assert!(t < Duration::from_secs(15), "took {t:?}");
    // A key AWS does not know.
    let (code, out, err, _) = dir.wgctl_as(&["aws", "plan"], Some(("AKIAUNKNOWN0000000000", "x")));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("AWS refused the credentials"), "{err}");
    let (vpn_routes, _) = rt.block_on(aws_routes(&moto.client_as(&admin_id, &admin_secret), &w));
    assert!(vpn_routes.is_empty(), "{vpn_routes:?}");
}

/// `[aws]` of the daemon test: the table managed, sync every 10 s.
fn set_aws_keys(path: &Path, rtb: &str, lans: &[&str]) {
    let text = fs::read_to_string(path).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    let mut tables = toml_edit::Array::new();
    tables.push(rtb);
    doc["aws"]["route_tables"] = toml_edit::value(tables);
    doc["aws"]["sync_interval"] = toml_edit::value(10);
    let mut arr = toml_edit::Array::new();
    for l in lans {
        arr.push(*l);
    }
    doc["gateway"]["lan_prefixes"] = toml_edit::value(arr);
    fs::write(path, doc.to_string()).unwrap();
}

#[test]
fn daemon_syncs_reports_telemetry_and_warns_when_aws_disagrees() {
    use common::{in_netns, need_root, start_ipieced_env, wait_until, GwConfig, Netns, TempDir};
    if !need_root("daemon_syncs_reports_telemetry_and_warns_when_aws_disagrees") {
        return;
    }
    if moto_python().is_none() && std::env::var("IPIECE_SKIP_MOTO").is_ok_and(|v| v == "1") {
        return;
    }
    let ns = Netns::new("awsd");
    let tmp = TempDir::new("aws-daemon");
    let telemetry = tmp.join("telemetry.json");
    fs::write(&telemetry, "{}").unwrap();
    let moto = Moto::start_in(
        Some(&ns),
        &[("IPIECE_MOTO_TELEMETRY", telemetry.to_str().unwrap())],
    )
    .expect("moto");
    let url = moto.url();
    let w = in_netns(&ns, || rt().block_on(world(&moto.client())));
    let routes = || in_netns(&ns, || rt().block_on(aws_routes(&moto.client(), &w)));
    let ips: Vec<String> = in_netns(&ns, || {
        rt().block_on(async {
            let d = moto
                .client()
                .describe_vpn_connections()
                .vpn_connection_ids(&w.vpn)
                .send()
                .await
                .unwrap();
            d.vpn_connections()[0]
                .vgw_telemetry()
                .iter()
                .map(|t| t.outside_ip_address().unwrap().to_owned())
                .collect()
        })
    });

    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let creds = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("IPIECE_AWS_NO_RETRY", "1"),
        ("HOME", home.to_str().unwrap()),
    ];
    let cfg = GwConfig::init(&tmp.join("gw"), "198.51.100.10");
    let wgctl = |args: &[&str]| {
        let mut v = vec!["--config", cfg.path.to_str().unwrap()];
        v.extend_from_slice(args);
        let mut c = ns.command(common::WGCTL, &v);
        c.envs(creds.iter().copied());
        common::run_cmd(&mut c, None, Duration::from_secs(30))
    };
    let out = wgctl(&import_args(&w.vpn, &url));
    assert!(out.ok(), "import: {out}");
    set_aws_keys(&cfg.path, &w.rtb, &["172.16.4.0/24"]);
    let d = start_ipieced_env(&ns, &cfg, &creds);

    // The first round runs at start and creates the routes.
    let want = vec!["172.16.4.0/24".to_owned(), "172.16.60.0/24".to_owned()];
    let synced = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
        let (vpn_routes, table) = routes();
        vpn_routes == want
            && want
                .iter()
                .all(|p| table.contains(&(p.clone(), w.vgw.clone())))
    });
    assert!(synced, "{:?}\n{}", routes(), d.log_text());
    let aws_status = |cfg: &GwConfig| cfg.status_json(&ns)["aws"].clone();
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
        aws_status(&cfg)["tunnels"]
            .as_array()
            .is_some_and(|t| t.len() == 2)
    });
    let st = aws_status(&cfg);
    assert!(ok, "{st:#}");
    assert_eq!(st["vpn_connection_id"].as_str(), Some(w.vpn.as_str()));
    assert_eq!(st["consecutive_failures"].as_u64(), Some(0), "{st:#}");
    for (i, t) in st["tunnels"].as_array().unwrap().iter().enumerate() {
        assert_eq!(t["outside_ip"].as_str(), Some(ips[i].as_str()), "{st:#}");
        assert_eq!(t["aws_status"].as_str(), Some("DOWN"), "{st:#}");
        assert_eq!(t["aws_message"].as_str(), Some("IPSEC IS DOWN"), "{st:#}");
        assert_eq!(
            t["tunnel"].as_str(),
            Some(format!("aws-{}", i + 1).as_str())
        );
        assert!(
            t["disagree_secs"].is_null() && t["warning"].is_null(),
            "{st:#}"
        );
    }
    let text = cfg.wgctl(&ns, &["status"]);
    assert!(text.ok(), "{text}");
    assert!(
        text.stdout
            .contains(&format!("aws {} (us-east-1): sync every 10s", w.vpn))
            && text
                .stdout
                .contains(&format!("AWS {} DOWN (IPSEC IS DOWN)", ips[0])),
        "{text}"
    );

    // A reload that adds a LAN prefix syncs at once, not at the next
    // interval: reload only when the next regular round is at least 6 s
    // away, and require the route within 3 s.
    let far = wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        aws_status(&cfg)["next_sync_secs"].as_u64() >= Some(6)
    });
    assert!(far, "{:#}", aws_status(&cfg));
    set_aws_keys(&cfg.path, &w.rtb, &["172.16.4.0/24", "172.16.5.0/24"]);
    let out = cfg.wgctl(&ns, &["reload"]);
    assert!(out.ok(), "{out}");
    let t0 = Instant::now();
    let synced = wait_until(Duration::from_secs(3), Duration::from_millis(100), || {
        routes().0.contains(&"172.16.5.0/24".to_owned())
    });
    assert!(
        synced,
        "not synced {:?} after the reload\n{}",
        t0.elapsed(),
        d.log_text()
    );

    // AWS says tunnel 1 is UP while ipiece has no SA: after two intervals
    // (20 s) of disagreement, status and log warn; tunnel 2 agrees (DOWN).
    fs::write(&telemetry, format!("{{\"{}\": \"UP\"}}", ips[0])).unwrap();
    let warned = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        !aws_status(&cfg)["tunnels"][0]["warning"].is_null()
    });
    let st = aws_status(&cfg);
    assert!(warned, "{st:#}\n{}", d.log_text());
    let t1 = &st["tunnels"][0];
    assert_eq!(t1["aws_status"].as_str(), Some("UP"));
    assert_ne!(t1["ipiece_state"].as_str(), Some("up"));
    assert!(t1["disagree_secs"].as_u64().unwrap() >= 20, "{st:#}");
    assert!(t1["warning"].as_str().unwrap().contains(&ips[0]), "{st:#}");
    assert!(st["tunnels"][1]["warning"].is_null(), "{st:#}");
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(200), || d
            .log_text()
            .contains(&format!("AWS reports {} UP", ips[0]))),
        "{}",
        d.log_text()
    );

    // AWS unreachable: the round fails, is reported, and is retried.
    drop(moto);
    let failed = wait_until(Duration::from_secs(15), Duration::from_millis(500), || {
        aws_status(&cfg)["consecutive_failures"].as_u64() >= Some(1)
    });
    let st = aws_status(&cfg);
    assert!(failed, "{st:#}\n{}", d.log_text());
    assert_eq!(st["last_result"].as_str(), Some("failed"));
    assert!(
        st["last_error"].as_str().unwrap().contains("unreachable"),
        "{st:#}"
    );
    assert!(st["next_sync_secs"].as_u64().unwrap() <= 11, "{st:#}");
    assert!(ns.running(d.pid), "{}", d.log_text());
}
