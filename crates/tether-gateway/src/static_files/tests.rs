use std::path::PathBuf;

use http_body_util::BodyExt;

use super::*;

struct Site {
    dir: PathBuf,
    files: StaticFiles,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn site(name: &str) -> Site {
    let dir = std::env::temp_dir().join(format!("tether-static-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("public/docs")).unwrap();
    std::fs::write(dir.join("public/index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.join("public/app.js"), "let x = 1;").unwrap();
    std::fs::write(dir.join("public/style.CSS"), "p{}").unwrap();
    std::fs::write(dir.join("public/docs/index.html"), "docs").unwrap();
    std::fs::write(dir.join("public/.env"), "SECRET=1").unwrap();
    std::fs::write(dir.join("secret.txt"), "outside").unwrap();
    let files = StaticFiles::new(&StaticConfig {
        root: Some(dir.join("public")),
        index: "index.html".into(),
    })
    .unwrap();
    Site { dir, files }
}

async fn get(files: &StaticFiles, path: &str) -> (StatusCode, HeaderMap, String) {
    let response = files.serve(&Method::GET, path, &HeaderMap::new()).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into(),
    )
}

#[tokio::test]
async fn serves_files_with_their_content_types() {
    let site = site("types");
    let (status, headers, body) = get(&site.files, "/").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>home</h1>"));
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let (_, headers, _) = get(&site.files, "/app.js").await;
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    let (_, headers, _) = get(&site.files, "/style.CSS").await;
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(get(&site.files, "/docs/").await.2, "docs");
    assert_eq!(
        get(&site.files, "/missing.html").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn directories_without_slash_redirect_to_the_same_host() {
    let site = site("redirect");
    let (status, headers, _) = get(&site.files, "/docs").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/docs/");
    std::fs::create_dir_all(site.dir.join("public/evil.example")).unwrap();
    let (_, headers, _) = get(&site.files, "//evil.example").await;
    assert_eq!(headers["location"], "/evil.example/");
}

#[tokio::test]
async fn traversal_is_refused_in_every_spelling() {
    let site = site("traversal");
    for path in [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/..\\secret.txt",
        "/%5c..%5csecret.txt",
        "/./index.html",
        "/index.html%00.js",
        "/%zz",
    ] {
        let (status, _, body) = get(&site.files, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(!body.contains("outside"), "{path}");
    }
    assert_eq!(get(&site.files, "/.env").await.0, StatusCode::NOT_FOUND);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_out_of_the_root_are_not_followed() {
    let site = site("symlink");
    std::os::unix::fs::symlink(
        site.dir.join("secret.txt"),
        site.dir.join("public/link.txt"),
    )
    .unwrap();
    assert_eq!(get(&site.files, "/link.txt").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn head_has_no_body_and_etag_revalidates() {
    let site = site("head");
    let response = site
        .files
        .serve(&Method::HEAD, "/app.js", &HeaderMap::new())
        .await;
    assert_eq!(response.headers()["content-length"], "10");
    let etag = response.headers()["etag"].clone();
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    let mut headers = HeaderMap::new();
    headers.insert(IF_NONE_MATCH, etag);
    let response = site.files.serve(&Method::GET, "/app.js", &headers).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = site
        .files
        .serve(&Method::POST, "/app.js", &HeaderMap::new())
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn built_in_page_is_served_at_the_root_only() {
    let files = StaticFiles::new(&StaticConfig::default()).unwrap();
    let (status, headers, body) = get(&files, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(body.contains("tether.pubsub.v1"));
    assert!(files.has("/index.html").await);
    assert_eq!(get(&files, "/other").await.0, StatusCode::NOT_FOUND);
}

#[test]
fn a_missing_root_names_the_key() {
    let err = StaticFiles::new(&StaticConfig {
        root: Some("/nonexistent/tether/root".into()),
        index: "index.html".into(),
    })
    .err()
    .unwrap();
    assert_eq!(err.key, "static.root");
}
