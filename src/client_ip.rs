//! The client's address behind reverse proxies (`TRUSTED_PROXIES`).
//!
//! Behind a load balancer every TCP peer is the balancer, so per-IP limits,
//! throttles, logs and the admin listing would see one address for every
//! client. When the peer is a trusted proxy, the client is the right-most
//! entry of the forwarding header that is not itself a trusted proxy (what
//! nginx's `real_ip_recursive on` and Express's `trust proxy` do): each
//! trusted hop appends the address it saw, so walking right to left past
//! trusted hops reaches the first address no trusted party vouches beyond.
//! From any other peer the header is ignored: it is the client's own claim,
//! and believing it would let one attacker appear as any number of
//! addresses and walk around every per-IP limit.
//!
//! The header is the one the proxies write (`FORWARDED_HEADER`):
//! `X-Forwarded-For` (the default: nginx, HAProxy, AWS ALB) or RFC 7239
//! `Forwarded` (its `for=` parameters). Exactly one is read: a proxy that
//! appends to one passes the other through as the client wrote it, so
//! reading both would believe a forgery.
//!
//! [`derive`] is that rule, pure. `crate::server` applies it once per
//! request and stores the result as [`ClientIp`] in the request's
//! extensions; every per-IP consumer reads it with [`of`] and nothing reads
//! the TCP peer (`tests/proxies.rs` checks the source for that).

use std::fmt;
use std::net::IpAddr;

use http::{Extensions, HeaderMap};
use thiserror::Error;

/// The header trusted proxies append the address they saw to (default).
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// RFC 7239's header (`Forwarded: for=192.0.2.60;proto=https`).
pub const FORWARDED: &str = "forwarded";

/// Which header trusted proxies name the client in (`FORWARDED_HEADER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardingHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

impl ForwardingHeader {
    /// `x-forwarded-for` or `forwarded`, any case.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            X_FORWARDED_FOR => Some(Self::XForwardedFor),
            FORWARDED => Some(Self::Forwarded),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => X_FORWARDED_FOR,
            Self::Forwarded => FORWARDED,
        }
    }

    /// The address one hop's entry names; `None` when it names none that
    /// can be used (`unknown`, an obfuscated `_node`, no `for=`, garbage).
    fn address(self, entry: &str) -> Option<IpAddr> {
        match self {
            Self::XForwardedFor => forwarded_entry(entry),
            Self::Forwarded => forwarded_for(entry),
        }
    }
}

/// The client's address as derived for this request (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address of a request, if the accept loop derived one (it
/// always does; requests built elsewhere, as in unit tests, have none).
pub fn of(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ClientIp>().map(|c| c.0)
}

/// One entry of `TRUSTED_PROXIES` that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{entry}` {reason}")]
pub struct BadProxy {
    pub entry: String,
    pub reason: String,
}

/// An address or a CIDR block (`10.0.0.5`, `10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange {
    network: IpAddr,
    prefix: u8,
}

impl ProxyRange {
    pub fn parse(entry: &str) -> Result<Self, BadProxy> {
        let bad = |reason: &str| BadProxy {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, bits)) => (
                addr,
                Some(
                    bits.parse::<u32>()
                        .map_err(|_| bad("has a prefix length that is not a number"))?,
                ),
            ),
            None => (entry, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad("is not an IP address or CIDR block (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad(&format!("has a prefix longer than {max} bits")));
        }
        let prefix = prefix as u8; // at most 128
        // Connections arrive as IPv4-mapped IPv6 on dual-stack sockets and
        // are compared in canonical form: so are the ranges.
        let (network, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (addr.to_canonical(), prefix - 96)
            }
            _ => (addr, prefix),
        };
        if mask(network, prefix) != network {
            // 10.0.0.1/8 is most likely a typo for /32 or 10.0.0.0/8: say so
            // rather than trust sixteen million addresses by accident.
            return Err(bad(
                "has host bits set: give the network address of the block",
            ));
        }
        Ok(ProxyRange { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

/// `ip` with all but its first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((bits & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((bits & m).to_be_bytes())
        }
    }
}

impl fmt::Display for ProxyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The proxies whose forwarding header is believed, and which header that
/// is. No proxies (the default): nobody's, and the client is the TCP peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Vec<ProxyRange>,
    header: ForwardingHeader,
}

impl TrustedProxies {
    /// Parses a list of addresses and CIDR blocks; the error names the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxy> {
        entries
            .iter()
            .map(|e| ProxyRange::parse(e.as_ref().trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(|ranges| TrustedProxies {
                ranges,
                header: ForwardingHeader::default(),
            })
    }

    /// The same proxies, naming the client in `header`.
    pub fn with_header(self, header: ForwardingHeader) -> Self {
        Self { header, ..self }
    }

    pub fn header(&self) -> ForwardingHeader {
        self.header
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    pub fn ranges(&self) -> &[ProxyRange] {
        &self.ranges
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`203.0.113.7:5678`, `[2001:db8::7]:443`, as some balancers write it).
fn forwarded_entry(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// The `for=` node of one `Forwarded` element (RFC 7239 §4, §6):
/// `for=192.0.2.43`, `for="192.0.2.43:4711"`, `for="[2001:db8::17]"`,
/// `for="[2001:db8::17]:4711"`; parameter names in any case.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim())
    })?;
    let node = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let host = match node.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => rest.split_once(']').map(|(v6, _)| v6)?,
        // `v4` or `v4:port`
        None => node.split(':').next()?,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The client's address for a request from `peer` (see the module doc).
///
/// Several headers count as one list, in order (RFC 9110 §5.3). Empty
/// entries are skipped. An entry that names no address (or a header that
/// is not text) stops the walk at the peer: nothing to its left can be
/// attributed, and the conservative answer is the address we know. When
/// every entry is a trusted proxy, the client is the peer too.
pub fn derive(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let header = trusted.header();
    for value in headers.get_all(header.name()).iter().rev() {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        for entry in text.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
            match header.address(entry) {
                Some(ip) if trusted.contains(ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).expect("valid list")
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                X_FORWARDED_FOR,
                http::HeaderValue::from_bytes(v).expect("header value"),
            );
        }
        h
    }

    fn client(peer: &str, xff: &[&str], proxies: &[&str]) -> IpAddr {
        let values: Vec<&[u8]> = xff.iter().map(|v| v.as_bytes()).collect();
        derive(ip(peer), &headers(&values), &trusted(proxies))
    }

    #[test]
    fn ranges_parse_addresses_and_blocks() {
        let r = ProxyRange::parse("10.0.0.0/8").expect("block");
        assert!(r.contains(ip("10.200.3.4")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(!r.contains(ip("::1")), "families never match");
        let one = ProxyRange::parse("192.168.1.10").expect("address");
        assert!(one.contains(ip("192.168.1.10")) && !one.contains(ip("192.168.1.11")));
        let v6 = ProxyRange::parse("fd00::/8").expect("v6 block");
        assert!(v6.contains(ip("fd12:3456::1")) && !v6.contains(ip("fe80::1")));
        assert!(
            ProxyRange::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
        // Dual-stack sockets report IPv4 peers as IPv4-mapped IPv6.
        assert!(one.contains(ip("::ffff:192.168.1.10")));
        let mapped = ProxyRange::parse("::ffff:10.0.0.0/104").expect("mapped block");
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.1.2.3")));
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, says) in [
            ("nginx", "not an IP address"),
            ("10.0.0.0/33", "longer than 32"),
            ("fd00::/129", "longer than 128"),
            ("10.0.0.0/x", "not a number"),
            ("10.0.0.1/8", "host bits"),
            ("*", "not an IP address"),
            ("10.0.0.0/", "not a number"),
        ] {
            let e = ProxyRange::parse(entry).expect_err(entry);
            assert_eq!(e.entry, entry);
            assert!(e.to_string().contains(says), "{entry}: {e}");
        }
        let e = TrustedProxies::parse(&["10.0.0.1", " 10.0.0.300 "]).expect_err("second");
        assert_eq!(e.entry, "10.0.0.300");
        assert!(
            TrustedProxies::parse::<&str>(&[])
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &[]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]),
            ip("203.0.113.9")
        );
        // Not even an address of a trusted proxy in the header helps.
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1, 10.0.0.5"], &["10.0.0.0/8"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let lb = &["10.0.0.5"];
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1"], lb),
            ip("198.51.100.1")
        );
        // A client that sends its own header gets it appended to: its claim
        // is left of the address the proxy saw, and is not believed.
        assert_eq!(
            client("10.0.0.5", &["1.1.1.1, 198.51.100.1"], lb),
            ip("198.51.100.1")
        );
        // Two tiers of trusted proxies are walked past (recursive).
        assert_eq!(
            client(
                "10.0.0.5",
                &["1.1.1.1, 198.51.100.1, 10.0.1.7"],
                &["10.0.0.0/16"]
            ),
            ip("198.51.100.1")
        );
        // No header, an empty one, or only trusted hops: the peer.
        assert_eq!(client("10.0.0.5", &[], lb), ip("10.0.0.5"));
        assert_eq!(client("10.0.0.5", &[" , "], lb), ip("10.0.0.5"));
        assert_eq!(
            client("10.0.0.5", &["10.0.0.5, 10.0.0.5"], lb),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn several_headers_are_one_list_in_order() {
        let lb = &["10.0.0.5", "10.0.0.6"];
        assert_eq!(
            client("10.0.0.5", &["1.1.1.1", "198.51.100.1", "10.0.0.6"], lb),
            ip("198.51.100.1")
        );
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1, 10.0.0.6", "10.0.0.5"], lb),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn malformed_entries_stop_at_the_peer() {
        let lb = &["10.0.0.5"];
        for xff in [
            "unknown",
            "_hidden",
            "198.51.100.1 garbage",
            "300.1.1.1",
            "2001:db8::g",
        ] {
            assert_eq!(client("10.0.0.5", &[xff], lb), ip("10.0.0.5"), "{xff}");
        }
        // Garbage left of the first untrusted entry does not matter.
        assert_eq!(
            client("10.0.0.5", &["not-an-ip, 198.51.100.1"], lb),
            ip("198.51.100.1")
        );
        // A trusted hop, then garbage: the peer, not the trusted hop's claim.
        assert_eq!(
            client("10.0.0.5", &["garbage, 10.0.0.5"], lb),
            ip("10.0.0.5")
        );
        // A header that is not text.
        let h = headers(&[b"198.51.100.1\xff"]);
        assert_eq!(derive(ip("10.0.0.5"), &h, &trusted(lb)), ip("10.0.0.5"));
    }

    #[test]
    fn ipv6_and_ports_and_mapped_addresses() {
        let lb = &["fd00::/8", "10.0.0.5"];
        assert_eq!(client("fd00::1", &["2001:db8::7"], lb), ip("2001:db8::7"));
        assert_eq!(
            client("fd00::1", &["[2001:db8::7]:443"], lb),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1:5678"], lb),
            ip("198.51.100.1")
        );
        // A dual-stack listener sees the IPv4 proxy as ::ffff:10.0.0.5; the
        // client comes out in canonical form.
        assert_eq!(
            client("::ffff:10.0.0.5", &["::ffff:198.51.100.1"], lb),
            ip("198.51.100.1")
        );
        assert_eq!(client("::ffff:203.0.113.9", &[], lb), ip("203.0.113.9"));
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                FORWARDED,
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        h
    }

    #[test]
    fn forwarded_names_the_node_in_every_rfc_7239_form() {
        for (element, want) in [
            ("for=192.0.2.43", Some("192.0.2.43")),
            ("For=\"192.0.2.43:4711\"", Some("192.0.2.43")),
            ("for=\"[2001:db8:cafe::17]\"", Some("2001:db8:cafe::17")),
            (
                "for=\"[2001:db8:cafe::17]:4711\";proto=https",
                Some("2001:db8:cafe::17"),
            ),
            (
                "proto=http; for=198.51.100.17 ;by=203.0.113.60",
                Some("198.51.100.17"),
            ),
            ("for=\"[::ffff:192.0.2.1]\"", Some("192.0.2.1")),
            ("for=unknown", None),
            ("for=_hidden", None),
            ("proto=https", None),
            ("for=\"[2001:db8::17\"", None),
        ] {
            assert_eq!(forwarded_for(element), want.map(ip), "{element}");
        }
    }

    #[test]
    fn with_forwarded_the_right_most_untrusted_for_is_the_client_and_x_forwarded_for_is_ignored() {
        let proxies = trusted(&["10.0.0.0/8"]).with_header(ForwardingHeader::Forwarded);
        let mut h = forwarded(&[
            "for=198.51.100.9, for=203.0.113.5",
            "for=10.0.0.7;proto=https",
        ]);
        h.append(
            X_FORWARDED_FOR,
            http::HeaderValue::from_static("192.0.2.99"),
        );
        assert_eq!(derive(ip("10.0.0.1"), &h, &proxies), ip("203.0.113.5"));
        // An untrusted peer's claim is not believed, in either header.
        assert_eq!(derive(ip("192.0.2.1"), &h, &proxies), ip("192.0.2.1"));
        // `unknown` right of the first untrusted hop: stop at the peer.
        let h = forwarded(&["for=198.51.100.9, for=unknown"]);
        assert_eq!(derive(ip("10.0.0.1"), &h, &proxies), ip("10.0.0.1"));
        // The default header does not read `Forwarded` (a forgery there is
        // passed through by a proxy that appends X-Forwarded-For).
        let xff = trusted(&["10.0.0.0/8"]);
        let mut h = forwarded(&["for=198.51.100.9"]);
        assert_eq!(derive(ip("10.0.0.1"), &h, &xff), ip("10.0.0.1"));
        h.append(
            X_FORWARDED_FOR,
            http::HeaderValue::from_static("203.0.113.8"),
        );
        assert_eq!(derive(ip("10.0.0.1"), &h, &xff), ip("203.0.113.8"));
    }

    #[test]
    fn the_header_names_parse_in_any_case() {
        assert_eq!(
            ForwardingHeader::parse("Forwarded"),
            Some(ForwardingHeader::Forwarded)
        );
        assert_eq!(
            ForwardingHeader::parse(" X-Forwarded-For "),
            Some(ForwardingHeader::XForwardedFor)
        );
        assert_eq!(ForwardingHeader::parse("x-real-ip"), None);
    }
}
