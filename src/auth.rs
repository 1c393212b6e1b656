//! Who is calling: API keys, JWTs (HS256 with a shared secret, RS256/ES256 from a JWKS file) and
//! identity headers set by a trusted authenticating proxy, any of them on at once.
//!
//! This module only answers "who is this and which role do they hold"; what a role may do, and
//! which actor a write is recorded under, is decided where the request is served.
//!
//! Identity headers are the dangerous part: anyone can send `x-auth-request-user: admin`. They are
//! believed only from a configured trusted proxy and refused from everywhere else, whatever the
//! mode, so a misconfigured deployment fails loudly instead of trusting or silently ignoring them.

mod jwt;
pub mod keys;
mod proxy;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::http::{HeaderMap, header};

pub use keys::{CreatedKey, create_key};

/// The realm named in `WWW-Authenticate` challenges.
const REALM: &str = "auditgraph";

/// The longest principal name accepted, in bytes: names end up in audit records and logs, so an
/// unbounded one is refused rather than stored.
pub(crate) const MAX_PRINCIPAL_LEN: usize = 255;

/// Checks a principal name from any source (an API key, a JWT claim, a proxy header, an operator
/// named on the command line), so that every mode records only names an audit trail can show:
/// not blank, at most `MAX_PRINCIPAL_LEN` bytes, free of control characters (a NUL or a newline
/// could forge or truncate log lines and records), and not `anonymous`, which stands for the
/// unauthenticated caller and must not be borrowed by an authenticated one.
///
/// The reason returned never repeats the name, which may have come from an untrusted token.
pub fn check_principal(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the principal is empty".to_owned());
    }
    if name.len() > MAX_PRINCIPAL_LEN {
        return Err(format!("the principal is longer than {MAX_PRINCIPAL_LEN} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err("the principal contains control characters".to_owned());
    }
    if name.trim().eq_ignore_ascii_case(ANONYMOUS) {
        return Err(format!(
            "the principal {ANONYMOUS:?} is reserved for callers when authentication is off"
        ));
    }
    Ok(())
}

/// The name of the caller when authentication is off.
const ANONYMOUS: &str = "anonymous";

/// Roles, ordered: Reader < Writer < Admin (a writer may read; an admin may do everything).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May read events and trees.
    Reader,
    /// May read and record events.
    Writer,
    /// May do everything, administration included.
    Admin,
}

impl Role {
    /// The role's name as written in configuration, tokens and key files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `reader`, `writer` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected reader, writer or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Case-insensitive, because identity providers disagree on the case of group and role names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Role::Reader, Role::Writer, Role::Admin]
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Who a principal is, which decides the actor rule applied elsewhere: a human becomes the actor of
/// what they write; a service may name the actor it acts for; anonymous = no authentication configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person: recorded as the actor of what they write.
    Human,
    /// A program: may record events on behalf of the actor it names.
    Service,
    /// Nobody in particular: authentication is off.
    Anonymous,
}

/// How a principal was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Not at all: authentication is off.
    None,
    /// With an API key from the keys file.
    ApiKey,
    /// With a signed JWT.
    Jwt,
    /// By the identity headers of a trusted proxy.
    Proxy,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The caller's name: a key's principal, a token's subject or a proxy's user.
    pub name: String,
    /// Whether the caller is a person or a program.
    pub kind: PrincipalKind,
    /// The highest role the caller holds; `None` means authenticated but allowed nothing.
    pub role: Option<Role>,
    /// How the caller proved who they are.
    pub method: Method,
}

impl Principal {
    /// The caller when no authentication is configured: `anonymous`, kind Anonymous, role Admin, Method::None.
    pub fn anonymous() -> Self {
        Principal {
            name: ANONYMOUS.to_owned(),
            kind: PrincipalKind::Anonymous,
            role: Some(Role::Admin),
            method: Method::None,
        }
    }

    /// Whether the principal holds at least `role`.
    pub fn has(&self, role: Role) -> bool {
        self.role.is_some_and(|held| held >= role)
    }
}

/// Whether a name is a Kubernetes service account, `system:serviceaccount:<namespace>:<name>`, with
/// both parts present and no further colon (Kubernetes names have none).
///
/// Only a source that vouches for the name may use this to decide that the caller is a program: a
/// trusted proxy, and a JWT that says nothing about its kind and carries the name in `sub`, where
/// Kubernetes puts it. An explicit kind claim always wins, and other claims (`email`, say) are
/// chosen by users, so a name that merely looks like an account must not make a service there.
pub(crate) fn is_service_account(name: &str) -> bool {
    name.strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(namespace, account)| !namespace.is_empty() && !account.is_empty() && !account.contains(':'))
}

/// Why a request could not be authenticated. Display text is a one-line reason safe to show clients
/// (never echo a token or secret).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials, and the server requires them.
    #[error("authentication is required: send Authorization: Bearer <API key or token>")]
    Missing,
    /// Credentials were given but are not valid (bad signature, expired, not yet valid, wrong issuer/audience,
    /// unknown key, malformed). The String says which, without secrets.
    #[error("{0}")]
    Invalid(String),
    /// An identity header came from an address that is not a configured trusted proxy.
    #[error("the {header} header is accepted only from a trusted proxy")]
    UntrustedProxy {
        /// The identity header that was sent.
        header: String,
        /// Where the request came from, when known.
        peer: Option<IpAddr>,
    },
}

impl AuthError {
    /// Shorthand for [`AuthError::Invalid`].
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        AuthError::Invalid(reason.into())
    }

    /// RFC 6750 `WWW-Authenticate` value for this error, e.g. `Bearer realm="auditgraph"` or with
    /// `error="invalid_token", error_description="..."`.
    pub fn www_authenticate(&self) -> String {
        // RFC 6750 §3: a request without credentials gets the bare challenge, no error code.
        let code = match self {
            AuthError::Missing => return format!("Bearer realm=\"{REALM}\""),
            AuthError::Invalid(_) => "invalid_token",
            AuthError::UntrustedProxy { .. } => "invalid_request",
        };
        format!(
            "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{}\"",
            quoted_string_safe(&self.to_string())
        )
    }
}

/// Keeps a description inside an RFC 7230 quoted string: RFC 6750 allows only printable ASCII
/// without `"` and `\` in `error_description`: quotes become `'`, backslashes `/`, anything else a
/// space.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => ' ',
        })
        .collect()
}

/// Which authentication modes are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// No authentication: every caller is an anonymous admin. Only for loopback or with --allow-unauthenticated.
    None,
    /// API keys created with `auditgraph create-key`, sent as `Authorization: Bearer agk_...`.
    ApiKeys,
    /// JWTs signed with the shared secret (HS256) or a key of the JWKS file (RS256, ES256).
    Jwt,
    /// Identity headers set by an authenticating proxy listed in --trusted-proxies.
    Proxy,
}

/// A secret given on the command line or in the environment; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// One `group=role` entry of --proxy-group-roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRole {
    /// The group name as the proxy sends it (case-sensitive).
    pub group: String,
    /// The role members of the group hold.
    pub role: Role,
}

impl FromStr for GroupRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (group, role) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not group=role (e.g. sre=writer)"))?;
        let group = group.trim();
        if group.is_empty() {
            return Err(format!("{s:?} names no group"));
        }
        let role = role.trim().parse::<Role>().map_err(|error| error.to_string())?;
        Ok(GroupRole {
            group: group.to_owned(),
            role,
        })
    }
}

/// Parses one --trusted-proxies entry: a CIDR, or a bare address meaning that address alone.
fn parse_trusted_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither a CIDR (10.0.0.0/8) nor an IP address"))
}

/// How callers are authenticated; the main configuration flattens these flags in.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthSettings {
    /// Authentication modes, comma-separated: none, or any of api-keys, jwt, proxy.
    #[arg(
        long = "auth",
        env = "AUDITGRAPH_AUTH",
        value_enum,
        value_delimiter = ',',
        default_value = "none",
        global = true
    )]
    pub modes: Vec<AuthMode>,

    /// Allow --auth none on an address other than loopback (every caller is then an anonymous admin).
    #[arg(long, env = "AUDITGRAPH_ALLOW_UNAUTHENTICATED", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_unauthenticated: bool,

    /// The API keys file (hashes only), written by `auditgraph create-key` and reread when it changes.
    #[arg(
        long,
        env = "AUDITGRAPH_API_KEYS_FILE",
        default_value = "auditgraph-keys.json",
        global = true
    )]
    pub api_keys_file: PathBuf,

    /// HS256 shared secret for JWTs, at least 32 bytes. Prefer --jwt-secret-file: the environment leaks.
    #[arg(long, env = "AUDITGRAPH_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<Secret>,

    /// File holding the HS256 shared secret (a trailing newline is ignored).
    #[arg(
        long,
        env = "AUDITGRAPH_JWT_SECRET_FILE",
        global = true,
        conflicts_with = "jwt_secret"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// JWKS file with the RS256 and/or ES256 public keys that may sign JWTs; a token's kid picks the key.
    /// It is read once, at start: rotating the keys needs a restart.
    #[arg(long, env = "AUDITGRAPH_JWT_JWKS_FILE", global = true)]
    pub jwt_jwks_file: Option<PathBuf>,

    /// The only JWT issuer (iss) accepted; required with --auth jwt.
    #[arg(long, env = "AUDITGRAPH_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// JWT audiences (aud) accepted, comma-separated: a token must name one of them; required with --auth jwt.
    #[arg(long, env = "AUDITGRAPH_JWT_AUDIENCE", value_delimiter = ',', global = true)]
    pub jwt_audience: Vec<String>,

    /// JWT claim holding the role: a string or an array of strings; the highest known role wins.
    #[arg(long, env = "AUDITGRAPH_JWT_ROLE_CLAIM", default_value = "role", global = true)]
    pub jwt_role_claim: String,

    /// JWT claim holding the principal's name.
    #[arg(long, env = "AUDITGRAPH_JWT_PRINCIPAL_CLAIM", default_value = "sub", global = true)]
    pub jwt_principal_claim: String,

    /// JWT claim saying what the principal is: "service" makes a service, anything else a human.
    #[arg(
        long,
        env = "AUDITGRAPH_JWT_KIND_CLAIM",
        default_value = "principal_type",
        global = true
    )]
    pub jwt_kind_claim: String,

    /// Clock skew, in seconds, tolerated when checking a JWT's exp and nbf; at most 300, so that the
    /// leeway cannot be made large enough to keep expired tokens valid.
    #[arg(
        long,
        env = "AUDITGRAPH_JWT_LEEWAY_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(0..=300),
        global = true
    )]
    pub jwt_leeway_secs: u64,

    /// Proxies whose identity headers are believed, comma-separated CIDRs or addresses (10.0.0.0/8,127.0.0.1).
    #[arg(long, env = "AUDITGRAPH_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted_proxy, global = true)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Header in which the trusted proxy names the user.
    #[arg(
        long,
        env = "AUDITGRAPH_PROXY_USER_HEADER",
        default_value = "x-auth-request-user",
        global = true
    )]
    pub proxy_user_header: String,

    /// Header in which the trusted proxy lists the user's groups, comma-separated.
    #[arg(
        long,
        env = "AUDITGRAPH_PROXY_GROUPS_HEADER",
        default_value = "x-auth-request-groups",
        global = true
    )]
    pub proxy_groups_header: String,

    /// Roles of proxy groups, comma-separated group=role (auditors=reader,sre=writer); the highest wins.
    #[arg(long, env = "AUDITGRAPH_PROXY_GROUP_ROLES", value_delimiter = ',', global = true)]
    pub proxy_group_roles: Vec<GroupRole>,

    /// Role of a proxied user in no mapped group; without it such a user may do nothing.
    #[arg(long, env = "AUDITGRAPH_PROXY_DEFAULT_ROLE", value_enum, global = true)]
    pub proxy_default_role: Option<Role>,
}

/// Authenticates requests with the modes the settings turn on.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    /// `--auth none`: nothing is required and every caller is anonymous.
    open: bool,
    allow_unauthenticated: bool,
    keys: Option<keys::KeyStore>,
    jwt: Option<jwt::JwtVerifier>,
    /// Always built, even when proxy mode is off, because its header must then be refused.
    proxy: proxy::ProxyAuth,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Authenticator")
            .field("open", &inner.open)
            .field("allow_unauthenticated", &inner.allow_unauthenticated)
            .field("keys", &inner.keys)
            .field("jwt", &inner.jwt)
            .field("proxy", &inner.proxy)
            .finish()
    }
}

impl Authenticator {
    /// Builds from settings, reading the keys file, secret file and JWKS file; errors name the file and the problem.
    /// jwt mode needs a secret or a JWKS file, an issuer and an audience; api-keys mode with a missing keys file is an
    /// error that says how to create one (`auditgraph create-key --principal NAME --role ROLE`).
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let modes = &settings.modes;
        if modes.is_empty() {
            bail!("AUDITGRAPH_AUTH (--auth) is empty: say none, or any of api-keys, jwt, proxy");
        }
        let open = modes.contains(&AuthMode::None);
        if open && modes.iter().any(|mode| *mode != AuthMode::None) {
            bail!("AUDITGRAPH_AUTH (--auth) cannot combine none with other modes");
        }
        let keys = if modes.contains(&AuthMode::ApiKeys) {
            Some(keys::KeyStore::open(&settings.api_keys_file)?)
        } else {
            None
        };
        let jwt = if modes.contains(&AuthMode::Jwt) {
            Some(jwt::JwtVerifier::from_settings(settings).context("configuring JWT authentication")?)
        } else {
            None
        };
        let proxy = proxy::ProxyAuth::from_settings(settings, modes.contains(&AuthMode::Proxy))
            .context("configuring proxy authentication")?;
        Ok(Authenticator {
            inner: Arc::new(Inner {
                open,
                allow_unauthenticated: settings.allow_unauthenticated,
                keys,
                jwt,
                proxy,
            }),
        })
    }

    /// Whether requests must carry credentials (false only for `none`).
    pub fn required(&self) -> bool {
        !self.inner.open
    }

    /// Refuses (Err with a clear one-line message naming AUDITGRAPH_AUTH and --allow-unauthenticated) to serve
    /// without authentication on a non-loopback address unless allowed; when allowed, logs a tracing::warn!.
    pub fn check_listen(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if self.required() || listen.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        if !self.inner.allow_unauthenticated {
            bail!(
                "refusing to serve without authentication on {listen}, which is not a loopback address: \
                 set AUDITGRAPH_AUTH (--auth) to api-keys, jwt or proxy, or pass --allow-unauthenticated \
                 (AUDITGRAPH_ALLOW_UNAUTHENTICATED=true) if something in front controls access"
            );
        }
        tracing::warn!(
            %listen,
            "serving without authentication on a non-loopback address: every caller is an anonymous admin"
        );
        Ok(())
    }

    /// Authenticates an HTTP request from its headers and the peer address (None when unknown: treated as untrusted).
    ///
    /// 1. The proxy user header decides first: from a trusted proxy (proxy mode on) it names the caller, even
    ///    when the request also carries `Authorization`, because the proxy vouches for the user in front of
    ///    it; from anywhere else it is refused in every mode, `none` included.
    /// 2. Otherwise `Authorization: Bearer <token>` carries a JWT (two dots) or an API key. With `none`
    ///    the header is ignored and the caller is anonymous, so clients configured with a token keep
    ///    working against a server without authentication.
    /// 3. Otherwise the caller is anonymous with `none`, and missing credentials with any other mode.
    pub fn authenticate(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        if let Some(principal) = inner.proxy.authenticate(headers, peer)? {
            return Ok(principal);
        }
        if inner.open {
            return Ok(Principal::anonymous());
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(AuthError::Missing);
        };
        if values.next().is_some() {
            return Err(AuthError::invalid("the request has several Authorization headers"));
        }
        let value = value
            .to_str()
            .map_err(|_| AuthError::invalid("the Authorization header is not printable ASCII"))?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::invalid(
                "the Authorization scheme is not supported: use Bearer",
            ));
        }
        self.authenticate_token(token)
    }

    /// Authenticates a bare bearer token (for a WebSocket `connection_init` payload later). With `none`
    /// the token is ignored and the caller is anonymous, as for HTTP.
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        if inner.open {
            return Ok(Principal::anonymous());
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::invalid("the bearer token is empty"));
        }
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            let jwt = inner
                .jwt
                .as_ref()
                .ok_or_else(|| AuthError::invalid("JWT authentication is not enabled"))?;
            jwt.verify(token)
        } else {
            let keys = inner
                .keys
                .as_ref()
                .ok_or_else(|| AuthError::invalid("API key authentication is not enabled"))?;
            keys.authenticate(token)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthSettings,
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-only";

    fn settings(args: &[&str]) -> AuthSettings {
        Cli::try_parse_from(std::iter::once("auditgraph").chain(args.iter().copied()))
            .unwrap()
            .auth
    }

    fn build(args: &[&str]) -> anyhow::Result<Authenticator> {
        Authenticator::from_settings(&settings(args))
    }

    fn open() -> Authenticator {
        build(&[]).unwrap()
    }

    fn jwt_only() -> Authenticator {
        build(&[
            "--auth",
            "jwt",
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "auditgraph",
        ])
        .unwrap()
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn hs256_token() -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "sub": "alice", "iss": "https://idp.example", "aud": "auditgraph", "exp": now + 60, "role": "reader",
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn the_settings_make_a_valid_command_line() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_jwt_secret_never_shows_in_debug_output() {
        let settings = settings(&["--jwt-secret", SECRET]);
        assert!(!format!("{settings:?}").contains(SECRET));
        assert!(!format!("{:?}", jwt_only()).contains(SECRET));
    }

    #[test]
    fn roles_are_ordered_and_parsed_case_insensitively() {
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Admin);
        assert_eq!("Writer".parse::<Role>(), Ok(Role::Writer));
        assert_eq!("ADMIN".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
        assert_eq!(Role::Reader.to_string(), "reader");
    }

    #[test]
    fn a_principal_holds_the_roles_below_its_own() {
        let writer = Principal {
            name: "w".into(),
            kind: PrincipalKind::Human,
            role: Some(Role::Writer),
            method: Method::Jwt,
        };
        assert!(writer.has(Role::Reader) && writer.has(Role::Writer) && !writer.has(Role::Admin));
        let nobody = Principal { role: None, ..writer };
        assert!(!nobody.has(Role::Reader));
        assert!(Principal::anonymous().has(Role::Admin));
    }

    #[test]
    fn none_combined_with_another_mode_is_refused() {
        let message = build(&["--auth", "none,api-keys"]).unwrap_err().to_string();
        assert!(
            message.contains("AUDITGRAPH_AUTH") && message.contains("none"),
            "{message}"
        );
    }

    #[test]
    fn jwt_mode_needs_a_key_an_issuer_and_an_audience() {
        let missing = |args: &[&str]| format!("{:#}", build(args).unwrap_err());
        assert!(missing(&["--auth", "jwt", "--jwt-issuer", "i", "--jwt-audience", "a"]).contains("needs a key"));
        assert!(missing(&["--auth", "jwt", "--jwt-secret", SECRET, "--jwt-audience", "a"]).contains("ISSUER"));
        assert!(missing(&["--auth", "jwt", "--jwt-secret", SECRET, "--jwt-issuer", "i"]).contains("AUDIENCE"));
        assert!(
            missing(&[
                "--auth",
                "jwt",
                "--jwt-secret",
                "short",
                "--jwt-issuer",
                "i",
                "--jwt-audience",
                "a"
            ])
            .contains("at least 32")
        );
    }

    #[test]
    fn the_jwt_secret_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let auth = build(&[
            "--auth",
            "jwt",
            "--jwt-secret-file",
            path.to_str().unwrap(),
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "auditgraph",
        ])
        .unwrap();
        assert_eq!(auth.authenticate_token(&hs256_token()).unwrap().name, "alice");
        let absent = dir.path().join("absent");
        let message = format!(
            "{:#}",
            build(&[
                "--auth",
                "jwt",
                "--jwt-secret-file",
                absent.to_str().unwrap(),
                "--jwt-issuer",
                "i",
                "--jwt-audience",
                "a"
            ])
            .unwrap_err()
        );
        assert!(message.contains("absent"), "{message}");
    }

    #[test]
    fn the_jwks_file_of_the_fixtures_loads() {
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth/jwks.json");
        let auth = build(&[
            "--auth",
            "jwt",
            "--jwt-jwks-file",
            jwks,
            "--jwt-issuer",
            "i",
            "--jwt-audience",
            "a",
        ]);
        assert!(auth.is_ok(), "{auth:?}");
    }

    #[test]
    fn proxy_mode_needs_trusted_proxies() {
        let message = format!("{:#}", build(&["--auth", "proxy"]).unwrap_err());
        assert!(message.contains("AUDITGRAPH_TRUSTED_PROXIES"), "{message}");
    }

    #[test]
    fn serving_without_authentication_is_refused_off_loopback_unless_allowed() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let loopback6: SocketAddr = "[::1]:8080".parse().unwrap();
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(open().check_listen(loopback).is_ok());
        assert!(open().check_listen(loopback6).is_ok());
        let message = open().check_listen(everywhere).unwrap_err().to_string();
        assert!(
            message.contains("AUDITGRAPH_AUTH") && message.contains("--allow-unauthenticated"),
            "{message}"
        );
        assert!(!message.contains('\n'));
        assert!(
            build(&["--allow-unauthenticated"])
                .unwrap()
                .check_listen(everywhere)
                .is_ok()
        );
        assert!(jwt_only().check_listen(everywhere).is_ok());
    }

    #[test]
    fn without_authentication_every_caller_is_anonymous_even_with_a_token() {
        assert!(!open().required());
        assert_eq!(open().authenticate(&HeaderMap::new(), None), Ok(Principal::anonymous()));
        assert_eq!(
            open().authenticate(&bearer("Bearer whatever"), None),
            Ok(Principal::anonymous())
        );
        assert_eq!(
            open().authenticate(&bearer("Basic dXNlcjpwYXNz"), None),
            Ok(Principal::anonymous())
        );
        assert_eq!(open().authenticate_token("agk_x"), Ok(Principal::anonymous()));
    }

    #[test]
    fn without_authentication_a_proxy_identity_header_is_still_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-request-user", HeaderValue::from_static("admin"));
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(matches!(
            open().authenticate(&headers, peer),
            Err(AuthError::UntrustedProxy { .. })
        ));
    }

    #[test]
    fn a_request_without_credentials_is_refused_when_they_are_required() {
        assert!(jwt_only().required());
        assert_eq!(
            jwt_only().authenticate(&HeaderMap::new(), None),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn a_bearer_jwt_is_authenticated_whatever_the_case_of_the_scheme() {
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let principal = jwt_only()
                .authenticate(&bearer(&format!("{scheme} {}", hs256_token())), None)
                .unwrap();
            assert_eq!((principal.name.as_str(), principal.method), ("alice", Method::Jwt));
        }
    }

    #[test]
    fn a_credential_of_a_mode_that_is_off_is_refused_saying_so() {
        let reason = jwt_only().authenticate(&bearer("Bearer agk_abc"), None).unwrap_err();
        assert_eq!(reason, AuthError::invalid("API key authentication is not enabled"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        create_key(&path, "ci", Role::Writer, PrincipalKind::Service).unwrap();
        let keys_only = build(&["--auth", "api-keys", "--api-keys-file", path.to_str().unwrap()]).unwrap();
        let reason = keys_only
            .authenticate(&bearer(&format!("Bearer {}", hs256_token())), None)
            .unwrap_err();
        assert_eq!(reason, AuthError::invalid("JWT authentication is not enabled"));
    }

    #[test]
    fn other_authorization_schemes_and_empty_tokens_are_refused() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"] {
            let result = jwt_only().authenticate(&bearer(value), None);
            assert!(matches!(result, Err(AuthError::Invalid(_))), "{value}: {result:?}");
        }
    }

    #[test]
    fn a_created_key_authenticates_its_principal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "deployer", Role::Writer, PrincipalKind::Service).unwrap();
        let auth = build(&[
            "--auth",
            "api-keys,jwt",
            "--api-keys-file",
            path.to_str().unwrap(),
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "auditgraph",
        ])
        .unwrap();
        let principal = auth
            .authenticate(&bearer(&format!("Bearer {}", created.key)), None)
            .unwrap();
        assert_eq!(
            principal,
            Principal {
                name: "deployer".into(),
                kind: PrincipalKind::Service,
                role: Some(Role::Writer),
                method: Method::ApiKey,
            }
        );
        assert_eq!(auth.authenticate_token(&hs256_token()).unwrap().method, Method::Jwt);
        let wrong = format!("Bearer {}x", created.key);
        assert!(matches!(
            auth.authenticate(&bearer(&wrong), None),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn a_missing_keys_file_is_refused_with_how_to_create_one() {
        let message = format!(
            "{:#}",
            build(&["--auth", "api-keys", "--api-keys-file", "/nonexistent/keys.json"]).unwrap_err()
        );
        assert!(
            message.contains("/nonexistent/keys.json") && message.contains("auditgraph create-key"),
            "{message}"
        );
    }

    #[test]
    fn a_trusted_proxy_identity_wins_over_an_authorization_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let created = create_key(&path, "deployer", Role::Writer, PrincipalKind::Service).unwrap();
        let auth = build(&[
            "--auth",
            "api-keys,proxy",
            "--api-keys-file",
            path.to_str().unwrap(),
            "--trusted-proxies",
            "10.0.0.0/8",
        ])
        .unwrap();
        let mut headers = bearer(&format!("Bearer {}", created.key));
        headers.insert("x-auth-request-user", HeaderValue::from_static("alice"));
        let trusted = auth.authenticate(&headers, Some(IpAddr::from([10, 0, 0, 1]))).unwrap();
        assert_eq!((trusted.name.as_str(), trusted.method), ("alice", Method::Proxy));
        let untrusted = auth.authenticate(&headers, Some(IpAddr::from([192, 168, 0, 1])));
        assert!(matches!(untrusted, Err(AuthError::UntrustedProxy { .. })));
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(AuthError::Missing.www_authenticate(), "Bearer realm=\"auditgraph\"");
        assert_eq!(
            AuthError::invalid("the token has expired").www_authenticate(),
            "Bearer realm=\"auditgraph\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let quoted = AuthError::invalid("a \"quoted\"\\ reason\n").www_authenticate();
        assert!(
            quoted.ends_with("error_description=\"a 'quoted'/ reason \""),
            "{quoted}"
        );
        let proxy = AuthError::UntrustedProxy {
            header: "x-auth-request-user".into(),
            peer: None,
        };
        assert!(proxy.www_authenticate().contains("error=\"invalid_request\""));
    }

    #[test]
    fn the_jwt_leeway_is_at_most_five_minutes() {
        assert_eq!(settings(&["--jwt-leeway-secs", "300"]).jwt_leeway_secs, 300);
        assert_eq!(settings(&["--jwt-leeway-secs", "0"]).jwt_leeway_secs, 0);
        assert!(Cli::try_parse_from(["auditgraph", "--jwt-leeway-secs", "301"]).is_err());
        assert!(Cli::try_parse_from(["auditgraph", "--jwt-leeway-secs", "31536000"]).is_err());
    }

    #[test]
    fn a_principal_is_a_printable_name_of_at_most_255_bytes_other_than_anonymous() {
        assert_eq!(check_principal("alice@example.com"), Ok(()));
        assert_eq!(check_principal("system:serviceaccount:ci:deployer"), Ok(()));
        assert_eq!(check_principal(&"x".repeat(255)), Ok(()));
        assert_eq!(check_principal("Zoë"), Ok(()));
        for refused in [
            "",
            "  ",
            "al\0ice",
            "alice\n",
            "al\nice",
            "al\tice",
            "al\u{7f}ice",
            "anonymous",
            " Anonymous ",
        ] {
            assert!(check_principal(refused).is_err(), "{refused:?}");
        }
        assert!(check_principal(&"x".repeat(256)).is_err());
        assert!(check_principal(&"é".repeat(128)).is_err(), "the limit is in bytes");
    }

    #[test]
    fn a_refused_principal_is_not_repeated_in_the_reason() {
        for name in ["secret\0name", &"secret".repeat(50), "secret\nname"] {
            let reason = check_principal(name).unwrap_err();
            assert!(!reason.contains("secret"), "{reason}");
        }
    }

    #[test]
    fn trusted_proxies_accept_cidrs_and_bare_addresses() {
        let settings = settings(&["--trusted-proxies", "10.0.0.0/8,127.0.0.1,::1"]);
        let expected: Vec<ipnet::IpNet> = ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(settings.trusted_proxies, expected);
        assert!(Cli::try_parse_from(["auditgraph", "--trusted-proxies", "not-an-ip"]).is_err());
        assert!(Cli::try_parse_from(["auditgraph", "--proxy-group-roles", "sre=root"]).is_err());
        assert!(Cli::try_parse_from(["auditgraph", "--proxy-group-roles", "sre"]).is_err());
    }
}
