//! A headless Chromium for end-to-end tests of the web portal, driven over WebDriver by
//! Debian's chromedriver (`apt-get install chromium chromium-driver`; .ci/run installs both).
//!
//! The client is the `fantoccini` crate without any TLS feature: chromedriver listens on
//! 127.0.0.1 over plain HTTP, so hyper's `HttpConnector` is all it needs (no rustls provider,
//! no openssl). It adds 22 crates to Cargo.lock (mostly `webdriver`'s ICU text segmentation),
//! under the 25 at which a small WebDriver client over reqwest would have been the leaner
//! choice, and it brings a tested WebDriver implementation instead of a home-made one.
//!
//! A missing chromedriver fails the browser tests (a skip must not pass for a pass) unless
//! `SSPR_SKIP_BROWSER=1`, when `Browser::start` returns `None` and the test returns early.
//!
//! ```ignore
//! let Some(b) = Browser::start("en").await else { return };
//! b.goto(&format!("{}/reset", server.url)).await;
//! b.fill("input[name=user]", "alice").await;
//! b.click("button[type=submit]").await;
//! b.wait_for_text("code").await;
//! ```

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Reaped, Server, free_port};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long `wait_for` and friends wait before failing the test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A cookie as the browser holds it, with the flags tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict`, `Lax` or `None` as the browser reports it; `None` if it reports nothing.
    pub same_site: Option<String>,
}

/// One headless Chromium session. Dropping it kills chromedriver and the browser.
pub struct Browser {
    client: Client,
    /// chromedriver's process group (Chromium and its helpers are in it too).
    pgid: u32,
    /// chromedriver's port, for the WebDriver extensions fantoccini has no call for.
    port: u16,
    driver: Reaped,
    /// The profile (`--user-data-dir`), chromedriver's log, and screenshots if tests like.
    pub dir: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver is its own process-group leader: take Chromium down with it, whatever
        // state the session is in (the test may be unwinding from a failed assertion).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose UI language and Accept-Language are
    /// `lang` (`"en"`, `"zh-CN"`). `None` only when chromedriver is missing and
    /// `SSPR_SKIP_BROWSER=1`; missing without that variable fails the test.
    pub async fn start(lang: &str) -> Option<Browser> {
        Self::start_with(lang, None, true).await
    }

    /// [`Browser::start`] with JavaScript switched off, as some users and many hardened
    /// browsers have it.
    pub async fn start_without_javascript(lang: &str) -> Option<Browser> {
        Self::start_with(lang, None, false).await
    }

    /// [`Browser::start`] with the server's CA trusted by Chromium itself (an NSS database in
    /// the browser's home), as a site's real certificate would be: WebAuthn refuses to run on a
    /// page whose certificate the browser only accepted as an error.
    pub async fn start_trusting(lang: &str, ca: &Path) -> Option<Browser> {
        Self::start_with(lang, Some(ca), true).await
    }

    async fn start_with(lang: &str, ca: Option<&Path>, javascript: bool) -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() {
            if std::env::var("SSPR_SKIP_BROWSER").as_deref() == Ok("1") {
                eprintln!("SKIPPED: {CHROMEDRIVER} missing and SSPR_SKIP_BROWSER=1");
                return None;
            }
            panic!(
                "{CHROMEDRIVER} is missing: the browser tests need Chromium and chromedriver \
                 (run `apt-get install chromium chromium-driver`, as .ci/run does), or set \
                 SSPR_SKIP_BROWSER=1 to skip them"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("chromedriver.log");
        let home = dir.path().join("home");
        if let Some(ca) = ca {
            let db = home.join(".pki/nssdb");
            std::fs::create_dir_all(&db).unwrap();
            let db = format!("sql:{}", db.display());
            for args in [
                vec!["-N", "-d", &db, "--empty-password"],
                vec![
                    "-A",
                    "-d",
                    &db,
                    "-n",
                    "sspr-test-ca",
                    "-t",
                    "C,,",
                    "-i",
                    ca.to_str().unwrap(),
                ],
            ] {
                let st = Command::new("certutil")
                    .args(&args)
                    .status()
                    .unwrap_or_else(|e| {
                        panic!("certutil (apt-get install libnss3-tools, as .ci/run does): {e}")
                    });
                assert!(st.success(), "certutil {args:?}");
            }
        }
        let mut cmd = Command::new(CHROMEDRIVER);
        if ca.is_some() {
            cmd.env("HOME", &home);
        }
        let child = cmd
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let pgid = child.id();
        let driver = Reaped(child);
        wait_ready(port, &log);

        let profile = dir.path().join("profile");
        let caps = json!({
            "browserName": "chrome",
            // The server's certificate comes from its own self-signed CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--lang={lang}"),
                ],
                // What Chromium sends as Accept-Language (--lang alone sets the UI language).
                "prefs": {
                    "intl.accept_languages": lang,
                    "profile.managed_default_content_settings.javascript":
                        if javascript { 1 } else { 2 },
                },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no Chromium session from chromedriver: {e}\n{}",
                    tail(&log, 40)
                )
            });
        Some(Browser {
            client,
            pgid,
            port,
            driver,
            dir,
        })
    }

    /// A WebDriver command of this session that fantoccini has no call for (the WebAuthn
    /// extension): `method` `/session/{id}{path}` with a JSON body; the answer's `value`.
    pub async fn webdriver(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let sid = self.client.session_id().await.unwrap().unwrap();
        let path = format!("/session/{sid}{path}");
        let port = self.port;
        let method = method.to_string();
        tokio::task::spawn_blocking(move || {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).unwrap();
            // chromedriver keeps the connection open: read the headers, then Content-Length.
            let mut resp = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "chromedriver closed the connection: {method} {path}");
                resp.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&resp).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if resp.len() >= end + 4 + len {
                        let v: Value = serde_json::from_slice(&resp[end + 4..end + 4 + len])
                            .unwrap_or(Value::Null);
                        assert!(
                            text.starts_with("HTTP/1.1 200"),
                            "{method} {path}: {}",
                            String::from_utf8_lossy(&resp)
                        );
                        return v["value"].clone();
                    }
                }
            }
        })
        .await
        .unwrap()
    }

    /// A virtual authenticator (WebDriver's WebAuthn extension): a platform authenticator
    /// that keeps discoverable credentials and verifies the user at once. Its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        let v = self
            .webdriver(
                "POST",
                "/webauthn/authenticator",
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                })),
            )
            .await;
        v.as_str().unwrap().to_string()
    }

    /// The fantoccini client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Opens `path` (e.g. `/reset`) on the test server.
    pub async fn open(&self, server: &Server, path: &str) {
        self.goto(&format!("{}{path}", server.url)).await;
    }

    pub async fn current_url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Waits (up to [`TIMEOUT`]) for an element matching `css`; fails naming the selector,
    /// the URL and the page text.
    pub async fn wait_for(&self, css: &str) -> Element {
        let start = Instant::now();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if start.elapsed() > TIMEOUT {
                panic!(
                    "{}",
                    self.failure(&format!("no element matches `{css}` after {TIMEOUT:?}"))
                        .await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to [`TIMEOUT`]) for an element matching `css` that is displayed.
    pub async fn wait_visible(&self, css: &str) -> Element {
        let start = Instant::now();
        loop {
            let e = self.wait_for(css).await;
            if e.is_displayed().await.unwrap_or(false) {
                return e;
            }
            if start.elapsed() > TIMEOUT {
                panic!(
                    "{}",
                    self.failure(&format!("`{css}` is not displayed after {TIMEOUT:?}"))
                        .await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to [`TIMEOUT`]) until the page's visible text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        let start = Instant::now();
        loop {
            if self.page_text().await.contains(needle) {
                return;
            }
            if start.elapsed() > TIMEOUT {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "the page never showed {needle:?} after {TIMEOUT:?}"
                    ))
                    .await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to [`TIMEOUT`]) until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let start = Instant::now();
        loop {
            if !self.exists(css).await {
                return;
            }
            if start.elapsed() > TIMEOUT {
                panic!(
                    "{}",
                    self.failure(&format!("`{css}` is still there after {TIMEOUT:?}"))
                        .await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| !v.is_empty())
            .unwrap_or(false)
    }

    /// Replaces the value of the input matching `css` with `text`, typed key by key.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_visible(css).await;
        e.clear()
            .await
            .unwrap_or_else(|err| panic!("clearing `{css}`: {err}"));
        e.send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("typing into `{css}`: {err}"));
    }

    /// Clicks the element matching `css` (waiting for it to be displayed first).
    pub async fn click(&self, css: &str) {
        let e = self.wait_visible(css).await;
        if let Err(err) = e.click().await {
            panic!(
                "{}",
                self.failure(&format!("clicking `{css}`: {err}")).await
            );
        }
    }

    /// Chooses the `<option>` with this value in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let e = self.wait_visible(css).await;
        if let Err(err) = e.select_by_value(value).await {
            panic!(
                "{}",
                self.failure(&format!("selecting {value:?} in `{css}`: {err}"))
                    .await
            );
        }
    }

    /// The visible text of the element matching `css` (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// An attribute or property (`value`, `disabled`, ...) of the element matching `css`.
    pub async fn prop(&self, css: &str, name: &str) -> Option<String> {
        self.wait_for(css).await.prop(name).await.unwrap()
    }

    /// The whole page's visible text (`document.body.innerText`).
    pub async fn page_text(&self) -> String {
        match self
            .execute("return document.body ? document.body.innerText : '';")
            .await
        {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// The page's HTML as the browser now has it.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Runs `js` as a function body in the page (`return ...` gives the result).
    pub async fn execute(&self, js: &str) -> Value {
        self.execute_with(js, Vec::new()).await
    }

    /// As `execute`, with `arguments[0..]`.
    pub async fn execute_with(&self, js: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(js, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// The cookies the browser holds for the current page's origin.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_string(),
                value: c.value().to_string(),
                path: c.path().map(str::to_string),
                secure: c.secure().unwrap_or(false),
                http_only: c.http_only().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect()
    }

    pub async fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().await.into_iter().find(|c| c.name == name)
    }

    /// Ends the session cleanly (dropping the browser also works, by killing it).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// A failure message: `what`, the URL and the page text; keeps a screenshot.
    async fn failure(&self, what: &str) -> String {
        let url = self.client.current_url().await.map(|u| u.to_string());
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : '';",
                vec![],
            )
            .await;
        let shot = self.failure_screenshot().await;
        format!(
            "{what}\nurl: {}\nscreenshot: {}\npage text:\n{}",
            url.unwrap_or_else(|e| format!("<{e}>")),
            shot.map(|p| p.display().to_string())
                .unwrap_or_else(|| "<none>".into()),
            match text {
                Ok(Value::String(s)) => s,
                Ok(v) => v.to_string(),
                Err(e) => format!("<{e}>"),
            }
        )
    }

    /// A screenshot outside the (deleted) temporary directory, for reading after a failure.
    async fn failure_screenshot(&self) -> Option<PathBuf> {
        let png = self.client.screenshot().await.ok()?;
        let path = std::env::temp_dir().join(format!(
            "sspr-browser-failure-{}-{}.png",
            std::process::id(),
            self.pgid
        ));
        std::fs::write(&path, png).ok()?;
        Some(path)
    }
}

/// Waits until chromedriver on `port` says it is ready (`GET /status`).
fn wait_ready(port: u16, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < TIMEOUT {
        if status_ready(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "chromedriver on port {port} not ready after {TIMEOUT:?}\n{}",
        tail(log, 40)
    );
}

/// One `GET /status`. chromedriver keeps the connection open whatever the request says, so
/// this reads until the answer says ready rather than to the end.
fn status_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        resp.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&resp).contains("\"ready\":true") {
            return true;
        }
    }
    false
}

/// The last `n` lines of a log file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    format!(
        "{} (last {n} lines):\n{}",
        path.display(),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

#[tokio::test]
async fn browser_smoke() {
    let server = Server::start().await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.goto(&format!("{}/healthz", server.url)).await;
    let text = b.page_text().await;
    assert!(text.contains("ok"), "healthz page text: {text:?}");
    assert!(
        b.current_url().await.starts_with(&server.url),
        "{}",
        b.current_url().await
    );
    let langs = b.execute("return navigator.languages;").await;
    assert_eq!(langs[0], "en", "navigator.languages: {langs}");
    let shot = server.dir.path().join("healthz.png");
    b.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    b.close().await;
}
