//! Pages and their files, served from the binary itself: nothing a page needs comes from another
//! origin, so the playground works in networks without internet access, and the
//! Content-Security-Policy says so to the browser.
//!
//! The GraphiQL files are built from pinned npm packages by `web/graphiql/refresh.sh` and
//! committed gzip-compressed under `web/graphiql/dist/` with their licences and checksums.

use std::io::Read;
use std::sync::{LazyLock, OnceLock};

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// What every page and file of ours may load: only from this origin. Styles may be inline because
/// the editor (Monaco) sets them from script; fonts come inline as `data:` URLs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One file served from the binary.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    /// The bytes, gzip-compressed when `gzipped`.
    bytes: &'static [u8],
    gzipped: bool,
}

macro_rules! graphiql_file {
    ($name:literal, $content_type:literal, gz) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../web/graphiql/dist/", $name, ".gz")),
            gzipped: true,
        }
    };
    ($name:literal, $content_type:literal, $path:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../web/graphiql/", $path)),
            gzipped: false,
        }
    };
}

static GRAPHIQL_ASSETS: [Asset; 8] = [
    graphiql_file!("graphiql.js", "text/javascript; charset=utf-8", gz),
    graphiql_file!("graphiql.css", "text/css; charset=utf-8", gz),
    graphiql_file!("editor.worker.js", "text/javascript; charset=utf-8", gz),
    graphiql_file!("json.worker.js", "text/javascript; charset=utf-8", gz),
    graphiql_file!("graphql.worker.js", "text/javascript; charset=utf-8", gz),
    graphiql_file!("favicon.svg", "image/svg+xml", "favicon.svg"),
    graphiql_file!("LICENSES.txt", "text/plain; charset=utf-8", "dist/LICENSES.txt"),
    graphiql_file!("SHA256SUMS", "text/plain; charset=utf-8", "dist/SHA256SUMS"),
];

const GRAPHIQL_PAGE: &str = include_str!("../../web/graphiql/index.html");

/// Strong validators of the files as stored, computed once. A file sent decompressed is another
/// representation and gets another tag (`…-identity`), so no cache confuses the two.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| GRAPHIQL_ASSETS.iter().map(|asset| etag_of(asset.bytes, "")).collect());

static PAGE_ETAG: LazyLock<String> = LazyLock::new(|| etag_of(GRAPHIQL_PAGE.as_bytes(), ""));

/// Decompressed copies, made once on the first request of a client that does not take gzip.
static DECOMPRESSED: [OnceLock<Option<Vec<u8>>>; GRAPHIQL_ASSETS.len()] =
    [const { OnceLock::new() }; GRAPHIQL_ASSETS.len()];

/// A strong validator of `bytes`.
pub(super) fn etag_of(bytes: &[u8], suffix: &str) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}{suffix}\"", crate::domain::chain::hex(&digest[..16]))
}

/// The headers of everything served here: the policy, no sniffing, no framing, no referrer.
fn secure(response: &mut Response) {
    secure_with(response, CONTENT_SECURITY_POLICY);
}

/// [`secure`] with another policy.
pub(super) fn secure_with(response: &mut Response, policy: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
}

/// Whether the client holds this version already (`If-None-Match`, weak comparison).
fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// A response with revalidation: the client keeps the file and asks whether it changed
/// (`no-cache` + ETag), so a new server version is picked up at once. `body` is only made when
/// the client does not hold this version. The page's `policy` goes with it.
pub(super) fn cached(
    request: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    policy: &'static str,
    body: impl FnOnce() -> Response,
) -> Response {
    let mut response = if not_modified(request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure_with(&mut response, policy);
    response
}

/// `GET /graphiql`: the playground page.
pub async fn graphiql_page(request: HeaderMap) -> Response {
    cached(
        &request,
        &PAGE_ETAG,
        "text/html; charset=utf-8",
        CONTENT_SECURITY_POLICY,
        || GRAPHIQL_PAGE.into_response(),
    )
}

/// `GET /graphiql/assets/{name}`: a file of the playground, gzip-compressed when the client takes it.
pub async fn graphiql_asset(Path(name): Path<String>, request: HeaderMap) -> Response {
    let Some(index) = GRAPHIQL_ASSETS.iter().position(|asset| asset.name == name) else {
        let mut response = (StatusCode::NOT_FOUND, "no such file\n").into_response();
        secure(&mut response);
        return response;
    };
    let asset = &GRAPHIQL_ASSETS[index];
    if !asset.gzipped {
        return cached(
            &request,
            &ETAGS[index],
            asset.content_type,
            CONTENT_SECURITY_POLICY,
            || asset.bytes.into_response(),
        );
    }
    let mut response = if accepts_gzip(&request) {
        cached(
            &request,
            &ETAGS[index],
            asset.content_type,
            CONTENT_SECURITY_POLICY,
            || ([(header::CONTENT_ENCODING, "gzip")], asset.bytes).into_response(),
        )
    } else {
        let etag = format!("{}-identity\"", ETAGS[index].trim_end_matches('"'));
        cached(
            &request,
            &etag,
            asset.content_type,
            CONTENT_SECURITY_POLICY,
            || match DECOMPRESSED[index].get_or_init(|| gunzip(asset.bytes).ok()) {
                Some(bytes) => bytes.as_slice().into_response(),
                None => {
                    tracing::error!(asset = asset.name, "an embedded file does not decompress");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            },
        )
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

/// Whether `Accept-Encoding` takes gzip: named with a weight above zero, or through `*` when not
/// named at all (RFC 9110 §12.5.3).
fn accepts_gzip(request: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for (coding, weight) in super::weighted_items(request, header::ACCEPT_ENCODING)
        .into_iter()
        .flatten()
    {
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight > 0.0);
        } else if coding == "*" {
            any = Some(weight > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded files are exactly the ones `refresh.sh` built and summed.
    #[test]
    fn embedded_graphiql_files_match_their_checksums() {
        let sums = include_str!("../../web/graphiql/dist/SHA256SUMS");
        let mut checked = 0;
        for line in sums.lines() {
            let (sum, file) = line.split_once("  ").expect("`sum  file` lines");
            let asset = GRAPHIQL_ASSETS
                .iter()
                .find(|a| (a.gzipped && file == format!("{}.gz", a.name)) || (!a.gzipped && file == a.name))
                .unwrap_or_else(|| panic!("{file} is listed but not served"));
            let digest = crate::domain::chain::hex(&Sha256::digest(asset.bytes));
            assert_eq!(digest, sum, "{file}");
            checked += 1;
        }
        let gzipped = GRAPHIQL_ASSETS.iter().filter(|a| a.gzipped).count();
        assert_eq!(checked, gzipped + 1, "every built file and the licences are summed");
    }

    #[test]
    fn every_compressed_file_decompresses() {
        for asset in GRAPHIQL_ASSETS.iter().filter(|a| a.gzipped) {
            assert!(gunzip(asset.bytes).unwrap().len() > asset.bytes.len(), "{}", asset.name);
        }
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; Q=0.0, br"));
        assert!(!with("gzip;q=0, *"), "an explicit refusal wins over the wildcard");
        assert!(!with("*;q=0"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn revalidation_compares_weakly_and_lists() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            not_modified(&headers, "\"abc\"")
        };
        assert!(with("\"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("\"x\", \"abc\""));
        assert!(with("*"));
        assert!(!with("\"abcd\""));
        assert!(!not_modified(&HeaderMap::new(), "\"abc\""));
    }

    #[test]
    fn the_page_loads_nothing_from_another_origin() {
        assert!(!GRAPHIQL_PAGE.contains("http://") && !GRAPHIQL_PAGE.contains("https://"));
        assert!(
            !GRAPHIQL_PAGE.contains("<script>"),
            "no inline script: the policy forbids it"
        );
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
    }
}
