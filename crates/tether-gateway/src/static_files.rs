//! Pages: the built-in pages ([`crate::pages`]), or files from a directory, with traversal
//! refused. `/tether.js` is served beside a directory that has none of its own.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, ETAG, HeaderValue, IF_NONE_MATCH, LOCATION};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::config::{ConfigError, StaticConfig};
use crate::pages;
use crate::request::percent_decode;
use crate::response::{self, Body};

/// Where pages come from.
pub(crate) enum StaticFiles {
    /// The built-in pages ([`pages::ASSETS`]).
    BuiltIn {
        /// Validators of the embedded files, in the order of [`pages::ASSETS`].
        etags: Vec<String>,
    },
    /// Files under `root` (canonical), `index` for directories.
    Directory {
        /// The canonical root; nothing outside it is served.
        root: PathBuf,
        /// The file served for a directory.
        index: String,
    },
}

/// What a request path resolves to.
enum Lookup {
    File(PathBuf),
    /// A directory asked for without the trailing slash: redirect so relative links work.
    AddSlash,
    NotFound,
    /// `..`, a backslash, NUL or a broken escape: refused outright.
    Refused,
}

impl StaticFiles {
    pub(crate) fn new(config: &StaticConfig) -> Result<Self, ConfigError> {
        let Some(root) = &config.root else {
            return Ok(StaticFiles::BuiltIn {
                etags: pages::ASSETS
                    .iter()
                    .map(|a| built_in_etag(a.body))
                    .collect(),
            });
        };
        let canonical = root
            .canonicalize()
            .map_err(|e| ConfigError::new("static.root", format!("{}: {e}", root.display())))?;
        if !canonical.is_dir() {
            return Err(ConfigError::new(
                "static.root",
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(StaticFiles::Directory {
            root: canonical,
            index: config.index.clone(),
        })
    }

    /// Answers a `GET` or `HEAD` for `raw_path` (still percent-encoded).
    pub(crate) async fn serve(
        &self,
        method: &Method,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return response::method_not_allowed("GET, HEAD");
        }
        let (body, content_type, etag) = match self {
            StaticFiles::BuiltIn { etags } => {
                let Some(i) = pages::find(raw_path) else {
                    return not_found();
                };
                let asset = &pages::ASSETS[i];
                (
                    Bytes::from_static(asset.body),
                    asset.content_type,
                    etags[i].clone(),
                )
            }
            StaticFiles::Directory { root, index } => match lookup(root, index, raw_path).await {
                Lookup::NotFound if raw_path == pages::CLIENT_PATH => {
                    let asset = &pages::ASSETS[pages::find(raw_path).unwrap_or_default()];
                    (
                        Bytes::from_static(asset.body),
                        asset.content_type,
                        built_in_etag(asset.body),
                    )
                }
                Lookup::File(path) => {
                    let Ok((body, etag)) = read(&path).await else {
                        return not_found();
                    };
                    (body, content_type(&path), etag)
                }
                Lookup::AddSlash => {
                    let mut response = response::text(StatusCode::MOVED_PERMANENTLY, "moved");
                    // One leading slash only: "//host/dir" must not become a redirect to another
                    // host.
                    let location = format!("/{}/", raw_path.trim_start_matches('/'));
                    if let Ok(location) = HeaderValue::from_str(&location) {
                        response.headers_mut().insert(LOCATION, location);
                    }
                    return response;
                }
                Lookup::NotFound => return not_found(),
                Lookup::Refused => {
                    return response::text(StatusCode::BAD_REQUEST, "bad path");
                }
            },
        };
        let fresh = headers
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let length = body.len();
        let mut response = if fresh {
            response::with_type(StatusCode::NOT_MODIFIED, content_type, Bytes::new())
        } else if method == Method::HEAD {
            response::with_type(StatusCode::OK, content_type, Bytes::new())
        } else {
            response::with_type(StatusCode::OK, content_type, body)
        };
        let out = response.headers_mut();
        if !fresh {
            out.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            out.insert(ETAG, etag);
        }
        response
    }

    /// Whether a `GET` of `raw_path` would find a page.
    pub(crate) async fn has(&self, raw_path: &str) -> bool {
        match self {
            StaticFiles::BuiltIn { .. } => pages::find(raw_path).is_some(),
            StaticFiles::Directory { root, index } => {
                raw_path == pages::CLIENT_PATH
                    || matches!(lookup(root, index, raw_path).await, Lookup::File(_))
            }
        }
    }
}

fn not_found() -> Response<Body> {
    response::text(StatusCode::NOT_FOUND, "not found")
}

/// Resolves a request path under `root`, refusing anything that could leave it.
async fn lookup(root: &Path, index: &str, raw_path: &str) -> Lookup {
    // Backslashes are separators on Windows and never needed in a URL path: refuse them raw
    // or encoded, with NUL and malformed escapes.
    let Some(decoded) = percent_decode(raw_path, false) else {
        return Lookup::Refused;
    };
    if raw_path.contains('\\') || decoded.contains(['\\', '\0']) {
        return Lookup::Refused;
    }
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == ".." || *s == ".") {
        return Lookup::Refused;
    }
    // Hidden files (.git, .env) are never served.
    if segments.iter().any(|s| s.starts_with('.')) {
        return Lookup::NotFound;
    }
    let mut path = root.to_path_buf();
    path.extend(&segments);
    // A symbolic link may point anywhere: serve only what really lies under the root.
    let Ok(canonical) = tokio::fs::canonicalize(&path).await else {
        return Lookup::NotFound;
    };
    if !canonical.starts_with(root) {
        return Lookup::NotFound;
    }
    let Ok(meta) = tokio::fs::metadata(&canonical).await else {
        return Lookup::NotFound;
    };
    if meta.is_dir() {
        if !decoded.ends_with('/') {
            return Lookup::AddSlash;
        }
        let index_path = canonical.join(index);
        return match tokio::fs::metadata(&index_path).await {
            Ok(m) if m.is_file() => Lookup::File(index_path),
            _ => Lookup::NotFound,
        };
    }
    if meta.is_file() {
        Lookup::File(canonical)
    } else {
        Lookup::NotFound
    }
}

/// The file's bytes and a validator from its length and modification time.
async fn read(path: &Path) -> std::io::Result<(Bytes, String)> {
    let body = tokio::fs::read(path).await?;
    let modified = tokio::fs::metadata(path)
        .await?
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("W/\"{:x}-{modified:x}\"", body.len());
    Ok((Bytes::from(body), etag))
}

/// The `Content-Type` for a file, by its extension.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// The strong validator of an embedded file.
fn built_in_etag(body: &[u8]) -> String {
    format!("\"{:016x}\"", fnv1a(body))
}

/// FNV-1a, 64 bits: a stable validator for the embedded files.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
