//! Site peers in the sans-IO core: a [`PeerTable`] with one peer that has a
//! configured endpoint, wired in memory to a boringtun `Tunn` standing for
//! the remote site (which, like a wireguard-go peer without an `Endpoint`,
//! only answers). The table is driven by a fake clock.

use super::*;
use crate::config::{generate_private_key, public_key};
use std::net::Ipv4Addr;

const SITE: &str = "198.51.100.7:51820";

#[derive(Default)]
struct Wire {
    udp: Vec<(SocketAddr, Vec<u8>)>,
}

impl Io for Wire {
    fn send_udp(&mut self, from: UdpPort, dst: SocketAddr, d: &[u8]) {
        assert_eq!(from, UdpPort::WireGuard);
        self.udp.push((dst, d.to_vec()));
    }
    fn write_tun(&mut self, _: &[u8]) {
        panic!("the peer table never writes the TUN");
    }
}

/// The gateway's table and the remote site's `Tunn`.
struct Lab {
    table: PeerTable,
    gw_public: Key,
    site_key: Key,
    site: Tunn,
    /// Where the site's datagrams come from.
    site_addr: SocketAddr,
    buf: Vec<u8>,
    sbuf: Vec<u8>,
    t0: Instant,
}

fn settings(key: &Key, endpoint: Option<&str>, keepalive: u16) -> PeerSettings {
    PeerSettings {
        name: "office2".into(),
        public_key: public_key(key),
        psk: None,
        allowed_ips: vec!["172.16.60.50/32".parse().unwrap()],
        keepalive,
        endpoint: endpoint.map(|e| e.parse().unwrap()),
    }
}

fn remote_tunn(site_key: &Key, gw_public: &Key) -> Tunn {
    Tunn::new(
        StaticSecret::from(site_key.0),
        PublicKey::from(gw_public.0),
        None,
        None,
        9,
        None,
    )
}

fn kind(d: &[u8]) -> Option<Kind> {
    Kind::of_wire(d)
}

impl Lab {
    fn new(endpoint: Option<&str>, keepalive: u16) -> Lab {
        let gw_key = generate_private_key();
        let site_key = generate_private_key();
        let mut table = PeerTable::new(&gw_key);
        table.apply(vec![settings(&site_key, endpoint, keepalive)]);
        let gw_public = public_key(&gw_key);
        Lab {
            site: remote_tunn(&site_key, &gw_public),
            table,
            gw_public,
            site_key,
            site_addr: SITE.parse().unwrap(),
            buf: vec![0u8; 2048],
            sbuf: vec![0u8; 2048],
            t0: Instant::now(),
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// One tick of the table at `t0 + secs`; what it sent.
    fn tick(&mut self, secs: u64) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut w = Wire::default();
        let now = self.at(secs);
        self.table
            .tick(now, SystemTime::now(), &mut self.buf, &mut w);
        w.udp
    }

    /// Hands the gateway's datagrams to the site and the site's answers
    /// back to the gateway (at `t0 + secs`) until quiet. Returns how many
    /// datagrams the site accepted (answered or decrypted).
    fn exchange(&mut self, secs: u64, mut to_site: Vec<(SocketAddr, Vec<u8>)>) -> usize {
        let mut accepted = 0;
        for _ in 0..10 {
            if to_site.is_empty() {
                break;
            }
            let mut to_gw = Vec::new();
            for (dst, d) in to_site.drain(..) {
                assert_eq!(dst, self.site_addr, "sent to the site's endpoint");
                let mut r = self.site.decapsulate(
                    Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2))),
                    &d,
                    &mut self.sbuf,
                );
                if !matches!(r, TunnResult::Err(_)) {
                    accepted += 1;
                }
                while let TunnResult::WriteToNetwork(x) = r {
                    to_gw.push(x.to_vec());
                    r = self.site.decapsulate(None, &[], &mut self.sbuf);
                }
            }
            let mut w = Wire::default();
            for d in to_gw {
                self.table.handle_datagram(
                    self.at(secs),
                    self.site_addr,
                    &d,
                    &mut self.buf,
                    &mut w,
                );
            }
            to_site = w.udp;
        }
        accepted
    }

    fn status(&self) -> PeerStatus {
        self.table.status(SystemTime::now()).remove(0)
    }

    fn kinds(sent: &[(SocketAddr, Vec<u8>)]) -> Vec<Option<Kind>> {
        sent.iter().map(|(_, d)| kind(d)).collect()
    }

    /// The site sends an IP packet; whether the gateway decrypted it.
    fn site_sends(&mut self, secs: u64) -> bool {
        let pkt = ip_packet("172.16.60.50", "172.16.4.10");
        let d = match self.site.encapsulate(&pkt, &mut self.sbuf) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            _ => return false,
        };
        let mut w = Wire::default();
        self.table
            .handle_datagram(self.at(secs), self.site_addr, &d, &mut self.buf, &mut w)
            .is_some()
    }
}

fn ip_packet(src: &str, dst: &str) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
    p[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
    p
}

#[test]
fn a_site_peer_is_initiated_at_the_first_tick_and_comes_up_without_traffic() {
    let mut lab = Lab::new(Some(SITE), 25);
    let st = lab.status();
    assert!(st.site && st.configured_endpoint == Some(lab.site_addr));
    assert_eq!(
        st.endpoint,
        Some(lab.site_addr),
        "the configured endpoint is known before any datagram"
    );
    let sent = lab.tick(0);
    assert_eq!(Lab::kinds(&sent), vec![Some(Kind::Initiation)], "{sent:?}");
    // While it is under way, no second one (Tunn retransmits on its own).
    assert!(lab.tick(1).is_empty());
    assert!(lab.exchange(1, sent) >= 1);
    let st = lab.status();
    assert!(st.session, "{st:?}");
    assert_eq!(st.counters.handshakes, 0, "pinned at the next tick");
    lab.tick(2);
    assert_eq!(lab.status().counters.handshakes, 1);
    assert!(lab.site_sends(2), "the site's traffic flows on the session");
}

#[test]
fn a_laptop_is_never_initiated() {
    // No endpoint configured: the gateway only answers, however long the
    // laptop stays silent, even once it knows the laptop's address. (The
    // keepalive is set here to reach the silence rule; `Settings::load`
    // gives laptops none.)
    let mut lab = Lab::new(None, 25);
    for s in [0, 1, 30, 60, 200, 600] {
        assert!(lab.tick(s).is_empty(), "sent something at {s} s");
    }
    let st = lab.status();
    assert!(!st.site && st.configured_endpoint.is_none() && st.endpoint.is_none());
    // The laptop connects (it initiates), then goes away for good.
    let init = match lab.site.format_handshake_initiation(&mut lab.sbuf, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        _ => panic!("no initiation from the laptop"),
    };
    let mut w = Wire::default();
    lab.table
        .handle_datagram(lab.at(700), lab.site_addr, &init, &mut lab.buf, &mut w);
    assert_eq!(Lab::kinds(&w.udp), vec![Some(Kind::Response)]);
    assert_eq!(lab.status().endpoint, Some(lab.site_addr));
    for s in 701..1300 {
        let sent = lab.tick(s);
        assert!(
            !Lab::kinds(&sent).contains(&Some(Kind::Initiation)),
            "a laptop initiated at {s} s"
        );
    }
}

#[test]
fn keepalives_follow_the_interval_counted_from_the_last_exchange() {
    let mut lab = Lab::new(Some(SITE), 10);
    let init = lab.tick(0);
    lab.exchange(0, init);
    assert!(lab.status().session);
    // Nothing before the interval is over.
    for s in [1, 5, 9] {
        assert!(lab.tick(s).is_empty(), "sent something at {s} s");
    }
    let sent = lab.tick(10);
    assert_eq!(
        Lab::kinds(&sent),
        vec![Some(Kind::Data)],
        "keepalive at 10 s"
    );
    assert_eq!(sent[0].1.len(), 32, "an empty data message");
    assert_eq!(lab.exchange(10, sent), 1, "the site accepts the keepalive");
    assert!(lab.tick(15).is_empty());
    assert_eq!(Lab::kinds(&lab.tick(20)), vec![Some(Kind::Data)]);
    // Something heard from the site at 25 s moves the next one to 35 s.
    assert!(lab.site_sends(25));
    assert!(lab.tick(30).is_empty());
    assert!(lab.tick(34).is_empty());
    assert_eq!(Lab::kinds(&lab.tick(35)), vec![Some(Kind::Data)]);
}

#[test]
fn keepalive_zero_sends_none() {
    let mut lab = Lab::new(Some(SITE), 0);
    let init = lab.tick(0);
    lab.exchange(0, init);
    assert!(lab.status().session);
    for s in [10, 25, 60, 100] {
        assert!(lab.tick(s).is_empty(), "sent something at {s} s");
    }
}

#[test]
fn a_restarted_site_that_lost_the_session_is_initiated_again_after_silence() {
    let mut lab = Lab::new(Some(SITE), 5);
    let init = lab.tick(0);
    lab.exchange(0, init);
    lab.tick(0);
    assert!(lab.status().session);
    // The site restarts: same key, no session. It sends nothing.
    lab.site = remote_tunn(&lab.site_key, &lab.gw_public);
    let limit = silence_limit(5).unwrap().as_secs();
    assert_eq!(limit, 15);
    let mut secs = 1;
    while secs < limit {
        let sent = lab.tick(secs);
        assert!(
            Lab::kinds(&sent).iter().all(|k| *k == Some(Kind::Data)),
            "only keepalives before the limit ({secs} s): {sent:?}"
        );
        assert_eq!(lab.exchange(secs, sent), 0, "the new site drops them");
        secs += 1;
    }
    let sent = lab.tick(limit);
    assert_eq!(
        Lab::kinds(&sent),
        vec![Some(Kind::Initiation)],
        "a new handshake after {limit} s of silence"
    );
    lab.exchange(limit, sent);
    lab.tick(limit + 1);
    assert!(lab.status().session);
    // The restarted site has no other session than the new one.
    assert!(
        lab.site_sends(limit + 1),
        "traffic flows on the new session"
    );
    // A site that answers is not initiated again while it keeps talking.
    for s in (limit + 2)..(limit + 30) {
        assert!(lab.site_sends(s));
        assert!(
            !Lab::kinds(&lab.tick(s)).contains(&Some(Kind::Initiation)),
            "initiated although the site talks ({s} s)"
        );
    }
}

#[test]
fn a_reload_that_changes_the_endpoint_initiates_to_the_new_one() {
    let mut lab = Lab::new(Some(SITE), 25);
    let init = lab.tick(0);
    lab.exchange(0, init);
    lab.tick(1);
    assert!(lab.status().session);
    let new = "198.51.100.8:51820";
    let report = lab
        .table
        .apply(vec![settings(&lab.site_key, Some(new), 25)]);
    assert_eq!(report.restarted, vec!["office2".to_string()]);
    let sent = lab.tick(2);
    assert_eq!(Lab::kinds(&sent), vec![Some(Kind::Initiation)]);
    assert_eq!(sent[0].0, new.parse::<SocketAddr>().unwrap());
    // Roaming stays: the site answers from the new address.
    lab.site_addr = new.parse().unwrap();
    lab.exchange(2, sent);
    assert_eq!(lab.status().endpoint, Some(lab.site_addr));
    // An authenticated datagram from yet another address moves it.
    lab.site_addr = "198.51.100.9:40000".parse().unwrap();
    assert!(lab.site_sends(3));
    assert_eq!(lab.status().endpoint, Some(lab.site_addr));
}

#[test]
fn a_reload_that_adds_a_site_peer_initiates_it() {
    let mut lab = Lab::new(None, 0);
    assert!(lab.tick(0).is_empty());
    lab.table
        .apply(vec![settings(&lab.site_key, Some(SITE), 25)]);
    assert_eq!(Lab::kinds(&lab.tick(1)), vec![Some(Kind::Initiation)]);
}
