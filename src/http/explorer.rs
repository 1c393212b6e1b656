//! The causality explorer: a page of its own at `/` for the people who watch and investigate,
//! written as plain ES modules under `web/explorer/` and served from the binary. It loads nothing
//! from another origin and needs no build step; its policy is stricter than GraphiQL's (no inline
//! styles at all).
//!
//! `AUDITGRAPH_EXPLORER_DIR` serves the files from a directory instead, read at each request, so
//! that the page can be changed and reloaded without rebuilding the server.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::assets::{cached, etag_of, secure_with};

/// What the explorer may load: only from this origin, no inline script or style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One file of the explorer.
struct File {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! explorer_file {
    ($name:literal) => {
        explorer_file!($name, "text/javascript; charset=utf-8")
    };
    ($name:literal, $content_type:literal) => {
        File {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../web/explorer/", $name)),
        }
    };
}

static FILES: [File; 10] = [
    explorer_file!("index.html", "text/html; charset=utf-8"),
    explorer_file!("explorer.js"),
    explorer_file!("api.js"),
    explorer_file!("documents.js"),
    explorer_file!("live.js"),
    explorer_file!("tree.js"),
    explorer_file!("timeline.js"),
    explorer_file!("detail.js"),
    explorer_file!("search.js"),
    explorer_file!("explorer.css", "text/css; charset=utf-8"),
];

static ETAGS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| FILES.iter().map(|file| etag_of(file.bytes, "")).collect());

/// Where the explorer's files come from.
#[derive(Clone, Debug, Default)]
pub struct ExplorerFiles {
    /// A directory to read them from at each request instead of the binary (development).
    pub dir: Option<PathBuf>,
}

/// `GET /`: the explorer's page.
pub async fn page(State(files): State<ExplorerFiles>, request: HeaderMap) -> Response {
    serve(&files, "index.html", &request)
}

/// `GET /explorer/{name}`: one of its files.
pub async fn file(State(files): State<ExplorerFiles>, Path(name): Path<String>, request: HeaderMap) -> Response {
    if name == "index.html" {
        return not_found();
    }
    serve(&files, &name, &request)
}

fn serve(files: &ExplorerFiles, name: &str, request: &HeaderMap) -> Response {
    let Some(index) = FILES.iter().position(|file| file.name == name) else {
        return not_found();
    };
    let file = &FILES[index];
    match &files.dir {
        None => cached(
            request,
            &ETAGS[index],
            file.content_type,
            CONTENT_SECURITY_POLICY,
            || file.bytes.into_response(),
        ),
        Some(dir) => match std::fs::read(dir.join(file.name)) {
            Ok(bytes) => {
                let etag = etag_of(&bytes, "");
                cached(request, &etag, file.content_type, CONTENT_SECURITY_POLICY, || {
                    bytes.into_response()
                })
            }
            Err(error) => {
                tracing::warn!(%error, file = file.name, dir = %dir.display(), "cannot read an explorer file");
                not_found()
            }
        },
    }
}

fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "no such file\n").into_response();
    secure_with(&mut response, CONTENT_SECURITY_POLICY);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_load_nothing_from_another_origin_and_nothing_inline() {
        for file in &FILES {
            let text = std::str::from_utf8(file.bytes).expect("text");
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") || code.starts_with('*') || code.starts_with("/*") {
                    continue;
                }
                assert!(
                    !code.contains("http://") && !code.contains("https://"),
                    "{}: {line}",
                    file.name
                );
            }
            if file.name == "index.html" {
                assert!(
                    !text.contains("<script>") && !text.contains("<style"),
                    "no inline script or style"
                );
                assert!(!text.contains("style=\""), "no inline style attribute");
            }
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
