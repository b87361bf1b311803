//! Who a request comes from, as the limiters count it: the peer, or the
//! client a trusted proxy names in `X-Forwarded-For`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ipnet::IpNet;

/// A client as the limiters count it. An IPv6 client is its /64: one
/// subscriber is routinely given a whole /64, so counting single addresses
/// would hand each of them 2^64 budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddress {
    V4(Ipv4Addr),
    /// The first 64 bits of the address.
    V6(u64),
}

impl ClientAddress {
    /// The client `ip` stands for; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports IPv4 peers) is its IPv4 address.
    pub fn of(ip: IpAddr) -> ClientAddress {
        match canonical(ip) {
            IpAddr::V4(v4) => ClientAddress::V4(v4),
            IpAddr::V6(v6) => ClientAddress::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddress::V4(v4) => write!(f, "{v4}"),
            ClientAddress::V6(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64))
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client of a request from `peer` that carried the `X-Forwarded-For`
/// values `forwarded` (each header's value, in the order received).
///
/// The header is believed only when the peer is a trusted proxy, and only as
/// far as the chain of trusted proxies goes: walking it from the right, each
/// entry was appended by the hop to its right, so the first entry that is not
/// itself a trusted proxy is the client, and anything left of it may be the
/// client's own invention. An entry that cannot be read ends the walk at the
/// last hop that could be. A chain of trusted proxies only gives its
/// left-most one.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> ClientAddress {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let mut client = canonical(peer);
    if !is_trusted(client) {
        return ClientAddress::of(client);
    }
    let entries: Vec<&str> = forwarded
        .into_iter()
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        let Some(hop) = parse_entry(entry) else {
            break;
        };
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    ClientAddress::of(client)
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn v4(s: &str) -> ClientAddress {
        ClientAddress::of(ip(s))
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let got = client_address(ip("198.51.100.7"), ["203.0.113.1"], &[]);
        assert_eq!(got, v4("198.51.100.7"));
        let other = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("198.51.100.7"), ["203.0.113.1"], &other);
        assert_eq!(got, v4("198.51.100.7"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client claims to be 192.0.2.66; the proxy appended what it saw.
        let got = client_address(ip("10.0.0.2"), ["192.0.2.66, 203.0.113.9"], &trusted);
        assert_eq!(got, v4("203.0.113.9"));
        // Two proxies of ours, each appending its own peer.
        let got = client_address(
            ip("10.0.0.2"),
            ["192.0.2.66, 203.0.113.9, 10.1.2.3"],
            &trusted,
        );
        assert_eq!(got, v4("203.0.113.9"));
        // Several headers are one list, in order.
        let got = client_address(
            ip("10.0.0.2"),
            ["192.0.2.66", "203.0.113.9", "10.1.2.3"],
            &trusted,
        );
        assert_eq!(got, v4("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_without_the_header_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_address(ip("10.0.0.2"), [], &trusted), v4("10.0.0.2"));
    }

    #[test]
    fn an_unreadable_entry_ends_the_walk_at_the_last_readable_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("10.0.0.2"), ["203.0.113.9, garbage, 10.1.2.3"], &trusted);
        assert_eq!(got, v4("10.1.2.3"));
        let got = client_address(ip("10.0.0.2"), ["unknown"], &trusted);
        assert_eq!(got, v4("10.0.0.2"));
    }

    #[test]
    fn entries_with_ports_are_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), ["203.0.113.9:4711"], &trusted),
            v4("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), ["[2001:db8::1]:4711"], &trusted),
            ClientAddress::of(ip("2001:db8::1"))
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), ["[2001:db8::1]"], &trusted),
            ClientAddress::of(ip("2001:db8::1"))
        );
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(
            v4("2001:db8:1:2::1"),
            v4("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(v4("2001:db8:1:2::1"), v4("2001:db8:1:3::1"));
        assert_eq!(v4("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert_eq!(v4("::ffff:192.0.2.1"), v4("192.0.2.1"));
        // A dual-stack listener's IPv4 peer matches an IPv4 proxy range.
        let trusted = nets(&["127.0.0.1/32"]);
        assert_eq!(
            client_address(ip("::ffff:127.0.0.1"), ["203.0.113.9"], &trusted),
            v4("203.0.113.9")
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_gives_the_left_most() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("10.0.0.2"), ["10.9.9.9, 10.1.2.3"], &trusted),
            v4("10.9.9.9")
        );
    }
}
