//! `wgctl aws plan` / `sync` against moto's EC2 server on 127.0.0.1, over
//! HTTP with the real aws-sdk-ec2 (issue 4, acceptance 1 without the online
//! import): the test creates a VPC, a VGW (attached), a customer gateway, a
//! static VPN connection and a route table with a foreign route; `plan`
//! shows the missing routes and exits 2; `sync` creates them; a second
//! `plan` exits 0; a prefix removed from the TOML is left alone without
//! `--prune` and removed with it; the foreign route is never touched. Error
//! paths: no credentials, an unreachable endpoint, an unknown VPN connection
//! each give a clear message within a bounded time.
//!
//! moto runs from `tests/moto/server.py` (which adds the EC2 calls moto
//! lacks) in the venv `scripts/test.sh` creates: `$CARGO_TARGET_DIR/moto-venv`
//! (or `IPIECE_MOTO_PYTHON`). `IPIECE_SKIP_MOTO=1` skips these tests when
//! it is missing. No root, no daemon.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{GatewayType, VpnConnectionOptionsSpecification};
use aws_sdk_ec2::Client;

/// The venv's python: `IPIECE_MOTO_PYTHON`, else `<target>/moto-venv/bin/python`.
fn moto_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("IPIECE_MOTO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let target = match std::env::var("CARGO_TARGET_DIR") {
        Ok(t) => PathBuf::from(t),
        // <target>/debug/deps/aws_moto-<hash>
        Err(_) => std::env::current_exe()
            .ok()?
            .parent()?
            .parent()?
            .parent()?
            .to_path_buf(),
    };
    let p = target.join("moto-venv/bin/python");
    p.exists().then_some(p)
}

/// moto's server, stopped (stdin closed, then killed) on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
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
        let mut child = Command::new(python)
            .arg(script)
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
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
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
}

async fn world(ec2: &Client) -> World {
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
    World { vgw, vpn, rtb, igw }
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
        let text = format!(
            "[gateway]\nname = \"gw\"\npublic_endpoint = \"198.51.100.10\"\n{LANS}\n\
             control_socket = \"control.sock\"\n\n[wireguard]\naddress = \"172.16.60.1/24\"\n\
             private_key_file = \"wg.key\"\nremote_prefixes = [\"10.0.0.0/16\"]\n\n[aws]\n{aws}"
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
        if credentials {
            cmd.env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing");
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
