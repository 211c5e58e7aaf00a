//! Longest-prefix-match table mapping IP prefixes to values (WireGuard's
//! "cryptokey routing", whitepaper section 2): outbound, the destination
//! selects the peer; inbound, the source must map back to the peer that
//! decrypted the packet.
//!
//! One hash map per prefix length, probed from the longest length present
//! to the shortest: at most 33 (IPv4) or 129 (IPv6) probes, usually a few.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// A longest-prefix-match table from IP prefixes to `T`.
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Family<u32, T>,
    v6: Family<u128, T>,
}

#[derive(Debug, Clone)]
struct Family<K, T> {
    /// `by_len[len]` maps the masked network bits to the value.
    by_len: Vec<HashMap<K, T>>,
    /// Prefix lengths with at least one entry, longest first.
    lens: Vec<u8>,
}

impl<K: Copy + Eq + std::hash::Hash, T> Family<K, T> {
    fn new(bits: usize) -> Self {
        Family {
            by_len: (0..=bits).map(|_| HashMap::new()).collect(),
            lens: Vec::new(),
        }
    }

    fn insert(&mut self, len: u8, key: K, value: T) -> Option<T> {
        let old = self.by_len[len as usize].insert(key, value);
        if !self.lens.contains(&len) {
            self.lens.push(len);
            self.lens.sort_unstable_by(|a, b| b.cmp(a));
        }
        old
    }

    fn remove(&mut self, len: u8, key: K) -> Option<T> {
        let old = self.by_len[len as usize].remove(&key);
        if self.by_len[len as usize].is_empty() {
            self.lens.retain(|l| *l != len);
        }
        old
    }

    fn get(&self, mask: impl Fn(u8) -> K) -> Option<&T> {
        self.lens
            .iter()
            .find_map(|len| self.by_len[*len as usize].get(&mask(*len)))
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for map in &mut self.by_len {
            map.retain(|_, v| keep(v));
        }
        let by_len = &self.by_len;
        self.lens.retain(|l| !by_len[*l as usize].is_empty());
    }
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - len))
    }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - len))
    }
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps {
            v4: Family::new(32),
            v6: Family::new(128),
        }
    }
}

impl<T> AllowedIps<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `prefix` (host bits are ignored); returns the value it replaced.
    pub fn insert(&mut self, prefix: IpNet, value: T) -> Option<T> {
        match prefix {
            IpNet::V4(n) => self.v4.insert(
                n.prefix_len(),
                mask4(u32::from(n.addr()), n.prefix_len()),
                value,
            ),
            IpNet::V6(n) => self.v6.insert(
                n.prefix_len(),
                mask6(u128::from(n.addr()), n.prefix_len()),
                value,
            ),
        }
    }

    /// Removes exactly `prefix`; returns its value.
    pub fn remove(&mut self, prefix: IpNet) -> Option<T> {
        match prefix {
            IpNet::V4(n) => self
                .v4
                .remove(n.prefix_len(), mask4(u32::from(n.addr()), n.prefix_len())),
            IpNet::V6(n) => self
                .v6
                .remove(n.prefix_len(), mask6(u128::from(n.addr()), n.prefix_len())),
        }
    }

    /// Removes exactly `prefix` if its value satisfies `pred`; returns the
    /// removed value.
    pub fn remove_if(&mut self, prefix: IpNet, pred: impl FnOnce(&T) -> bool) -> Option<T> {
        let hit = match prefix {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                self.v4.by_len[len as usize].get(&mask4(u32::from(n.addr()), len))
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                self.v6.by_len[len as usize].get(&mask6(u128::from(n.addr()), len))
            }
        };
        if hit.is_some_and(pred) {
            self.remove(prefix)
        } else {
            None
        }
    }

    /// The value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.get(|len| mask4(a, len))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.get(|len| mask6(a, len))
            }
        }
    }

    /// Keeps only the entries whose value satisfies `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.v4.retain(&mut keep);
        self.v6.retain(&mut keep);
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), "default");
        t.insert(net("172.16.60.0/24"), "subnet");
        t.insert(net("172.16.60.7/32"), "host");
        t.insert(net("10.0.0.0/16"), "vpc");
        assert_eq!(t.lookup(ip("172.16.60.7")), Some(&"host"));
        assert_eq!(t.lookup(ip("172.16.60.8")), Some(&"subnet"));
        assert_eq!(t.lookup(ip("10.0.255.1")), Some(&"vpc"));
        assert_eq!(t.lookup(ip("10.1.0.1")), Some(&"default"));
        assert_eq!(t.lookup(ip("::1")), None);
    }

    #[test]
    fn host_bits_are_masked_on_insert() {
        let mut t = AllowedIps::new();
        t.insert(net("172.16.60.9/24"), 1);
        assert_eq!(t.lookup(ip("172.16.60.200")), Some(&1));
        assert_eq!(t.remove(net("172.16.60.0/24")), Some(1));
        assert_eq!(t.lookup(ip("172.16.60.200")), None);
    }

    #[test]
    fn remove_falls_back_to_shorter_prefix() {
        let mut t = AllowedIps::new();
        t.insert(net("172.16.0.0/12"), 1);
        t.insert(net("172.16.60.0/24"), 2);
        assert_eq!(t.lookup(ip("172.16.60.1")), Some(&2));
        t.remove(net("172.16.60.0/24"));
        assert_eq!(t.lookup(ip("172.16.60.1")), Some(&1));
        assert_eq!(t.lookup(ip("172.32.0.1")), None);
    }

    #[test]
    fn ipv6_and_retain() {
        let mut t = AllowedIps::new();
        t.insert(net("fd00::/64"), 1);
        t.insert(net("fd00::5/128"), 2);
        t.insert(net("172.16.60.5/32"), 2);
        assert_eq!(t.lookup(ip("fd00::5")), Some(&2));
        assert_eq!(t.lookup(ip("fd00::6")), Some(&1));
        t.retain(|v| *v != 2);
        assert_eq!(t.lookup(ip("fd00::5")), Some(&1));
        assert_eq!(t.lookup(ip("172.16.60.5")), None);
    }

    #[test]
    fn remove_if_only_removes_a_matching_value() {
        let mut t = AllowedIps::new();
        t.insert(net("172.16.60.2/32"), 1);
        t.insert(net("fd00::2/128"), 1);
        assert_eq!(t.remove_if(net("172.16.60.2/32"), |v| *v == 2), None);
        assert_eq!(t.lookup(ip("172.16.60.2")), Some(&1));
        assert_eq!(t.remove_if(net("172.16.60.0/24"), |_| true), None);
        assert_eq!(t.remove_if(net("172.16.60.2/32"), |v| *v == 1), Some(1));
        assert_eq!(t.lookup(ip("172.16.60.2")), None);
        assert_eq!(t.remove_if(net("fd00::2/128"), |v| *v == 1), Some(1));
        assert_eq!(t.lookup(ip("fd00::2")), None);
    }

    /// 10,000 laptops' /32s under the subnet's /18 and a few wider prefixes:
    /// every address finds its own host route, the rest the longest prefix
    /// that covers it.
    #[test]
    fn longest_prefix_among_ten_thousand_peers() {
        let mut t = AllowedIps::new();
        let base = u32::from(std::net::Ipv4Addr::new(172, 16, 64, 0));
        t.insert(net("172.16.64.0/18"), 0u32);
        t.insert(net("172.16.96.0/24"), 20_000);
        t.insert(net("0.0.0.0/0"), 30_000);
        for i in 1..=10_000u32 {
            let a = std::net::Ipv4Addr::from(base + 1 + i);
            t.insert(IpNet::from(IpAddr::V4(a)), i);
        }
        for i in 1..=10_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(base + 1 + i));
            assert_eq!(t.lookup(a), Some(&i), "{a}");
        }
        assert_eq!(t.lookup(ip("172.16.64.1")), Some(&0));
        // past the last laptop (172.16.103.17): only the /18 covers them
        assert_eq!(t.lookup(ip("172.16.103.200")), Some(&0));
        assert_eq!(t.lookup(ip("172.16.127.254")), Some(&0));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&30_000));
        // a laptop's /32 inside the /24 wins over it; removing it falls back
        let inside = ip("172.16.96.7");
        let owner = *t.lookup(inside).unwrap();
        assert!((1..=10_000).contains(&owner));
        assert_eq!(t.remove(net("172.16.96.7/32")), Some(owner));
        assert_eq!(t.lookup(inside), Some(&20_000));
    }

    #[test]
    fn replace_returns_old_value() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(net("172.16.60.2/32"), 1), None);
        assert_eq!(t.insert(net("172.16.60.2/32"), 3), Some(1));
        assert_eq!(t.lookup(ip("172.16.60.2")), Some(&3));
    }
}
