//! `allowed_outbound_hosts`: which network destinations a component may reach, with the
//! syntax and defaults Spin uses (`scheme://host[:port]`, `*` wildcards, `*.domain`
//! subdomains, port ranges `a..b`, default ports per scheme).

/// The component a Spin service-chaining host (`<component>.spin.internal`) names.
pub fn chained_component(host: &str) -> Option<&str> {
    host.strip_suffix(".spin.internal")
        .filter(|name| !name.is_empty() && !name.contains('.'))
}

/// A component's parsed allow-list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
    allow_all: bool,
}

/// Why a destination is allowed, which decides what it may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An entry names the host exactly: the operator trusts wherever it resolves.
    Named,
    /// Only a wildcard host (`*` or `*.domain`) admits it (e.g. `webhook_hosts =
    /// "https://*:443"`, any URL a user registers): the host may connect only to public unicast addresses
    /// ([`mp3conv_contract::address::is_public`]), checked on the addresses it resolves to when it
    /// connects, so neither numeric host forms nor a DNS answer that changed reach loopback
    /// or the internal network.
    Wildcard,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    scheme: Option<String>,
    host: HostPattern,
    ports: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    /// `*.example.com`: any subdomain, not the domain itself.
    Subdomain(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

/// The port a scheme uses when none is written.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "mysql" => 3306,
        "postgres" => 5432,
        "redis" => 6379,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, String> {
        let mut allowed = AllowedHosts::default();
        for entry in entries {
            if entry == "insecure:allow-all" {
                allowed.allow_all = true;
                continue;
            }
            allowed.entries.push(parse_entry(entry)?);
        }
        Ok(allowed)
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.admission(scheme, host, port).is_some()
    }

    /// How `scheme://host:port` is allowed, if it is: by an entry naming its host (or its
    /// domain, `*.example.com`), or only by a wildcard host (`*`, `insecure:allow-all`).
    pub fn admission(&self, scheme: &str, host: &str, port: u16) -> Option<Admission> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let mut admission = self.allow_all.then_some(Admission::Wildcard);
        for entry in &self.entries {
            let scheme_matches = entry.scheme.as_deref().is_none_or(|s| s == scheme);
            let port_matches = match entry.ports {
                PortPattern::Any => true,
                PortPattern::Range(low, high) => (low..=high).contains(&port),
            };
            if !(scheme_matches && port_matches) {
                continue;
            }
            match &entry.host {
                HostPattern::Any => admission = Some(Admission::Wildcard),
                HostPattern::Exact(exact) if *exact == host => return Some(Admission::Named),
                // A subdomain pattern admits names the operator never saw (`*.com`, or a
                // domain whose subdomains users control), so it is checked like `*`.
                HostPattern::Subdomain(domain)
                    if host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|prefix| !prefix.is_empty()) =>
                {
                    admission = Some(Admission::Wildcard);
                }
                _ => {}
            }
        }
        admission
    }

    /// Whether a URL (`scheme://host[:port]...`) is allowed.
    pub fn allows_url(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let Some(port) = url.port().or_else(|| default_port(url.scheme())) else {
            return false;
        };
        self.allows(url.scheme(), host, port)
    }
}

fn parse_entry(entry: &str) -> Result<Entry, String> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or_else(|| format!("`{entry}` must be `scheme://host[:port]`"))?;
    if scheme.is_empty() || !(scheme == "*" || scheme.bytes().all(|b| b.is_ascii_lowercase())) {
        return Err(format!("`{entry}`: `{scheme}` is not a scheme"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(format!("`{entry}`: a path is not allowed here"));
    }
    let (host, port) = split_host_port(rest).ok_or_else(|| format!("`{entry}`: bad host"))?;
    if host == "self" || host == "self.alt" {
        return Err(format!(
            "`{entry}`: chaining through `self` is not supported by this host; name the component: `http://<component>.spin.internal`"
        ));
    }
    let host_pattern = if host == "*" {
        HostPattern::Any
    } else if let Some(domain) = host.strip_prefix("*.") {
        if domain.is_empty() || domain.contains('*') {
            return Err(format!("`{entry}`: bad wildcard host"));
        }
        HostPattern::Subdomain(format!(".{}", domain.to_ascii_lowercase()))
    } else if host.is_empty() || host.contains('*') {
        return Err(format!("`{entry}`: bad host"));
    } else {
        HostPattern::Exact(host.to_ascii_lowercase())
    };
    let ports = match port {
        Some("*") => PortPattern::Any,
        Some(text) => match text.split_once("..") {
            Some((low, high)) => {
                let low = parse_port(entry, low)?;
                let high = parse_port(entry, high)?;
                if low > high {
                    return Err(format!("`{entry}`: empty port range"));
                }
                PortPattern::Range(low, high)
            }
            None => {
                let port = parse_port(entry, text)?;
                PortPattern::Range(port, port)
            }
        },
        None => {
            let port = default_port(scheme)
                .ok_or_else(|| format!("`{entry}`: give a port, `{scheme}` has no default"))?;
            PortPattern::Range(port, port)
        }
    };
    Ok(Entry {
        scheme: (scheme != "*").then(|| scheme.to_owned()),
        host: host_pattern,
        ports,
    })
}

/// Splits `host[:port]`, with `[v6]` brackets kept out of the host.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((text, None)),
    }
}

fn parse_port(entry: &str, text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("`{entry}`: `{text}` is not a port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn matching() {
        let allowed = hosts(&[
            "https://example.com",
            "http://127.0.0.1:8080",
            "*://localhost:*",
            "https://*.svc.test",
            "mysql://db.local",
            "http://[::1]:9000..9010",
            "http://auth.spin.internal",
        ]);
        let cases = [
            ("https", "example.com", 443, true),
            ("https", "EXAMPLE.com", 443, true),
            ("https", "example.com", 8443, false),
            ("http", "example.com", 80, false),
            ("http", "127.0.0.1", 8080, true),
            ("http", "127.0.0.1", 8081, false),
            ("redis", "localhost", 1, true),
            ("https", "a.svc.test", 443, true),
            ("https", "a.b.svc.test", 443, true),
            ("https", "svc.test", 443, false),
            ("https", "evilsvc.test", 443, false),
            ("mysql", "db.local", 3306, true),
            ("mysql", "db.local", 3307, false),
            ("http", "[::1]", 9005, true),
            ("http", "::1", 9011, false),
            ("http", "auth.spin.internal", 80, true),
            ("http", "gateway.spin.internal", 80, false),
        ];
        for (scheme, host, port, expected) in cases {
            assert_eq!(
                allowed.allows(scheme, host, port),
                expected,
                "{scheme}://{host}:{port}"
            );
        }
    }

    #[test]
    fn admission_tells_named_hosts_from_wildcards() {
        let allowed = hosts(&[
            "https://*:443",
            "https://hooks.example.com",
            "https://*.corp.test",
        ]);
        let cases = [
            ("hooks.example.com", Some(Admission::Named)),
            // A subdomain pattern admits names users pick: checked like `*`.
            ("a.corp.test", Some(Admission::Wildcard)),
            ("localhost", Some(Admission::Wildcard)),
            ("127.0.0.1", Some(Admission::Wildcard)),
            ("0x7f000001", Some(Admission::Wildcard)),
        ];
        for (host, expected) in cases {
            assert_eq!(allowed.admission("https", host, 443), expected, "{host}");
        }
        assert_eq!(allowed.admission("http", "localhost", 443), None);
        assert_eq!(
            hosts(&["insecure:allow-all"]).admission("https", "x", 1),
            Some(Admission::Wildcard)
        );
        assert_eq!(
            hosts(&["https://*.com"]).admission("https", "evil.com", 443),
            Some(Admission::Wildcard)
        );
        assert_eq!(
            hosts(&["http://*.spin.internal", "http://auth.spin.internal"]).admission(
                "http",
                "auth.spin.internal",
                80
            ),
            Some(Admission::Named)
        );
        // spin.toml's default for webhooks is a wildcard.
        assert_eq!(
            hosts(&["https://*:443"]).admission("https", "localhost", 443),
            Some(Admission::Wildcard)
        );
    }

    #[test]
    fn empty_denies_and_allow_all_allows() {
        assert!(!hosts(&[]).allows("https", "example.com", 443));
        assert!(hosts(&["insecure:allow-all"]).allows("ftp", "x", 21));
    }

    #[test]
    fn urls() {
        let allowed = hosts(&["http://127.0.0.1:3000", "https://example.com"]);
        for (url, expected) in [
            ("http://127.0.0.1:3000/x?y", true),
            ("https://example.com/a", true),
            ("http://127.0.0.1/", false),
            ("http://example.com:443/", false),
        ] {
            assert_eq!(
                allowed.allows_url(&url::Url::parse(url).unwrap()),
                expected,
                "{url}"
            );
        }
    }

    #[test]
    fn bad_entries() {
        for bad in [
            "example.com",
            "https://",
            "https://a/b",
            "foo://host",
            "*://host",
            "https://host:99999",
            "https://host:9..1",
            "https://a*b.com",
            "http://self",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
