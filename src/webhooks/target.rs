//! Where deliveries may go (SSRF): only URLs an operator registered through
//! the admin API, validated then (`http`/`https`, a host, no credentials);
//! never a URL from an event. Unless `WEBHOOK_ALLOW_PRIVATE` is on, a target
//! that is (or resolves to) a loopback, private, link-local, shared or
//! otherwise non-public address is refused: at registration for addresses
//! written in the URL, and at every connection for names (the resolver
//! drops such addresses, so a name that later points inside is not
//! followed). Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("`url` is not a URL: {0}")]
    Parse(String),
    #[error("`url` must use http or https")]
    Scheme,
    #[error("`url` must name a host")]
    NoHost,
    #[error("`url` must not carry credentials")]
    Credentials,
    #[error("`url` is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("`url` points at a private or local address (set WEBHOOK_ALLOW_PRIVATE=on to allow)")]
    Private,
}

/// Parses and checks a URL an operator registers.
pub fn validate(raw: &str, allow_private: bool) -> Result<Url, TargetError> {
    if raw.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    let url = Url::parse(raw).map_err(|e| TargetError::Parse(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let host = url.host().ok_or(TargetError::NoHost)?;
    if !allow_private {
        let public = match host {
            url::Host::Ipv4(ip) => is_public(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_public(IpAddr::V6(ip)),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name != "localhost" && !name.ends_with(".localhost")
            }
        };
        if !public {
            return Err(TargetError::Private);
        }
    }
    Ok(url)
}

/// A globally routable unicast address.
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
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// The resolver of the delivery client when private targets are refused:
/// keeps only public addresses, and fails when none is left.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no public address").into();
                return Err(e);
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_public_http_and_https() {
        for ok in [
            "https://hooks.example.com/in",
            "http://93.184.216.34:8080/x?y=1",
            "https://[2606:4700::1111]/",
        ] {
            assert!(validate(ok, false).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_other_schemes_credentials_and_private_targets() {
        let cases = [
            ("ftp://example.com/", TargetError::Scheme),
            ("file:///etc/passwd", TargetError::Scheme),
            ("https://user:pw@example.com/", TargetError::Credentials),
            ("http://127.0.0.1:3001/", TargetError::Private),
            ("http://localhost/", TargetError::Private),
            ("http://api.localhost./", TargetError::Private),
            ("http://10.1.2.3/", TargetError::Private),
            ("http://172.16.0.1/", TargetError::Private),
            ("http://192.168.1.1/", TargetError::Private),
            (
                "http://169.254.169.254/latest/meta-data",
                TargetError::Private,
            ),
            ("http://100.64.0.1/", TargetError::Private),
            ("http://0.0.0.0/", TargetError::Private),
            ("http://[::1]/", TargetError::Private),
            ("http://[fd00::1]/", TargetError::Private),
            ("http://[fe80::1]/", TargetError::Private),
            ("http://[::ffff:127.0.0.1]/", TargetError::Private),
        ];
        for (url, want) in cases {
            assert_eq!(validate(url, false).unwrap_err(), want, "{url}");
        }
        assert!(matches!(
            validate("not a url", false),
            Err(TargetError::Parse(_))
        ));
        assert_eq!(
            validate(&format!("https://e.com/{}", "a".repeat(3000)), false).unwrap_err(),
            TargetError::TooLong
        );
    }

    #[test]
    fn allow_private_opens_loopback_only_through_the_switch() {
        assert!(validate("http://127.0.0.1:9/hook", true).is_ok());
        assert_eq!(
            validate("ftp://127.0.0.1/", true).unwrap_err(),
            TargetError::Scheme
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_private_addresses() {
        let name: Name = "localhost".parse().unwrap();
        assert!(PublicOnly.resolve(name).await.is_err());
    }
}
