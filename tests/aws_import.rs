//! `wgctl aws import --from-xml` on a temporary copy of the seed
//! configuration, with the XML fixtures in `tests/fixtures/aws/`: the tunnels
//! and PSK files are written, a second import (and one of the same connection
//! with its tunnels in the other order, or padded with whitespace) changes
//! nothing, `wgctl check` passes; every refused import (Secrets Manager ARN,
//! malformed XML, a result that does not validate, a name taken by another
//! tunnel) leaves the TOML byte-for-byte as it was and creates no PSK file.
//! No root, no network, no daemon (the control socket points into the temp
//! directory, where nothing listens).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const SEED: &str = include_str!("../configs/gateway.toml");
/// The PSKs in static.xml, by ascending AWS outside address.
const PSK_1: &str = "Xk3v9_Lq.Rm2TzP8wYb4NcH7sJd1FgA5";
const PSK_2: &str = "pR7.tWq2_ZsV9mKe4LhB8xNc3JgY6dFu";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/aws")
        .join(name)
}

/// A configuration directory under the temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ipiece-aws-import-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // The seed, with the control socket moved into the directory (no
        // daemon listens there) and a key file.
        let text = SEED.replace(
            "control_socket = \"/run/ipiece/control.sock\"",
            "control_socket = \"control.sock\"",
        );
        assert_ne!(text, SEED, "the seed's control_socket line changed");
        fs::write(dir.join("gateway.toml"), text).unwrap();
        let key = dir.join("wg.key");
        fs::write(&key, "YE9gsSZ0E6tpkCfJrIvSdMTp6SsAB4N2vR4CZ8Lb7mI=\n").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        Dir(dir)
    }

    fn config(&self) -> PathBuf {
        self.0.join("gateway.toml")
    }

    fn text(&self) -> String {
        fs::read_to_string(self.config()).unwrap()
    }

    fn wgctl(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_wgctl"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("IPIECE_CONFIG")
            .output()
            .expect("run wgctl");
        Out::from(out)
    }

    fn import(&self, xml: &str, extra: &[&str]) -> Out {
        let xml = fixture(xml);
        let mut args = vec!["aws", "import", "--from-xml", xml.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.wgctl(&args)
    }

    fn mode(&self, rel: &str) -> u32 {
        fs::metadata(self.0.join(rel)).unwrap().permissions().mode() & 0o7777
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    fn ok(self) -> Out {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn failed(self) -> Out {
        assert_eq!(
            self.code,
            Some(1),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Neither stream may contain a pre-shared key.
    fn no_secrets(self) -> Out {
        for k in [PSK_1, PSK_2] {
            assert!(!self.stdout.contains(k) && !self.stderr.contains(k));
        }
        self
    }
}

#[test]
fn import_twice_is_idempotent_and_the_file_checks() {
    let d = Dir::new("static");
    let seed = d.text();
    let out = d
        .import(
            "static.xml",
            &["--vpc-cidr", "10.0.0.0/16", "--vpc-cidr", "10.20.0.0/16"],
        )
        .ok()
        .no_secrets();
    assert!(
        out.stdout
            .contains("VPN connection vpn-0a3c5e7f9b1d2e4f6 (vgw-04e6a8c0b2d4f6a8e) -> "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(
        "  tunnel aws-1 (203.0.113.45, inside 169.254.121.32/30): added; pre-shared key written to ipsec/aws-1.psk (mode 0600)"
    ), "{}", out.stdout);
    assert!(out.stdout.contains(
        "  tunnel aws-2 (203.0.113.172, inside 169.254.187.100/30): added; pre-shared key written to ipsec/aws-2.psk (mode 0600)"
    ), "{}", out.stdout);
    assert!(out
        .stdout
        .contains("  wireguard.remote_prefixes: added 10.20.0.0/16"));
    assert!(out
        .stdout
        .contains("  wireguard.remote_prefixes: 10.0.0.0/16 already routed"));
    // The seed's public_endpoint is a host name: AWS's identity for us is
    // written as local_id; the sample algorithms are not copied.
    assert!(
        out.stderr
            .contains("note: gateway.public_address is not set"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("AWS's sample algorithms"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("ipieced is not running"),
        "{}",
        out.stderr
    );

    let text = d.text();
    // The seed is kept (comments and all); the tunnels go at the end.
    assert!(
        text.contains("# [[ipsec.tunnels]]\n# name = \"aws-1\""),
        "comments lost"
    );
    assert!(text.contains("remote_prefixes = [\"10.0.0.0/16\", \"10.20.0.0/16\"]"));
    assert_eq!(text.matches("\n[[ipsec.tunnels]]\n").count(), 2, "{text}");
    let aws1 = "[[ipsec.tunnels]]\nname = \"aws-1\"\nremote_address = \"203.0.113.45\"\nlocal_id = \"198.51.100.10\"\npsk_file = \"ipsec/aws-1.psk\"\ninside_cidr = \"169.254.121.32/30\"\ndpd_interval = 10\ndpd_timeout = 30\nstart_action = \"initiate\"\npriority = 100\n";
    assert!(text.contains(aws1), "{text}");
    assert!(text.contains("name = \"aws-2\"\nremote_address = \"203.0.113.172\""));
    assert!(text.contains("priority = 200\n"));
    assert!(!text.contains("ike_proposals = \"aes128-sha1"), "{text}");
    // Only additions: every other line of the seed is still there, in order.
    let mut rest = text.as_str();
    for line in seed.lines().filter(|l| !l.starts_with("remote_prefixes")) {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("seed line {line:?} lost"));
        rest = &rest[at + line.len()..];
    }

    assert_eq!(
        fs::read_to_string(d.0.join("ipsec/aws-1.psk")).unwrap(),
        PSK_1
    );
    assert_eq!(
        fs::read_to_string(d.0.join("ipsec/aws-2.psk")).unwrap(),
        PSK_2
    );
    assert_eq!(d.mode("ipsec/aws-1.psk"), 0o600);
    assert_eq!(d.mode("ipsec/aws-2.psk"), 0o600);

    let check = d.wgctl(&["check"]).ok();
    assert!(check.stdout.contains("OK"), "{}", check.stdout);

    // Again, and with the same connection in other shapes: nothing changes.
    for xml in ["static.xml", "reversed.xml", "whitespace.xml"] {
        let out = d
            .import(xml, &["--vpc-cidr", "10.20.0.0/16"])
            .ok()
            .no_secrets();
        assert!(
            out.stdout
                .contains("tunnel aws-1 (203.0.113.45, inside 169.254.121.32/30): unchanged"),
            "{xml}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("no changes"), "{xml}: {}", out.stdout);
        assert_eq!(d.text(), text, "{xml} changed the file");
    }
    d.wgctl(&["check"]).ok();
}

#[test]
fn a_rotated_key_replaces_the_psk_file_only() {
    let d = Dir::new("rotate");
    d.import("static.xml", &[]).ok();
    let text = d.text();
    let rotated = d.0.join("rotated.xml");
    fs::write(
        &rotated,
        fs::read_to_string(fixture("static.xml"))
            .unwrap()
            .replace(PSK_2, "N3w.Key_After_Rotation_0123456789"),
    )
    .unwrap();
    let out = d
        .wgctl(&["aws", "import", "--from-xml", rotated.to_str().unwrap()])
        .ok();
    assert!(
        out.stdout.contains(
            "tunnel aws-2 (203.0.113.172, inside 169.254.187.100/30): unchanged; pre-shared key in ipsec/aws-2.psk replaced (mode 0600)"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("N3w.Key"));
    assert_eq!(d.text(), text);
    assert_eq!(
        fs::read_to_string(d.0.join("ipsec/aws-2.psk")).unwrap(),
        "N3w.Key_After_Rotation_0123456789"
    );
    assert_eq!(d.mode("ipsec/aws-2.psk"), 0o600);
}

#[test]
fn public_address_equal_to_the_customer_gateway_needs_no_local_id() {
    let d = Dir::new("pubaddr");
    let text = d.text().replace(
        "# public_address = \"198.51.100.10\"",
        "public_address = \"198.51.100.10\"",
    );
    fs::write(d.config(), &text).unwrap();
    let out = d.import("static.xml", &["--name-prefix", "vpc-a"]).ok();
    assert!(!out.stderr.contains("public_address"), "{}", out.stderr);
    let text = d.text();
    assert!(text.contains("name = \"vpc-a-1\""));
    assert!(!text.contains("\nlocal_id ="), "{text}");
    assert!(d.0.join("ipsec/vpc-a-2.psk").exists());
    d.wgctl(&["check"]).ok();
}

#[test]
fn bgp_connections_import_with_a_warning() {
    let d = Dir::new("bgp");
    let out = d.import("bgp.xml", &[]).ok();
    assert!(
        out.stderr.contains("warning: VPN connection vpn-0b7d9f1a3c5e7a9b1 uses BGP routing (customer ASN 65000, AWS ASN 64512); ipiece only does static routing"),
        "{}",
        out.stderr
    );
    assert_eq!(d.text().matches("\n[[ipsec.tunnels]]\n").count(), 2);
    d.wgctl(&["check"]).ok();
}

/// Runs a failing import and checks that nothing was written.
fn refused(d: &Dir, xml: &str, extra: &[&str]) -> Out {
    let before = d.text();
    let bak = d.0.join("gateway.toml.bak");
    let bak_before = fs::read(&bak).ok();
    let out = d.import(xml, extra).failed().no_secrets();
    assert_eq!(d.text(), before, "the TOML changed");
    assert_eq!(fs::read(&bak).ok(), bak_before, "the backup changed");
    let leftovers: Vec<_> = fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    out
}

#[test]
fn a_secrets_manager_arn_is_refused_with_directions() {
    let d = Dir::new("arn");
    let out = refused(&d, "secrets-manager.xml", &[]);
    let arn =
        "arn:aws:secretsmanager:eu-central-1:111122223333:secret:vpn-0c1e3a5c7e9a1c3e5-tunnel1-Ab12Cd";
    assert!(out.stderr.contains(arn), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "the pre-shared key of the tunnel to 203.0.113.45 is stored in AWS Secrets Manager"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("fetch the secret"), "{}", out.stderr);
    assert!(
        out.stderr.contains("secrets-manager.xml:"),
        "{}",
        out.stderr
    );
    assert!(!d.0.join("ipsec").exists());
}

#[test]
fn a_malformed_document_names_file_and_position() {
    let d = Dir::new("malformed");
    let xml = fs::read_to_string(fixture("malformed.xml")).unwrap();
    let line = xml
        .lines()
        .position(|l| l.contains("</encryption>"))
        .unwrap()
        + 1;
    let out = refused(&d, "malformed.xml", &[]);
    let want = format!("malformed.xml:{line}:");
    assert!(out.stderr.contains(&want), "{want}: {}", out.stderr);
    assert!(
        out.stderr.contains("not a well-formed XML document"),
        "{}",
        out.stderr
    );
    assert!(!d.0.join("ipsec").exists());
    // A file that is not there.
    let out = d
        .wgctl(&["aws", "import", "--from-xml", "/nonexistent/vpn.xml"])
        .failed();
    assert!(out.stderr.contains("cannot read /nonexistent/vpn.xml"));
}

#[test]
fn an_import_that_does_not_validate_writes_nothing() {
    let d = Dir::new("invalid");
    // The "VPC" overlaps the LAN: validation refuses the result, so the PSK
    // files written before the check are removed again.
    let out = refused(&d, "static.xml", &["--vpc-cidr", "172.16.0.0/16"]);
    assert!(
        out.stderr
            .contains("the imported configuration does not validate; nothing was written"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("overlaps"), "{}", out.stderr);
    assert!(!d.0.join("ipsec").exists(), "PSK files left behind");
}

#[test]
fn a_name_taken_by_another_tunnel_is_refused() {
    let d = Dir::new("taken");
    d.import("static.xml", &[]).ok();
    // Another connection (other AWS addresses) under the same names.
    let other = d.0.join("other.xml");
    fs::write(
        &other,
        fs::read_to_string(fixture("static.xml"))
            .unwrap()
            .replace("203.0.113.45", "192.0.2.45")
            .replace("203.0.113.172", "192.0.2.172"),
    )
    .unwrap();
    let before = d.text();
    let out = d
        .wgctl(&["aws", "import", "--from-xml", other.to_str().unwrap()])
        .failed();
    assert!(
        out.stderr.contains("tunnel `aws-1` has remote_address 203.0.113.45, which is neither AWS outside address of this VPN connection (192.0.2.45, 192.0.2.172)"),
        "{}",
        out.stderr
    );
    assert_eq!(d.text(), before);
    // With another prefix it is a second connection beside the first one.
    let out = d
        .wgctl(&[
            "aws",
            "import",
            "--from-xml",
            other.to_str().unwrap(),
            "--name-prefix",
            "aws-b",
        ])
        .failed();
    // Same inside CIDRs as the first connection: validation says so.
    assert!(out.stderr.contains("inside_cidr"), "{}", out.stderr);
    assert_eq!(d.text(), before);
    assert!(!d.0.join("ipsec/aws-b-1.psk").exists());
    let bad = d
        .import("static.xml", &["--name-prefix", "no spaces"])
        .failed();
    assert!(bad.stderr.contains("--name-prefix"), "{}", bad.stderr);
}
