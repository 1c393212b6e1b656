//! JWTs: HS256 with a shared secret, RS256 and ES256 with the public keys of a JWKS file.
//!
//! The key decides the algorithm, never the token: each key is bound to one algorithm when it is
//! loaded, and a token whose `alg` differs from its key's is refused. That closes the classic
//! confusions (an HS256 token "signed" with an RSA public key as the HMAC secret, `alg: none`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, AuthSettings, Method, Principal, PrincipalKind, Role, check_principal, is_service_account};

/// The shortest HS256 secret accepted: shorter than the hash output, an HMAC secret can be guessed
/// offline from one token.
const MIN_SECRET_BYTES: usize = 32;

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One key that may verify tokens, bound to the single algorithm it verifies.
struct VerifyingKey {
    /// The JWKS `kid`; the shared secret has none.
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies JWTs and turns their claims into principals.
pub(crate) struct JwtVerifier {
    /// The shared secret's key, if one is configured.
    secret: Option<VerifyingKey>,
    /// The JWKS keys.
    public: Vec<VerifyingKey>,
    issuer: String,
    audience: Vec<String>,
    leeway: u64,
    role_claim: String,
    principal_claim: String,
    kind_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self
            .public
            .iter()
            .map(|key| (key.kid.as_deref().unwrap_or("-"), key.algorithm))
            .collect();
        f.debug_struct("JwtVerifier")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public", &kids)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier: a secret and/or a JWKS file, an issuer and an audience are required.
    pub(crate) fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let secret = match (&settings.jwt_secret, &settings.jwt_secret_file) {
            (Some(_), Some(_)) => bail!("give the JWT secret once: --jwt-secret or --jwt-secret-file, not both"),
            (Some(secret), None) => Some(secret_key(secret.expose().as_bytes()).context("AUDITGRAPH_JWT_SECRET")?),
            (None, Some(path)) => Some(read_secret(path)?),
            (None, None) => None,
        };
        let public = match &settings.jwt_jwks_file {
            Some(path) => read_jwks(path)?,
            None => Vec::new(),
        };
        if secret.is_none() && public.is_empty() {
            bail!(
                "--auth jwt needs a key: AUDITGRAPH_JWT_SECRET or AUDITGRAPH_JWT_SECRET_FILE (HS256), \
                 or AUDITGRAPH_JWT_JWKS_FILE (RS256, ES256)"
            );
        }
        let issuer = settings
            .jwt_issuer
            .as_deref()
            .map(str::trim)
            .filter(|issuer| !issuer.is_empty())
            .context("--auth jwt needs the accepted issuer: set AUDITGRAPH_JWT_ISSUER (--jwt-issuer)")?
            .to_owned();
        let audience: Vec<String> = settings
            .jwt_audience
            .iter()
            .map(|audience| audience.trim().to_owned())
            .filter(|audience| !audience.is_empty())
            .collect();
        if audience.is_empty() {
            bail!("--auth jwt needs the accepted audience: set AUDITGRAPH_JWT_AUDIENCE (--jwt-audience)");
        }
        Ok(JwtVerifier {
            secret,
            public,
            issuer,
            audience,
            leeway: settings.jwt_leeway_secs,
            role_claim: settings.jwt_role_claim.clone(),
            principal_claim: settings.jwt_principal_claim.clone(),
            kind_claim: settings.jwt_kind_claim.clone(),
        })
    }

    /// Picks the key for a token: its `kid` names a JWKS key; HS256 tokens use the secret (which has
    /// no kid to match); without a kid, exactly one key may fit the token's algorithm.
    fn key_for(&self, header: &jsonwebtoken::Header) -> Result<&VerifyingKey, AuthError> {
        if let Some(kid) = &header.kid
            && let Some(key) = self.public.iter().find(|key| key.kid.as_ref() == Some(kid))
        {
            return Ok(key);
        }
        if header.alg == Algorithm::HS256
            && let Some(secret) = &self.secret
        {
            return Ok(secret);
        }
        if header.kid.is_some() {
            return Err(AuthError::invalid("the token's key id is not known"));
        }
        let mut fitting = self.public.iter().filter(|key| key.algorithm == header.alg);
        match (fitting.next(), fitting.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(AuthError::invalid("the token's algorithm is not accepted")),
            (Some(_), Some(_)) => Err(AuthError::invalid(
                "the token has no key id (kid) and several keys could have signed it",
            )),
        }
    }

    /// Verifies a token and returns its principal.
    pub(crate) fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("the token's header is malformed or names an unsupported algorithm"))?;
        let key = self.key_for(&header)?;
        if header.alg != key.algorithm {
            return Err(AuthError::invalid("the token's algorithm does not match its key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.leeway = self.leeway;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|error| AuthError::Invalid(reason(error.kind())))?
            .claims;
        self.principal(&claims)
    }

    /// The principal named by verified claims.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let claim = &self.principal_claim;
        let name = match claims.get(claim) {
            Some(Value::String(name)) => name.trim(),
            Some(_) => return Err(AuthError::Invalid(format!("the token's {claim} claim is not a string"))),
            None => return Err(AuthError::Invalid(format!("the token has no {claim} claim"))),
        };
        check_principal(name)
            .map_err(|reason| AuthError::Invalid(format!("the token's {claim} claim is refused: {reason}")))?;
        Ok(Principal {
            name: name.to_owned(),
            kind: self.kind_of(claims, name),
            role: role_of(claims.get(&self.role_claim)),
            method: Method::Jwt,
        })
    }

    /// Whether the token's principal is a person or a program.
    ///
    /// The kind claim, when present, alone decides: "service" makes a service and anything else a
    /// human, whose writes are attributed to them (the stricter of the two rules), so a token that
    /// says "human" stays human whatever its name looks like. Only without that claim is a
    /// Kubernetes service-account name taken as a program, and only from `sub`, where Kubernetes
    /// service-account tokens carry it: another principal claim (`email`, say) holds whatever
    /// users chose.
    fn kind_of(&self, claims: &Map<String, Value>, name: &str) -> PrincipalKind {
        let service = match claims.get(&self.kind_claim) {
            Some(kind) => kind.as_str() == Some("service"),
            None => self.principal_claim == "sub" && is_service_account(name),
        };
        if service {
            PrincipalKind::Service
        } else {
            PrincipalKind::Human
        }
    }
}

/// The highest known role in a role claim, a string or an array of strings; unknown values are
/// ignored so that an identity provider may send roles of other applications alongside ours.
fn role_of(claim: Option<&Value>) -> Option<Role> {
    match claim? {
        Value::String(role) => role.parse().ok(),
        Value::Array(roles) => roles
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|role| role.parse::<Role>().ok())
            .max(),
        _ => None,
    }
}

/// A client-safe reason for a failed verification.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience is not accepted".into(),
        ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        // The claim names come from our own list of required claims, never from the token.
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's {claim} claim is malformed"),
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            "the token cannot be verified with its key".into()
        }
        _ => "the token is malformed".into(),
    }
}

/// The shared secret's key, refusing secrets short enough to guess.
fn secret_key(secret: &[u8]) -> anyhow::Result<VerifyingKey> {
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "the JWT secret is {} bytes; HS256 needs at least {MIN_SECRET_BYTES} random bytes, or a token could be \
             used to guess it offline (try `openssl rand -base64 48`)",
            secret.len()
        );
    }
    Ok(VerifyingKey {
        kid: None,
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(secret),
    })
}

fn read_secret(path: &Path) -> anyhow::Result<VerifyingKey> {
    let text = std::fs::read(path).with_context(|| format!("reading the JWT secret file {}", path.display()))?;
    let mut secret = text.as_slice();
    // Editors and `echo` end files with a newline that is not part of the secret.
    while let [rest @ .., b'\n' | b'\r'] = secret {
        secret = rest;
    }
    secret_key(secret).with_context(|| format!("the JWT secret file {}", path.display()))
}

fn read_jwks(path: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the JWKS file {}", path.display()))?;
    parse_jwks(&text).with_context(|| format!("loading the JWKS file {}", path.display()))
}

/// Loads RS256 and ES256 (P-256) signing keys; any other key is an error rather than skipped, so
/// that a key the operator expects to work does not fail silently at the first token.
fn parse_jwks(text: &str) -> anyhow::Result<Vec<VerifyingKey>> {
    let set: JwkSet = serde_json::from_str(text).context("not a JWKS document ({\"keys\": [...]})")?;
    if set.keys.is_empty() {
        bail!("the JWKS holds no keys");
    }
    let mut kids = HashSet::new();
    let mut keys = Vec::with_capacity(set.keys.len());
    for (position, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let name = match &kid {
            Some(kid) => format!("key {kid:?}"),
            None => format!("key {} (no kid)", position + 1),
        };
        if let Some(kid) = &kid
            && !kids.insert(kid.clone())
        {
            bail!("{name} appears twice");
        }
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            bail!("{name} is an encryption key (use \"enc\"), not a signing key");
        }
        let (algorithm, declared) = match &jwk.algorithm {
            AlgorithmParameters::RSA(params) => {
                let modulus = URL_SAFE_NO_PAD
                    .decode(params.n.trim_end_matches('='))
                    .with_context(|| format!("{name} has a modulus that is not base64url"))?;
                let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
                if significant < MIN_RSA_MODULUS_BYTES {
                    bail!("{name} is an RSA key of fewer than 2048 bits");
                }
                (Algorithm::RS256, KeyAlgorithm::RS256)
            }
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            _ => bail!("{name} is neither an RSA key nor a P-256 EC key (RS256 and ES256 are supported)"),
        };
        if let Some(alg) = jwk.common.key_algorithm
            && alg != declared
        {
            bail!("{name} declares algorithm {alg:?}; only {declared:?} is supported for this key type");
        }
        let key = DecodingKey::from_jwk(jwk).with_context(|| format!("{name} is not a valid public key"))?;
        keys.push(VerifyingKey { kid, algorithm, key });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/auth")
                .join(name),
        )
        .unwrap()
    }

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_der(&fixture("rsa-private.der"))
    }

    fn ec() -> EncodingKey {
        EncodingKey::from_ec_der(&fixture("ec-private.der"))
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier {
            secret: Some(secret_key(SECRET).unwrap()),
            public: parse_jwks(&String::from_utf8(fixture("jwks.json")).unwrap()).unwrap(),
            issuer: "https://idp.example".into(),
            audience: vec!["auditgraph".into(), "auditgraph-staging".into()],
            leeway: 30,
            role_claim: "role".into(),
            principal_claim: "sub".into(),
            kind_claim: "principal_type".into(),
        }
    }

    fn claims() -> Value {
        let now = get_current_timestamp();
        json!({
            "sub": "alice@example.com",
            "iss": "https://idp.example",
            "aud": "auditgraph",
            "iat": now,
            "exp": now + 300,
            "role": "writer",
        })
    }

    fn with(changes: Value) -> Value {
        let mut claims = claims();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        header
    }

    fn hs256(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn error(token: &str) -> String {
        match verifier().verify(token) {
            Err(AuthError::Invalid(reason)) => reason,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn an_hs256_token_signed_with_the_secret_names_its_subject() {
        let principal = verifier().verify(&hs256(&claims())).unwrap();
        assert_eq!(
            principal,
            Principal {
                name: "alice@example.com".into(),
                kind: PrincipalKind::Human,
                role: Some(Role::Writer),
                method: Method::Jwt,
            }
        );
    }

    #[test]
    fn an_rs256_token_is_verified_with_the_jwks_key_its_kid_names() {
        let token = encode(&header(Algorithm::RS256, Some("rsa-1")), &claims(), &rsa()).unwrap();
        assert_eq!(verifier().verify(&token).unwrap().name, "alice@example.com");
    }

    #[test]
    fn an_es256_token_is_verified_with_the_jwks_key_its_kid_names() {
        let token = encode(&header(Algorithm::ES256, Some("ec-1")), &claims(), &ec()).unwrap();
        assert_eq!(verifier().verify(&token).unwrap().role, Some(Role::Writer));
    }

    #[test]
    fn a_token_without_kid_is_accepted_when_one_key_fits_its_algorithm() {
        let token = encode(&header(Algorithm::ES256, None), &claims(), &ec()).unwrap();
        assert!(verifier().verify(&token).is_ok());
    }

    #[test]
    fn a_token_without_kid_is_refused_when_several_keys_fit_its_algorithm() {
        let mut verifier = verifier();
        let jwks = parse_jwks(
            &String::from_utf8(fixture("jwks.json"))
                .unwrap()
                .replace("rsa-1", "rsa-2"),
        )
        .unwrap();
        verifier.public.extend(jwks);
        let token = encode(&header(Algorithm::RS256, None), &claims(), &rsa()).unwrap();
        assert!(matches!(verifier.verify(&token), Err(AuthError::Invalid(reason)) if reason.contains("several keys")));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let past = get_current_timestamp() - 3600;
        assert_eq!(error(&hs256(&with(json!({ "exp": past })))), "the token has expired");
    }

    #[test]
    fn a_token_expired_within_the_leeway_is_accepted() {
        let just = get_current_timestamp() - 10;
        assert!(verifier().verify(&hs256(&with(json!({ "exp": just })))).is_ok());
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        assert_eq!(
            error(&hs256(&with(json!({ "exp": null })))),
            "the token has no exp claim"
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let later = get_current_timestamp() + 3600;
        assert_eq!(
            error(&hs256(&with(json!({ "nbf": later })))),
            "the token is not valid yet"
        );
    }

    #[test]
    fn a_token_from_another_issuer_is_refused() {
        let token = hs256(&with(json!({ "iss": "https://evil.example" })));
        assert_eq!(error(&token), "the token's issuer is not accepted");
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        assert_eq!(
            error(&hs256(&with(json!({ "aud": "other" })))),
            "the token's audience is not accepted"
        );
    }

    #[test]
    fn a_token_naming_one_accepted_audience_among_others_is_accepted() {
        let token = hs256(&with(json!({ "aud": ["other", "auditgraph-staging"] })));
        assert!(verifier().verify(&token).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let forged = encode(
            &header(Algorithm::RS256, Some("rsa-1")),
            &claims(),
            &EncodingKey::from_rsa_der(&fixture("rsa-other-private.der")),
        )
        .unwrap();
        assert_eq!(error(&forged), "the token's signature is invalid");
        let wrong_secret = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!"),
        )
        .unwrap();
        assert_eq!(error(&wrong_secret), "the token's signature is invalid");
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let encode_part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let token = format!(
            "{}.{}.",
            encode_part(&json!({ "alg": "none", "typ": "JWT" })),
            encode_part(&claims())
        );
        assert!(verifier().verify(&token).is_err());
        let token = format!(
            "{}.{}.",
            encode_part(&json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" })),
            encode_part(&claims())
        );
        assert!(verifier().verify(&token).is_err());
    }

    #[test]
    fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused() {
        // The classic confusion: a verifier that let the token pick HS256 would use the public key
        // (which anyone has) as the HMAC secret.
        for public in [fixture("rsa-public.pem"), fixture("rsa-public.der")] {
            let token = encode(
                &header(Algorithm::HS256, Some("rsa-1")),
                &claims(),
                &EncodingKey::from_secret(&public),
            )
            .unwrap();
            assert_eq!(error(&token), "the token's algorithm does not match its key");
            let mut without_secret = verifier();
            without_secret.secret = None;
            assert!(without_secret.verify(&token).is_err());
            let token = encode(
                &Header::new(Algorithm::HS256),
                &claims(),
                &EncodingKey::from_secret(&public),
            )
            .unwrap();
            assert!(without_secret.verify(&token).is_err());
        }
    }

    #[test]
    fn an_es256_token_claiming_the_rsa_key_is_refused() {
        let token = encode(&header(Algorithm::ES256, Some("rsa-1")), &claims(), &ec()).unwrap();
        assert_eq!(error(&token), "the token's algorithm does not match its key");
    }

    #[test]
    fn a_token_with_an_unknown_kid_is_refused() {
        let token = encode(&header(Algorithm::RS256, Some("rsa-9")), &claims(), &rsa()).unwrap();
        assert_eq!(error(&token), "the token's key id is not known");
    }

    #[test]
    fn a_role_claim_may_be_a_string_or_an_array_whose_highest_known_role_wins() {
        let role = |value: Value| verifier().verify(&hs256(&with(json!({ "role": value })))).unwrap().role;
        assert_eq!(role(json!("reader")), Some(Role::Reader));
        assert_eq!(role(json!("ADMIN")), Some(Role::Admin));
        assert_eq!(role(json!(["reader", "admin", "writer"])), Some(Role::Admin));
        assert_eq!(role(json!(["billing", "writer", 7])), Some(Role::Writer));
        assert_eq!(role(json!("superuser")), None);
        assert_eq!(role(json!([])), None);
        assert_eq!(role(json!(42)), None);
        assert_eq!(role(Value::Null), None);
    }

    #[test]
    fn the_role_claim_name_is_configurable() {
        let mut verifier = verifier();
        verifier.role_claim = "auditgraph_roles".into();
        let token = hs256(&with(json!({ "auditgraph_roles": ["reader"] })));
        assert_eq!(verifier.verify(&token).unwrap().role, Some(Role::Reader));
    }

    #[test]
    fn a_principal_is_a_service_only_when_the_token_says_so() {
        let kind = |changes: Value| verifier().verify(&hs256(&with(changes))).unwrap().kind;
        assert_eq!(kind(json!({ "principal_type": "service" })), PrincipalKind::Service);
        assert_eq!(kind(json!({ "principal_type": "human" })), PrincipalKind::Human);
        assert_eq!(kind(json!({ "principal_type": "robot" })), PrincipalKind::Human);
        assert_eq!(kind(json!({})), PrincipalKind::Human);
        let account = "system:serviceaccount:ci:deployer";
        assert_eq!(
            kind(json!({ "sub": account, "principal_type": "human" })),
            PrincipalKind::Human,
            "an explicit kind wins over the name"
        );
        assert_eq!(
            kind(json!({ "sub": account, "principal_type": 7 })),
            PrincipalKind::Human
        );
        assert_eq!(kind(json!({ "sub": account })), PrincipalKind::Service);
        assert_eq!(kind(json!({ "sub": "system:serviceaccount:" })), PrincipalKind::Human);
        assert_eq!(
            kind(json!({ "sub": "system:serviceaccount::deployer" })),
            PrincipalKind::Human
        );
        assert_eq!(
            kind(json!({ "sub": "system:serviceaccount:ci:" })),
            PrincipalKind::Human
        );
    }

    #[test]
    fn an_account_name_in_another_principal_claim_makes_no_service() {
        let mut verifier = verifier();
        verifier.principal_claim = "email".into();
        let token = hs256(&with(json!({ "email": "system:serviceaccount:ci:deployer" })));
        let principal = verifier.verify(&token).unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.kind),
            ("system:serviceaccount:ci:deployer", PrincipalKind::Human)
        );
        let token = hs256(&with(json!({
            "email": "system:serviceaccount:ci:deployer",
            "principal_type": "service",
        })));
        assert_eq!(verifier.verify(&token).unwrap().kind, PrincipalKind::Service);
    }

    #[test]
    fn a_token_without_a_usable_principal_is_refused() {
        for sub in [
            json!(null),
            json!(""),
            json!("  "),
            json!(12),
            json!("x".repeat(256)),
            json!("é".repeat(128)),
            json!("al\u{0}ice"),
            json!("al\nice"),
            json!("anonymous"),
        ] {
            let reason = error(&hs256(&with(json!({ "sub": sub }))));
            assert!(reason.contains("sub claim"), "{reason}");
        }
        assert!(
            verifier()
                .verify(&hs256(&with(json!({ "sub": "x".repeat(255) }))))
                .is_ok()
        );
    }

    #[test]
    fn a_refused_principal_claim_is_not_echoed() {
        let reason = error(&hs256(&with(json!({ "sub": "mallory\nforged log line" }))));
        assert_eq!(
            reason,
            "the token's sub claim is refused: the principal contains control characters"
        );
    }

    #[test]
    fn a_short_secret_is_refused_saying_why() {
        let message = format!("{:#}", secret_key(b"short").err().unwrap());
        assert!(message.contains("at least 32"), "{message}");
    }

    #[test]
    fn a_jwks_key_for_another_algorithm_is_refused_at_load() {
        let jwks = String::from_utf8(fixture("jwks.json"))
            .unwrap()
            .replace("\"RS256\"", "\"PS256\"");
        assert!(format!("{:#}", parse_jwks(&jwks).err().unwrap()).contains("PS256"));
    }

    #[test]
    fn errors_never_echo_the_token() {
        let token = hs256(&with(json!({ "iss": "https://evil.example" })));
        let reason = error(&token);
        assert!(!reason.contains(&token) && !reason.contains("evil"));
    }
}
