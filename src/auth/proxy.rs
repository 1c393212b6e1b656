//! Identity headers set by an authenticating proxy (oauth2-proxy and the like) in front of us.
//!
//! The headers prove nothing by themselves: anyone can send them. They are believed only when the
//! connection comes from a configured trusted proxy, which must overwrite whatever the client sent.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::{AuthError, AuthSettings, Method, Principal, PrincipalKind, Role, check_principal, is_service_account};

/// The proxy settings, built even when proxy mode is off: the user header must then be refused.
#[derive(Debug)]
pub(crate) struct ProxyAuth {
    enabled: bool,
    trusted: Vec<IpNet>,
    user_header: HeaderName,
    groups_header: HeaderName,
    group_roles: HashMap<String, Role>,
    default_role: Option<Role>,
}

impl ProxyAuth {
    /// Checks the header names, the trusted proxies and the group roles.
    pub(crate) fn from_settings(settings: &AuthSettings, enabled: bool) -> anyhow::Result<Self> {
        let user_header = header_name(&settings.proxy_user_header).context("--proxy-user-header")?;
        let groups_header = header_name(&settings.proxy_groups_header).context("--proxy-groups-header")?;
        if user_header == groups_header {
            bail!("--proxy-user-header and --proxy-groups-header name the same header");
        }
        if enabled && settings.trusted_proxies.is_empty() {
            bail!(
                "--auth proxy needs the addresses of the proxies to believe: set AUDITGRAPH_TRUSTED_PROXIES \
                 (--trusted-proxies), e.g. 10.0.0.0/8,127.0.0.1"
            );
        }
        let mut group_roles = HashMap::new();
        for mapping in &settings.proxy_group_roles {
            if let Some(earlier) = group_roles.insert(mapping.group.clone(), mapping.role)
                && earlier != mapping.role
            {
                bail!(
                    "AUDITGRAPH_PROXY_GROUP_ROLES maps group {:?} to both {earlier} and {}",
                    mapping.group,
                    mapping.role
                );
            }
        }
        Ok(ProxyAuth {
            enabled,
            trusted: settings.trusted_proxies.iter().map(IpNet::trunc).collect(),
            user_header,
            groups_header,
            group_roles,
            default_role: settings.proxy_default_role,
        })
    }

    /// Whether a peer is a trusted proxy. An IPv4 peer seen through an IPv6 socket
    /// (`::ffff:10.1.2.3`) is compared as the IPv4 address it is.
    fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| {
            let canonical = peer.to_canonical();
            self.trusted
                .iter()
                .any(|net| net.contains(&canonical) || net.contains(&peer))
        })
    }

    /// The proxied principal, `None` when the request carries no user header, or an error when the
    /// header cannot be believed.
    ///
    /// A Kubernetes service-account name (`system:serviceaccount:<namespace>:<name>`) makes a
    /// service here, unlike in a JWT with a kind claim: the trusted proxy vouches for the name
    /// itself, having authenticated the account (as kubernaut does), so the name is evidence.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<Principal>, AuthError> {
        let mut users = headers.get_all(&self.user_header).iter();
        let Some(user) = users.next() else {
            return Ok(None);
        };
        if !self.enabled || !self.trusts(peer) {
            return Err(AuthError::UntrustedProxy {
                header: self.user_header.as_str().to_owned(),
                peer,
            });
        }
        // Several values would leave it to us to pick one, when the proxy meant to send exactly one:
        // a client's own header that the proxy appended to instead of replacing, say.
        for header in [&self.user_header, &self.groups_header] {
            if headers.get_all(header).iter().nth(1).is_some() {
                return Err(AuthError::Invalid(format!("the request has several {header} headers")));
            }
        }
        let name = user
            .to_str()
            .map_err(|_| AuthError::Invalid(format!("the {} header is not printable ASCII", self.user_header)))?
            .trim();
        check_principal(name)
            .map_err(|reason| AuthError::Invalid(format!("the {} header is refused: {reason}", self.user_header)))?;
        Ok(Some(Principal {
            name: name.to_owned(),
            kind: if is_service_account(name) {
                PrincipalKind::Service
            } else {
                PrincipalKind::Human
            },
            role: self.role_of(headers),
            method: Method::Proxy,
        }))
    }

    /// The highest role of the user's mapped groups, else the default role. There is at most one
    /// groups header: several are refused before this is asked.
    fn role_of(&self, headers: &HeaderMap) -> Option<Role> {
        headers
            .get(&self.groups_header)
            .and_then(|value| value.to_str().ok())
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter_map(|group| self.group_roles.get(group.trim()).copied())
            .max()
            .or(self.default_role)
    }
}

fn header_name(name: &str) -> anyhow::Result<HeaderName> {
    HeaderName::try_from(name.trim()).with_context(|| format!("{name:?} is not a valid header name"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthSettings,
    }

    fn proxy(args: &[&str]) -> ProxyAuth {
        let cli = Cli::try_parse_from(std::iter::once("auditgraph").chain(args.iter().copied())).unwrap();
        let enabled = cli.auth.modes.contains(&super::super::AuthMode::Proxy);
        ProxyAuth::from_settings(&cli.auth, enabled).unwrap()
    }

    fn standard() -> ProxyAuth {
        proxy(&[
            "--auth",
            "proxy",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1,fd00::/8",
            "--proxy-group-roles",
            "auditors=reader,sre=writer,secops=admin",
        ])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::try_from(*name).unwrap(), value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_user_from_a_trusted_cidr_is_believed() {
        let principal = standard()
            .authenticate(&headers(&[("x-auth-request-user", " alice ")]), ip("10.1.2.3"))
            .unwrap()
            .unwrap();
        assert_eq!(
            principal,
            Principal {
                name: "alice".into(),
                kind: PrincipalKind::Human,
                role: None,
                method: Method::Proxy,
            }
        );
    }

    #[test]
    fn a_bare_address_trusts_that_address_alone() {
        let request = headers(&[("x-auth-request-user", "alice")]);
        assert!(standard().authenticate(&request, ip("127.0.0.1")).is_ok());
        assert!(matches!(
            standard().authenticate(&request, ip("127.0.0.2")),
            Err(AuthError::UntrustedProxy { .. })
        ));
    }

    #[test]
    fn a_user_header_from_an_untrusted_peer_is_refused() {
        let error = standard()
            .authenticate(&headers(&[("x-auth-request-user", "alice")]), ip("192.168.1.1"))
            .unwrap_err();
        assert_eq!(
            error,
            AuthError::UntrustedProxy {
                header: "x-auth-request-user".into(),
                peer: ip("192.168.1.1"),
            }
        );
    }

    #[test]
    fn a_user_header_from_an_unknown_peer_is_refused() {
        let result = standard().authenticate(&headers(&[("x-auth-request-user", "alice")]), None);
        assert!(matches!(result, Err(AuthError::UntrustedProxy { peer: None, .. })));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_peer_matches_ipv4_cidrs() {
        let request = headers(&[("x-auth-request-user", "alice")]);
        assert!(standard().authenticate(&request, ip("::ffff:10.1.2.3")).is_ok());
        assert!(standard().authenticate(&request, ip("::ffff:192.168.1.1")).is_err());
        assert!(standard().authenticate(&request, ip("fd12::1")).is_ok());
    }

    #[test]
    fn a_user_header_is_refused_when_proxy_mode_is_off_even_from_a_listed_proxy() {
        let off = proxy(&["--auth", "api-keys", "--trusted-proxies", "10.0.0.0/8"]);
        let result = off.authenticate(&headers(&[("x-auth-request-user", "alice")]), ip("10.1.2.3"));
        assert!(matches!(result, Err(AuthError::UntrustedProxy { .. })));
    }

    #[test]
    fn no_user_header_means_no_proxied_principal() {
        let request = headers(&[("x-auth-request-groups", "secops")]);
        assert_eq!(standard().authenticate(&request, ip("192.168.1.1")), Ok(None));
    }

    #[test]
    fn an_empty_overlong_or_unprintable_user_is_refused() {
        for user in ["", "   ", "al\tice", "anonymous", &"x".repeat(256)] {
            let result = standard().authenticate(&headers(&[("x-auth-request-user", user)]), ip("10.0.0.1"));
            assert!(
                matches!(&result, Err(AuthError::Invalid(reason)) if reason.starts_with("the x-auth-request-user header")),
                "{user:?}: {result:?}"
            );
        }
        let ok = standard().authenticate(&headers(&[("x-auth-request-user", &"x".repeat(255))]), ip("10.0.0.1"));
        assert!(ok.is_ok());
    }

    #[test]
    fn a_user_with_a_nul_or_a_newline_cannot_even_reach_us() {
        // HTTP forbids both in a header value, so the server's parser refuses them before we are
        // asked; the name check would refuse them too.
        for user in [&b"al\0ice"[..], b"al\nice", b"alice\r\n"] {
            assert!(HeaderValue::from_bytes(user).is_err(), "{user:?}");
        }
        let mut request = HeaderMap::new();
        request.insert("x-auth-request-user", HeaderValue::from_bytes(b"al\xffice").unwrap());
        let result = standard().authenticate(&request, ip("10.0.0.1"));
        assert_eq!(
            result,
            Err(AuthError::invalid(
                "the x-auth-request-user header is not printable ASCII"
            ))
        );
    }

    #[test]
    fn several_user_headers_are_refused() {
        let request = headers(&[("x-auth-request-user", "alice"), ("x-auth-request-user", "bob")]);
        assert_eq!(
            standard().authenticate(&request, ip("10.0.0.1")),
            Err(AuthError::invalid(
                "the request has several x-auth-request-user headers"
            ))
        );
    }

    #[test]
    fn several_groups_headers_are_refused() {
        let request = headers(&[
            ("x-auth-request-user", "alice"),
            ("x-auth-request-groups", "auditors"),
            ("x-auth-request-groups", "secops"),
        ]);
        assert_eq!(
            standard().authenticate(&request, ip("10.0.0.1")),
            Err(AuthError::invalid(
                "the request has several x-auth-request-groups headers"
            ))
        );
        assert!(matches!(
            standard().authenticate(&request, ip("192.168.1.1")),
            Err(AuthError::UntrustedProxy { .. })
        ));
    }

    #[test]
    fn the_highest_role_of_the_mapped_groups_wins() {
        let role = |groups: Option<&str>| {
            let mut pairs = vec![("x-auth-request-user", "alice")];
            pairs.extend(groups.map(|g| ("x-auth-request-groups", g)));
            standard()
                .authenticate(&headers(&pairs), ip("10.0.0.1"))
                .unwrap()
                .unwrap()
                .role
        };
        assert_eq!(role(Some("auditors")), Some(Role::Reader));
        assert_eq!(role(Some("auditors, sre")), Some(Role::Writer));
        assert_eq!(role(Some("sre,secops,auditors")), Some(Role::Admin));
        assert_eq!(role(Some("marketing")), None);
        assert_eq!(role(Some("SRE")), None, "group names are case-sensitive");
        assert_eq!(role(None), None);
    }

    #[test]
    fn a_user_in_no_mapped_group_gets_the_default_role() {
        let with_default = proxy(&[
            "--auth",
            "proxy",
            "--trusted-proxies",
            "10.0.0.0/8",
            "--proxy-group-roles",
            "secops=admin",
            "--proxy-default-role",
            "reader",
        ]);
        let request = headers(&[("x-auth-request-user", "alice"), ("x-auth-request-groups", "marketing")]);
        let principal = with_default.authenticate(&request, ip("10.0.0.1")).unwrap().unwrap();
        assert_eq!(principal.role, Some(Role::Reader));
    }

    #[test]
    fn a_service_account_name_makes_a_service_only_with_both_parts() {
        let kind = |user: &str| {
            standard()
                .authenticate(&headers(&[("x-auth-request-user", user)]), ip("10.0.0.1"))
                .unwrap()
                .unwrap()
                .kind
        };
        assert_eq!(kind("system:serviceaccount:ci:deployer"), PrincipalKind::Service);
        assert_eq!(kind("system:serviceaccount:"), PrincipalKind::Human);
        assert_eq!(kind("system:serviceaccount:ci"), PrincipalKind::Human);
        assert_eq!(kind("system:serviceaccount::deployer"), PrincipalKind::Human);
        assert_eq!(kind("system:serviceaccount:ci:"), PrincipalKind::Human);
        assert_eq!(kind("alice"), PrincipalKind::Human);
    }

    #[test]
    fn a_service_account_name_from_an_untrusted_peer_is_refused() {
        let request = headers(&[("x-auth-request-user", "system:serviceaccount:ci:deployer")]);
        assert!(matches!(
            standard().authenticate(&request, ip("192.168.1.1")),
            Err(AuthError::UntrustedProxy { .. })
        ));
    }

    #[test]
    fn the_header_names_are_configurable() {
        let custom = proxy(&[
            "--auth",
            "proxy",
            "--trusted-proxies",
            "10.0.0.0/8",
            "--proxy-user-header",
            "X-Forwarded-User",
            "--proxy-groups-header",
            "x-forwarded-groups",
            "--proxy-group-roles",
            "sre=writer",
        ]);
        let request = headers(&[("x-forwarded-user", "alice"), ("x-forwarded-groups", "sre")]);
        let principal = custom.authenticate(&request, ip("10.0.0.1")).unwrap().unwrap();
        assert_eq!((principal.name.as_str(), principal.role), ("alice", Some(Role::Writer)));
    }
}
