//! Which addresses a user may make the system reach (a link to fetch, a webhook to call).
//!
//! Only public unicast addresses pass [`is_public`]: not this machine, not a private or
//! link-local network (where cloud metadata services live), not multicast, broadcast,
//! documentation, benchmarking or reserved space, and not the IPv6 forms that carry an IPv4
//! address inside (mapped, compatible, NAT64, 6to4, Teredo), which would smuggle a private
//! IPv4 address past an IPv6-only check.
//!
//! [`is_local_name`] covers host names that name this machine or a private network whatever
//! DNS says. A name that passes still has to resolve to public addresses when it is used:
//! DNS can answer differently later, so whoever connects checks the resolved address again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

/// Whether an IPv4 address is public unicast.
pub fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // "This network" (0/8): 0.x.y.z reaches this host on Linux.
        || a == 0
        // Shared address space (CGNAT), which also holds 100.100.100.200 (a metadata service).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments (192.0.0/24) and the retired 6to4 relay anycast.
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 88 && c == 99)
        // Benchmarking (198.18/15).
        || (a == 198 && (b == 18 || b == 19))
        // Reserved (240/4), which includes the broadcast address.
        || a >= 240)
}

/// Whether an IPv6 address (not IPv4-mapped) is public unicast.
pub fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7, includes AWS's fd00:ec2::254) and link-local (fe80::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Site-local (fec0::/10), deprecated but still routed locally by some stacks.
        || (first & 0xffc0) == 0xfec0
        // Documentation (2001:db8::/32, 3fff::/20).
        || (first == 0x2001 && second == 0x0db8)
        || (first & 0xfff0) == 0x3ff0
        // Discard-only (100::/64).
        || (first == 0x0100 && ip.segments()[1..4] == [0, 0, 0])
        // Forms that carry an IPv4 address: NAT64 (64:ff9b::/96 and 64:ff9b:1::/48), 6to4
        // (2002::/16), IPv4-compatible (::a.b.c.d).
        || first == 0x0064
        || first == 0x2002
        || ip.to_ipv4().is_some()
        // IETF protocol assignments (2001::/23): Teredo (2001::/32, IPv4 inside too),
        // benchmarking, ORCHID and the like.
        || (first == 0x2001 && second < 0x0200))
}

/// Whether a host name names this machine or a private network by itself, whatever it
/// resolves to: `localhost` and its subdomains, the special-use `.internal` (cloud metadata
/// names), `.local` (mDNS) and `.home.arpa`, and single-label names, which resolvers complete
/// with the local search domains (`metadata` becomes `metadata.google.internal`). Case and a
/// trailing dot do not matter.
pub fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || !name.contains('.') {
        return true;
    }
    name == "localhost"
        || [".localhost", ".internal", ".local", ".home.arpa"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
        || name == "home.arpa"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|_| panic!("{text} is an address"))
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81b::200e",
            "2001:4860:4860::8888",
            "::ffff:93.184.216.34",
        ] {
            assert!(is_public(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for local in [
            // IPv4: this host, loopback, private, link-local (metadata), CGNAT.
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.8",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            // Protocol assignments, 6to4 relay, benchmarking, documentation.
            "192.0.0.170",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            // Multicast, reserved, broadcast.
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6: loopback, unspecified, ULA (AWS metadata), link-local, site-local, multicast.
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            // Documentation and discard.
            "2001:db8::1",
            "3fff::1",
            "100::1",
            // IPv4 inside IPv6: mapped, compatible, NAT64 (both prefixes), Teredo, 6to4.
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2001::1",
            "2002:7f00:1::1",
            // IETF assignments (benchmarking, ORCHID).
            "2001:2::1",
            "2001:10::1",
        ] {
            assert!(!is_public(ip(local)), "{local} must not be public");
        }
    }

    #[test]
    fn numeric_host_forms_of_loopback_are_not_public() {
        // What `https://0x7f000001/`, `https://2130706433/`, `https://127.1/`,
        // `https://0177.0.0.1/` and `https://0/` name once a URL parser has read them.
        for form in [0x7f00_0001u32, 2_130_706_433, (0o177 << 24) | 1, 0] {
            assert!(!is_public(IpAddr::V4(Ipv4Addr::from(form))), "{form:#x}");
        }
    }

    #[test]
    fn local_names() {
        for local in [
            "localhost",
            "LOCALHOST.",
            "a.b.localhost",
            "metadata.google.internal",
            "metadata.google.internal.",
            "printer.local",
            "router.home.arpa",
            "home.arpa",
            "metadata",
            "intranet.",
            "",
        ] {
            assert!(is_local_name(local), "{local:?} is local");
        }
        for public in [
            "example.com",
            "hooks.example.com.",
            "localhost.example.com",
            "internal.example.com",
            "xn--caf-dma.example",
        ] {
            assert!(!is_local_name(public), "{public:?} is not local by name");
        }
    }
}
