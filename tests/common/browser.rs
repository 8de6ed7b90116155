//! A real headless Chromium driven through WebDriver: [`Browser::start`] runs Debian's
//! `chromedriver` on a free loopback port (installed by `.ci/install-chromium`; found through
//! `HOOKGATE_CHROMEDRIVER` / `HOOKGATE_CHROMIUM` or PATH) and opens one session in it. Its
//! methods block, so the tests mix them freely with the blocking [`super::Gateway`] harness.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// How long chromedriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(15);
/// How long a click may take to lead to the next page.
const NAVIGATION: Duration = Duration::from_secs(10);

/// A program from an environment variable, else the first of `names` on PATH.
fn program(variable: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found: run .ci/install-chromium (or set {variable})",
        names[0]
    );
}

/// A running chromedriver with one browser session.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
    driver: Child,
    /// Prefix of the paths given to [`Browser::goto`].
    pub base: String,
    /// chromedriver's and Chromium's `TMPDIR`: their profile and scoped directories go with it
    /// (dropped after the driver is killed).
    _tmp: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width` x `height` pixels.
    pub fn start(base: &str, width: u32, height: u32) -> Browser {
        let chromium = program("HOOKGATE_CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = program("HOOKGATE_CHROMEDRIVER", &["chromedriver"]);
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
            probe.local_addr().expect("probe address").port()
        };
        let tmp = tempfile::tempdir().expect("a temp dir for Chromium");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", chromedriver.display()));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect(address).is_err() {
            assert!(
                started.elapsed() < DRIVER_START,
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for WebDriver");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let client = runtime
            .block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://{address}")),
            )
            .unwrap_or_else(|err| panic!("open a Chromium session: {err}"));
        Browser {
            runtime,
            client: Some(client),
            driver,
            base: base.to_string(),
            _tmp: tmp,
        }
    }

    fn client(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("browser session open")
    }

    /// Opens `base` + `path` (or `path` itself when it is a whole URL).
    pub fn goto(&self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.runtime
            .block_on(self.client().goto(&url))
            .unwrap_or_else(|err| panic!("open {url}: {err}"));
    }

    /// The path (and query) of the page shown.
    pub fn path(&self) -> String {
        let url = self
            .runtime
            .block_on(self.client().current_url())
            .expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Clicks the element `css` selects (a link, or a form's button) and waits until the page
    /// it leads to has replaced this one.
    pub fn click(&self, css: &str) {
        self.runtime.block_on(async {
            let client = self.client();
            let page = client.find(Locator::Css("html")).await.expect("a page");
            let element = client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|err| panic!("find {css}: {err}"));
            element
                .click()
                .await
                .unwrap_or_else(|err| panic!("click {css}: {err}"));
            let started = Instant::now();
            // The old page's root goes stale once the new page is there.
            while page.tag_name().await.is_ok() {
                assert!(started.elapsed() < NAVIGATION, "clicking {css} led nowhere");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // And the new one may still be loading.
            client
                .wait()
                .at_most(NAVIGATION)
                .for_element(Locator::Css("body"))
                .await
                .unwrap_or_else(|err| panic!("the page after clicking {css}: {err}"));
        });
    }

    /// Types `text` into the field `css` selects, after clearing it.
    pub fn type_into(&self, css: &str, text: &str) {
        self.runtime.block_on(async {
            let element = self
                .client()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|err| panic!("find {css}: {err}"));
            element.clear().await.expect("clear field");
            element.send_keys(text).await.expect("type into field");
        });
    }

    /// The visible text of the element `css` selects, or None if there is none.
    pub fn text(&self, css: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.text().await.ok()
        })
    }

    /// Reloads the page until the element `css` selects reads `expected`, or panics after
    /// `timeout`.
    pub fn wait_for_text(&self, css: &str, expected: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            if self.text(css).as_deref() == Some(expected) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{css} still reads {:?}, not {expected:?}, on {}",
                self.text(css),
                self.path()
            );
            std::thread::sleep(Duration::from_millis(200));
            self.runtime
                .block_on(self.client().refresh())
                .expect("reload");
        }
    }

    /// Resizes the window (a phone's width, for instance).
    pub fn resize(&self, width: u32, height: u32) {
        self.runtime
            .block_on(self.client().set_window_size(width, height))
            .expect("resize the window");
    }

    /// A PNG of the window, written to `$HOOKGATE_CONSOLE_SCREENSHOTS/<name>.png` when that
    /// variable names a directory (the pictures in docs/console/ are taken this way).
    pub fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("HOOKGATE_CONSOLE_SCREENSHOTS") else {
            return;
        };
        let png = self
            .runtime
            .block_on(self.client().screenshot())
            .expect("take a screenshot");
        let path = PathBuf::from(dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
