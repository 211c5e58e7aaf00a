//! `wgctl check` on crafted files: one case per validation error, each
//! reported as `<file>:<line>:<col>: <field>: <message>` on stderr with exit
//! status 1, the column pointing at the offending key or value. A valid file
//! passes. No root needed.

mod common;

use base64::Engine;
use common::*;
use rand_core::RngCore;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn random_key() -> String {
    let mut k = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut k);
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// A valid config with two peers; the cases each break one thing.
fn base_config(alice: &str, bob: &str) -> String {
    format!(
        r#"# crafted by tests/config_check.rs
[gateway]
name = "check"
public_endpoint = "203.0.113.2"
lan_prefixes = ["172.16.4.0/24"]
control_socket = "control.sock"
tun_name = "iptchk0"

[wireguard]
listen_port = 51821
address = "172.16.60.1/24"
private_key_file = "wg.key"
mtu = 1420
remote_prefixes = ["10.0.0.0/16"]

[[peers]]
name = "alice"
public_key = "{alice}"
address = "172.16.60.2"

[[peers]]
name = "bob"
public_key = "{bob}"
address = "172.16.60.3"
"#
    )
}

struct Fixture {
    dir: TempDir,
    alice: String,
    bob: String,
    gw_key: String,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = TempDir::new(tag);
        let gw_key = random_key();
        write_key(&dir.join("wg.key"), &gw_key, 0o600);
        Fixture {
            dir,
            alice: random_key(),
            bob: random_key(),
            gw_key,
        }
    }

    fn base(&self) -> String {
        base_config(&self.alice, &self.bob)
    }

    /// Writes `text` as gateway.toml and runs `wgctl check` on it.
    fn check(&self, text: &str) -> (Out, String) {
        let path = self.dir.join("gateway.toml");
        fs::write(&path, text).unwrap();
        (wgctl_at(&path, &["check"]), path.display().to_string())
    }
}

fn write_key(path: &Path, key: &str, mode: u32) {
    fs::write(path, format!("{key}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Replaces exactly one occurrence of `from` in `text`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// Columns (1-based) that may name the offending item on `line`: the key,
/// the value, and the start of any quoted element (or just inside its quote).
fn plausible_columns(line: &str) -> Vec<usize> {
    let mut cols = Vec::new();
    if let Some(k) = line.find(|c: char| !c.is_whitespace()) {
        cols.push(k + 1);
    }
    if let Some(eq) = line.find('=') {
        if let Some(v) = line[eq + 1..].find(|c: char| !c.is_whitespace()) {
            cols.push(eq + 1 + v + 1);
        }
        for (i, ch) in line.char_indices().skip(eq) {
            if ch == '"' {
                cols.push(i + 1);
                cols.push(i + 2);
            }
        }
    }
    cols
}

/// Asserts that `wgctl check` on `text` exits 1 with an error line
/// `<file>:<line>:<col>: <field>: ...<msg>...`, where line is the first
/// line containing `at`.
fn expect_error(fx: &Fixture, case: &str, text: &str, at: &str, field: &str, msg: &str) {
    let (out, file) = fx.check(text);
    assert_eq!(out.code(), Some(1), "case {case}: expected exit 1: {out}");
    if let Err(e) = find_error(fx, &out, &file, text, at, field, msg) {
        panic!("case {case}: {e}");
    }
}

/// Like [`expect_error`] for an error that may be reported at either of two
/// places (e.g. either prefix of an overlapping pair in two lists).
fn expect_error_at_either(
    fx: &Fixture,
    case: &str,
    text: &str,
    places: [(&str, &str); 2],
    msg: &str,
) {
    let (out, file) = fx.check(text);
    assert_eq!(out.code(), Some(1), "case {case}: expected exit 1: {out}");
    let a = find_error(fx, &out, &file, text, places[0].0, places[0].1, msg);
    let b = find_error(fx, &out, &file, text, places[1].0, places[1].1, msg);
    if let (Err(a), Err(b)) = (a, b) {
        panic!("case {case}: neither place reported:\n{a}\n{b}");
    }
}

fn find_error(
    fx: &Fixture,
    out: &Out,
    file: &str,
    text: &str,
    at: &str,
    field: &str,
    msg: &str,
) -> Result<(), String> {
    let line_no = line_of(text, at);
    let line = text.lines().nth(line_no - 1).unwrap();
    let prefix = format!("{file}:{line_no}:");
    let hit = out.stderr.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(&prefix)?;
        let (col, rest) = rest.split_once(':')?;
        let rest = rest.trim_start().strip_prefix(field)?.strip_prefix(':')?;
        Some((col.parse::<usize>().ok()?, rest.to_string()))
    });
    let Some((col, message)) = hit else {
        return Err(format!(
            "no line `{prefix}<col>: {field}: ...` in stderr:\n{out}\n--- file ---\n{text}"
        ));
    };
    let cols = plausible_columns(line);
    if !cols.contains(&col) {
        return Err(format!(
            "column {col} points at neither the key nor the value of line {line_no} {line:?} (expected one of {cols:?}):\n{out}"
        ));
    }
    if !message.contains(msg) {
        return Err(format!(
            "message {message:?} does not mention {msg:?}:\n{out}"
        ));
    }
    if out.stderr.contains(&fx.gw_key) || out.stdout.contains(&fx.gw_key) {
        return Err("the output shows the private key".into());
    }
    Ok(())
}

#[test]
fn valid_file_passes_check() {
    let fx = Fixture::new("chk-ok");
    let (out, file) = fx.check(&fx.base());
    assert!(out.ok(), "a valid file was refused: {out}");
    assert!(out.stdout.contains(&format!("{file}: OK")), "{out}");
}

#[test]
fn unknown_key_is_reported_at_its_line() {
    let fx = Fixture::new("chk-unknown");
    let t = edit(
        &fx.base(),
        "mtu = 1420\n",
        "mtu = 1420\ncolour = \"blue\"\n",
    );
    expect_error(
        &fx,
        "unknown key",
        &t,
        "colour",
        "wireguard.colour",
        "colour",
    );
}

#[test]
fn malformed_public_key_is_reported_at_its_value() {
    let fx = Fixture::new("chk-badkey");
    let t = edit(&fx.base(), &fx.alice, "AAAA");
    expect_error(
        &fx,
        "malformed key",
        &t,
        "\"AAAA\"",
        "peers[0].public_key",
        "",
    );
    let t = edit(&fx.base(), &fx.bob, "this is not base64!");
    expect_error(
        &fx,
        "non-base64 key",
        &t,
        "not base64",
        "peers[1].public_key",
        "",
    );
}

#[test]
fn malformed_prefix_is_reported_at_its_value() {
    let fx = Fixture::new("chk-prefix");
    let t = edit(&fx.base(), "[\"172.16.4.0/24\"]", "[\"172.16.4.0/33\"]");
    expect_error(
        &fx,
        "malformed prefix",
        &t,
        "172.16.4.0/33",
        "gateway.lan_prefixes[0]",
        "",
    );
}

#[test]
fn overlapping_prefixes_are_reported_within_and_across_lists() {
    let fx = Fixture::new("chk-overlap");
    let t = edit(
        &fx.base(),
        "[\"10.0.0.0/16\"]",
        "[\"10.0.0.0/16\", \"10.0.128.0/17\"]",
    );
    expect_error_at_either(
        &fx,
        "overlap in one list",
        &t,
        [
            ("10.0.128.0/17", "wireguard.remote_prefixes[1]"),
            ("10.0.128.0/17", "wireguard.remote_prefixes[0]"),
        ],
        "",
    );
    let t = edit(&fx.base(), "[\"172.16.4.0/24\"]", "[\"172.16.60.128/25\"]");
    expect_error_at_either(
        &fx,
        "LAN overlaps WireGuard subnet",
        &t,
        [
            ("172.16.60.128/25", "gateway.lan_prefixes[0]"),
            ("address = \"172.16.60.1/24\"", "wireguard.address"),
        ],
        "",
    );
}

#[test]
fn peer_address_outside_subnet_is_reported() {
    let fx = Fixture::new("chk-outside");
    let t = edit(&fx.base(), "172.16.60.3\"", "172.16.61.3\"");
    expect_error(
        &fx,
        "outside subnet",
        &t,
        "172.16.61.3",
        "peers[1].address",
        "outside",
    );
}

#[test]
fn peer_address_used_twice_is_reported_at_second_use() {
    let fx = Fixture::new("chk-twice");
    let t = edit(
        &fx.base(),
        "address = \"172.16.60.3\"",
        "address = \"172.16.60.2\" # bob",
    );
    expect_error(
        &fx,
        "address used twice",
        &t,
        "# bob",
        "peers[1].address",
        "172.16.60.2",
    );
}

#[test]
fn duplicate_peer_name_is_reported() {
    let fx = Fixture::new("chk-dupname");
    let t = edit(&fx.base(), "name = \"bob\"", "name = \"alice\" # second");
    expect_error(
        &fx,
        "duplicate name",
        &t,
        "# second",
        "peers[1].name",
        "alice",
    );
}

#[test]
fn duplicate_public_key_is_reported() {
    let fx = Fixture::new("chk-dupkey");
    let t = edit(
        &fx.base(),
        &format!("public_key = \"{}\"", fx.bob),
        &format!("public_key = \"{}\" # dup", fx.alice),
    );
    expect_error(
        &fx,
        "duplicate public key",
        &t,
        "# dup",
        "peers[1].public_key",
        "duplicate",
    );
}

#[test]
fn missing_key_file_is_reported_with_its_name() {
    let fx = Fixture::new("chk-nokey");
    let t = edit(&fx.base(), "\"wg.key\"", "\"missing.key\"");
    expect_error(
        &fx,
        "missing key file",
        &t,
        "missing.key",
        "wireguard.private_key_file",
        "missing.key",
    );
    let t = edit(
        &fx.base(),
        "address = \"172.16.60.3\"",
        "address = \"172.16.60.3\"\npsk_file = \"peers/bob.psk\"",
    );
    expect_error(
        &fx,
        "missing psk file",
        &t,
        "bob.psk",
        "peers[1].psk_file",
        "bob.psk",
    );
}

#[test]
fn key_file_readable_by_others_is_refused_with_chmod_hint_and_no_key_content() {
    let fx = Fixture::new("chk-mode");
    fs::set_permissions(fx.dir.join("wg.key"), fs::Permissions::from_mode(0o644)).unwrap();
    expect_error(
        &fx,
        "key file mode 0644",
        &fx.base(),
        "private_key_file",
        "wireguard.private_key_file",
        "chmod 600",
    );
}

#[test]
fn key_file_with_invalid_content_is_refused() {
    let fx = Fixture::new("chk-keycontent");
    write_key(&fx.dir.join("wg.key"), "c2hvcnQ=", 0o600);
    expect_error(
        &fx,
        "key file content",
        &fx.base(),
        "private_key_file",
        "wireguard.private_key_file",
        "",
    );
}

#[test]
fn peer_using_gateway_address_and_wrong_types_are_refused() {
    let fx = Fixture::new("chk-misc");
    let t = edit(
        &fx.base(),
        "address = \"172.16.60.2\"",
        "address = \"172.16.60.1\" # gw",
    );
    expect_error(
        &fx,
        "gateway's own address",
        &t,
        "# gw",
        "peers[0].address",
        "",
    );
    let t = edit(&fx.base(), "mtu = 1420", "mtu = \"big\"");
    expect_error(&fx, "wrong type", &t, "\"big\"", "wireguard.mtu", "");
    let t = edit(&fx.base(), "mtu = 1420", "mtu = 100");
    expect_error(
        &fx,
        "mtu out of range",
        &t,
        "mtu = 100",
        "wireguard.mtu",
        "",
    );
}
