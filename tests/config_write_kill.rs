//! Crash safety of `wgctl add-peer`'s config edit: SIGKILL at random instants
//! (spread over the whole run, so that some land mid-write) must leave the
//! previous file or the previous file plus the new peer, never a broken one,
//! and nothing that breaks the next run. No root needed.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peer names in the file, in order (parsed independently of ipiece).
fn peer_names(text: &str) -> Vec<String> {
    let t: toml::Table =
        toml::from_str(text).unwrap_or_else(|e| panic!("file does not parse ({e}):\n{text}"));
    match t.get("peers") {
        None => Vec::new(),
        Some(p) => p
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect(),
    }
}

fn add_peer_cmd(path: &Path, name: &str, out: &Path) -> Command {
    let mut c = Command::new(WGCTL);
    c.args([
        "--config",
        path.to_str().unwrap(),
        "add-peer",
        name,
        "--output",
        out.to_str().unwrap(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

/// Kills per run (each costs one add-peer start and one `wgctl check`).
const ITERATIONS: usize = 120;

#[test]
fn sigkill_during_add_peer_leaves_old_or_new_config_never_broken() {
    let dir = TempDir::new("killwrite");
    let path = dir.join("gateway.toml");
    let init = wgctl_at(&path, &["init", "--endpoint", NAT_WAN]);
    assert!(init.ok(), "wgctl init: {init}");
    // No daemon: add-peer finds no control socket and only edits the file.
    toml_set_str(
        &path,
        "gateway",
        "control_socket",
        dir.join("absent.sock").to_str().unwrap(),
    );
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;

    // How long one uninterrupted add-peer takes: the kills are spread over
    // 0..1.3x that (at most 30 ms).
    let mut run_time = Duration::MAX;
    for i in 0..3 {
        let name = format!("cal{i}");
        let t0 = Instant::now();
        let out = run_cmd(
            &mut add_peer_cmd(&path, &name, &dir.join(&format!("{name}.conf"))),
            None,
            Duration::from_secs(20),
        );
        run_time = run_time.min(t0.elapsed());
        assert!(out.ok(), "uninterrupted add-peer failed: {out}");
        assert!(peer_names(&fs::read_to_string(&path).unwrap()).contains(&name));
    }
    let spread_us = ((run_time.as_micros() as u64) * 13 / 10).clamp(1000, 30_000);
    eprintln!("add-peer takes {run_time:?}; kills spread over 0..{spread_us} us");

    let mut rng = Rng::new("kill delays");
    let (mut unchanged, mut added) = (0, 0);
    // Three kinds of kill instants, in turn: uniform over the run; focused on
    // the bracket between the latest kill that left the old file and the
    // earliest that left the new one (the write, blurred by jitter); and
    // right after the config's temp file appears (mid-write).
    let (mut old_max, mut new_min) = (0u64, spread_us);
    let tmp = dir.join(".gateway.toml.tmp");
    let mut mid_write = 0;
    for i in 0..ITERATIONS {
        let name = format!("p{i}");
        let before = fs::read_to_string(&path).unwrap();
        let names_before = peer_names(&before);
        let stale_tmp = tmp.exists();
        let mut child = add_peer_cmd(&path, &name, &dir.join(&format!("{name}.conf")))
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let delay_us = match i % 3 {
            // uniform over the whole run
            0 => rng.below(spread_us + 1),
            // focused on the bracket around the write
            1 => {
                let lo = old_max.min(new_min).saturating_sub(2000);
                let hi = old_max.max(new_min) + 500;
                lo + rng.below(hi - lo + 1)
            }
            // mid-write: as soon as the config's temp file exists (the
            // documented "<dir>/.<name>.tmp"), plus 0..300 us
            _ => {
                let deadline = Duration::from_micros(spread_us);
                // a temp file left by the previous kill must go first
                let mut stale = stale_tmp;
                loop {
                    let exists = tmp.exists();
                    stale &= exists;
                    if exists && !stale {
                        mid_write += 1;
                        break t0.elapsed().as_micros() as u64 + rng.below(301);
                    }
                    if t0.elapsed() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
                        break spread_us;
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        };
        let delay = Duration::from_micros(delay_us);
        if let Some(rest) = delay.checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        // One that finished before the kill must have succeeded: a failure
        // here is the previous kill's leftovers breaking this run.
        assert!(
            status.success() || status.signal() == Some(libc::SIGKILL),
            "iteration {i}: add-peer {name} failed by itself ({status}) after the previous kill"
        );

        let after = fs::read_to_string(&path).unwrap();
        let check = wgctl_at(&path, &["check"]);
        assert!(
            check.ok(),
            "iteration {i}: kill after {delay:?} ({status}) left a file that does not pass check: {check}\n--- file ---\n{after}"
        );
        let names_after = peer_names(&after);
        if names_after == names_before {
            assert_eq!(
                after, before,
                "iteration {i}: same peers but the text changed"
            );
            unchanged += 1;
            old_max = old_max.max(delay_us);
        } else {
            let mut want = names_before.clone();
            want.push(name.clone());
            assert_eq!(
                names_after, want,
                "iteration {i}: kill after {delay:?} left neither old nor old+{name}"
            );
            assert!(
                after.starts_with(before.trim_end()),
                "iteration {i}: the edit rewrote existing text\n--- before ---\n{before}\n--- after ---\n{after}"
            );
            added += 1;
            new_min = new_min.min(delay_us);
        }
        let m = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            m, mode,
            "iteration {i}: file mode changed from {mode:o} to {m:o}"
        );
    }
    eprintln!(
        "{ITERATIONS} kills: {unchanged} left the old file, {added} the new one \
         (write between {old_max} and {new_min} us; {mid_write} kills with the temp file present)"
    );
    assert!(
        unchanged > 0 && added > 0,
        "kills never landed both before and after the write ({unchanged} old, {added} new): nothing was tested"
    );

    // Whatever the kills left behind (temp file, lock file, key files), the
    // next uninterrupted run works.
    let out = run_cmd(
        &mut add_peer_cmd(&path, "last", &dir.join("last.conf")),
        None,
        Duration::from_secs(20),
    );
    assert!(out.ok(), "add-peer after the kills: {out}");
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(peer_names(&text).last().map(String::as_str), Some("last"));
    wgctl_at(&path, &["check"]).expect_ok();
    assert!(dir.join("last.conf").exists());
}
