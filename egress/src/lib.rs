//! Which hosts Dana may reach on a user's behalf.
//!
//! An integration config names hosts the BFF will connect to when it verifies or uses the
//! config (SMTP servers, databases, a Salesforce instance). A user who could name `127.0.0.1`,
//! `10.0.0.5` or `169.254.169.254` would turn those connections, and the verification result, into
//! a probe of the platform's own network. So literal loopback, private, link-local, shared,
//! multicast and unspecified addresses are refused, as are names that resolve locally by
//! convention (`localhost`, `*.local`, `*.internal`, `*.localhost`) and numeric spellings of an
//! address that resolvers accept (`2130706433`, `0x7f.1`, `127.1`).
//!
//! Two places apply the rule: the extension when a config is written (names and literal
//! addresses), and the BFF when it connects (the addresses a name resolves to, since a public
//! name can point at a private address). Both use this crate, so they cannot drift apart.
//!
//! A deployment whose databases really live on a private network lists them: the superuser-only
//! setting `dana.integration_allowed_hosts` in the database, `BFF_EGRESS_ALLOW` in the BFF
//! (comma-separated names, addresses or CIDR blocks, parsed by [`HostPolicy::parse`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The hosts allowed despite the rules above.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    names: Vec<String>,
    blocks: Vec<(IpAddr, u8)>,
}

impl HostPolicy {
    /// Parses `dana.integration_allowed_hosts`; entries that are neither a name, an address nor a
    /// CIDR block are ignored (the setting is the superuser's, checked when read).
    pub fn parse(setting: &str) -> HostPolicy {
        let mut policy = HostPolicy::default();
        for entry in setting.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (addr, bits) = match entry.split_once('/') {
                Some((addr, bits)) => (addr, bits.parse::<u8>().ok()),
                None => (entry, None),
            };
            match addr.parse::<IpAddr>() {
                Ok(ip) => {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    policy.blocks.push((ip, bits.unwrap_or(max).min(max)));
                }
                Err(_) => policy
                    .names
                    .push(entry.trim_end_matches('.').to_ascii_lowercase()),
            }
        }
        policy
    }

    /// True when the operator listed this host (by name, address or block).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => self
                .blocks
                .iter()
                .any(|(net, bits)| in_block(ip, *net, *bits)),
            Err(_) => false,
        }
    }

    /// True when the operator listed this resolved address.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.blocks
            .iter()
            .any(|(net, bits)| in_block(ip, *net, *bits))
    }

    /// `Ok` for an address Dana may connect to: public, or listed by the operator.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if is_public(ip) || self.allows_ip(ip) {
            Ok(())
        } else {
            Err(format!(
                "{ip} is a loopback, private, link-local or reserved address"
            ))
        }
    }

    /// `Ok` for a host an integration may name; else why not.
    pub fn check(&self, host: &str) -> Result<(), String> {
        if self.allows(host) {
            return Ok(());
        }
        let bare = host.trim_matches(['[', ']']);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return if is_public(ip) {
                Ok(())
            } else {
                Err(format!("{host} is a loopback, private, link-local or reserved address; integrations must name a public host"))
            };
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let last = name.rsplit('.').next().unwrap_or("");
        if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
            return Err(format!(
                "{host} is a numeric address in disguise; write a host name or a public IP address"
            ));
        }
        let local = name == "localhost"
            || ["localhost", "local", "internal", "localdomain", "home.arpa"]
                .iter()
                .any(|suffix| name.ends_with(&format!(".{suffix}")));
        if local {
            return Err(format!(
                "{host} names a local or internal host; integrations must name a public host"
            ));
        }
        Ok(())
    }
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b))) // benchmarking
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (maps onto IPv4)
}

/// The hosts of a MongoDB connection string (`mongodb://user:pw@h1:27017,h2/db?…`).
pub fn mongodb_hosts(uri: &str) -> Vec<String> {
    let rest = uri
        .strip_prefix("mongodb+srv://")
        .or_else(|| uri.strip_prefix("mongodb://"))
        .unwrap_or("");
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            if let Some(v6) = h.strip_prefix('[') {
                v6.split(']').next().unwrap_or("").to_owned()
            } else {
                h.split(':').next().unwrap_or("").to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn internal_addresses_are_refused() {
        let policy = HostPolicy::default();
        for host in [
            "127.0.0.1",
            "10.0.0.5",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "[::1]",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "localhost",
            "db.localhost",
            "printer.local",
            "metadata.google.internal",
            "2130706433",
            "127.1",
            "0x7f.1",
        ] {
            assert!(policy.check(host).is_err(), "{host} was allowed");
        }
        for host in [
            "smtp.example.com",
            "8.8.8.8",
            "2606:4700::1111",
            "db.example.io.",
        ] {
            assert!(policy.check(host).is_ok(), "{host} was refused");
        }
    }

    #[test]
    fn the_allowlist_admits_names_addresses_and_blocks() {
        let policy = HostPolicy::parse("db.internal, 10.1.0.0/16, 192.168.5.5, fd00::/8, junk/x");
        assert!(policy.check("db.internal").is_ok());
        assert!(policy.check("DB.Internal.").is_ok());
        assert!(policy.check("10.1.200.3").is_ok());
        assert!(policy.check("10.2.0.1").is_err());
        assert!(policy.check("192.168.5.5").is_ok());
        assert!(policy.check("fd12::1").is_ok());
        assert!(policy.check("other.internal").is_err());
    }

    #[test]
    fn mongodb_hosts_are_found_past_credentials_and_options() {
        assert_eq!(
            mongodb_hosts("mongodb://u:p@a.example.com:27017,[::1]:27018,10.0.0.1/db?ssl=true"),
            ["a.example.com", "::1", "10.0.0.1"]
        );
        assert_eq!(
            mongodb_hosts("mongodb+srv://cluster0.example.net/x"),
            ["cluster0.example.net"]
        );
    }
}
