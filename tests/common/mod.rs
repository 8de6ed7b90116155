//! Test harness shared by the integration tests.
//!
//! [`Gateway`] runs the real `hookgate` binary on port 0 with a config and a data directory in a
//! temporary directory, drains its stderr into a buffer the tests can assert on, and offers
//! clients for the public and admin listeners. The rest of the module holds what several test
//! crates need: request signing, fixtures, raw-socket HTTP and deterministic test bodies.
//!
//! Each test crate uses a different subset of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod browser;
pub mod console;
pub mod crashfs;
pub mod load;
pub mod nats;
pub mod raw;
pub mod sign;
pub mod stub;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// The admin bearer token every test gateway is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// How long the gateway may take to log its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown may take before a test gives up on it.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds the command that runs the gateway, for tests that must run it inside something
/// (a mount namespace with a small tmpfs, for instance). The command must end up `exec`ing
/// `bin serve --config config` in the same process, so that signals reach the gateway.
pub type Wrapper = fn(bin: &Path, config: &Path, data_dir: &Path) -> Command;

/// Path of the binary under test.
pub fn hookgate_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hookgate"))
}

/// Path of a file in the repository's `fixtures/` directory.
pub fn fixture_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// A TOML basic string holding `value`.
pub fn toml_str(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `[[provider]]` table (no `secrets` key when `secrets` is empty). `extra` holds further `key = value` lines (event_id, tolerance_s...).
pub fn provider(name: &str, verify: &str, secrets: &[&str], extra: &str) -> String {
    let secrets = if secrets.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = secrets.iter().map(|s| toml_str(s)).collect();
        format!("secrets = [{}]\n", quoted.join(", "))
    };
    format!(
        "\n[[provider]]\nname = {}\nverify = {}\n{secrets}{extra}\n",
        toml_str(name),
        toml_str(verify),
    )
}

/// Runs `hookgate serve --config path` for a start that must fail: waits up to `within` for it
/// to exit (killing it and panicking if it still runs then), and returns its status and stderr.
pub fn serve_until_it_exits(path: &Path, within: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(hookgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hookgate serve");
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        stderr
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hookgate serve") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hookgate serve --config {} still runs after {within:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, reader.join().expect("read stderr"))
}

/// A config with both listeners on loopback ports the OS picks, the store in `data_dir` and the
/// test admin token: `server` adds lines to `[server]`, `extra` tables after `[admin]`.
pub fn config_toml(data_dir: &Path, server: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {}\n{server}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {}\n{extra}",
        toml_str(&data_dir.to_string_lossy()),
        toml_str(ADMIN_TOKEN),
    )
}

/// Configures and starts a [`Gateway`].
#[derive(Default)]
pub struct GatewayBuilder {
    server: String,
    extra: String,
    wrapper: Option<Wrapper>,
    env: Vec<(String, std::ffi::OsString)>,
    start_timeout: Option<Duration>,
    data_dir: Option<PathBuf>,
}

impl GatewayBuilder {
    /// Extra `key = value` lines for the `[server]` table.
    pub fn server(mut self, lines: &str) -> Self {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// Extra tables appended after `[admin]` (providers, `[store]`...).
    pub fn config(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// Runs the gateway through `wrapper` instead of directly.
    pub fn wrapper(mut self, wrapper: Wrapper) -> Self {
        self.wrapper = Some(wrapper);
        self
    }

    /// Sets an environment variable for the gateway (at every start).
    pub fn env(mut self, name: &str, value: impl Into<std::ffi::OsString>) -> Self {
        self.env.push((name.to_string(), value.into()));
        self
    }

    /// How long a start may take before it counts as failed ([`START_TIMEOUT`] unless set).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    /// Uses `path` (an existing directory: a mount point, say) as `data_dir` instead of a new
    /// directory in the gateway's temporary directory.
    pub fn data_dir(mut self, path: &Path) -> Self {
        self.data_dir = Some(path.to_path_buf());
        self
    }

    /// Writes the config and starts the gateway; panics (with its stderr) if it does not come up.
    pub fn start(self) -> Gateway {
        let dir = tempfile::tempdir().expect("create temp dir");
        let data_dir = self.data_dir.unwrap_or_else(|| dir.path().join("data"));
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let config_path = dir.path().join("config.toml");
        let config = config_toml(&data_dir, &self.server, &self.extra);
        std::fs::write(&config_path, config).expect("write config");
        let mut gateway = Gateway {
            dir,
            config_path,
            data_dir,
            wrapper: self.wrapper,
            env: self.env,
            start_timeout: self.start_timeout.unwrap_or(START_TIMEOUT),
            child: None,
            logs: Arc::new(Mutex::new(String::new())),
            drained: Mutex::new(None),
            api: Api::unconnected(),
        };
        gateway.spawn();
        gateway
    }
}

/// A running `hookgate serve`. Dropping it kills the process.
pub struct Gateway {
    dir: TempDir,
    config_path: PathBuf,
    data_dir: PathBuf,
    wrapper: Option<Wrapper>,
    env: Vec<(String, std::ffi::OsString)>,
    start_timeout: Duration,
    child: Option<Child>,
    logs: Arc<Mutex<String>>,
    /// Disconnected once the thread reading the child's stderr has read it all.
    drained: Mutex<Option<mpsc::Receiver<()>>>,
    api: Api,
}

impl Gateway {
    /// Starts a gateway whose config is the harness's defaults plus `extra` (provider tables).
    pub fn start(extra: &str) -> Gateway {
        Gateway::builder().config(extra).start()
    }

    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The gateway's `data_dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A cheap, cloneable client for the current process (for threads that outlive a restart).
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// Everything the gateway (and earlier runs of it) wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("logs lock").clone()
    }

    /// The number a log line of the last start gave `field` (`field=N`); panics if none did.
    pub fn logged_at_last_start(&self, field: &str) -> u64 {
        let logs = self.logs();
        let last = logs
            .rsplit("---- harness: restart ----")
            .next()
            .unwrap_or_default();
        last.split(&format!("{field}="))
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in the last start's logs:\n{last}"))
    }

    /// The process id of the running gateway.
    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("gateway is not running");
        i32::try_from(child.id()).expect("pid fits i32")
    }

    /// Sends `sig` to the gateway without waiting (usable while other threads borrow it).
    pub fn signal(&self, sig: Signal) {
        signal::kill(Pid::from_raw(self.pid()), sig).expect("send signal to gateway");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL, then reap the process (and read the last of its log).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_drained();
    }

    /// Waits (at most 2 s: a child of the process may hold its stderr) until the lines the
    /// process wrote before it ended are in [`Gateway::logs`].
    fn wait_drained(&mut self) {
        let drained = self.drained.get_mut().expect("drained lock").take();
        if let Some(drained) = drained {
            let _ = drained.recv_timeout(Duration::from_secs(2));
        }
    }

    /// SIGTERM, then wait (at most [`EXIT_TIMEOUT`]) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(EXIT_TIMEOUT)
    }

    /// Waits for the process to exit on its own; panics (killing it) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("gateway is not running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.wait_drained();
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gateway did not exit within {timeout:?}; stderr:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the gateway again on the same config and data dir (killing it first if it runs).
    /// The listeners get new ports: use `public_url`/`admin_url` again afterwards.
    pub fn restart(&mut self) {
        if let Err(err) = self.try_restart() {
            panic!("{err}; stderr:\n{}", self.logs());
        }
    }

    /// [`Gateway::restart`], answering `Err` with the reason if it exits or does not listen.
    pub fn try_restart(&mut self) -> Result<(), String> {
        self.kill();
        self.logs
            .lock()
            .expect("logs lock")
            .push_str("---- harness: restart ----\n");
        self.try_spawn()
    }

    fn spawn(&mut self) {
        if let Err(err) = self.try_spawn() {
            panic!("{err}; stderr:\n{}", self.logs());
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let bin = hookgate_bin();
        let mut cmd = match self.wrapper {
            Some(wrapper) => wrapper(bin, &self.config_path, &self.data_dir),
            None => {
                let mut cmd = Command::new(bin);
                cmd.arg("serve").arg("--config").arg(&self.config_path);
                cmd
            }
        };
        cmd.env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env_remove("HOOKGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hookgate");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let logs = Arc::clone(&self.logs);
        let (drained_tx, drained) = mpsc::channel::<()>();
        *self.drained.get_mut().expect("drained lock") = Some(drained);
        std::thread::spawn(move || {
            let _drained = drained_tx;
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some(addrs) = parse_listening_line(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addrs);
                    }
                }
                let mut logs = logs.lock().expect("logs lock");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let started = rx.recv_timeout(self.start_timeout);
        let (public, admin) = match started {
            Ok(addrs) => addrs,
            Err(err) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                // Give the drain thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "hookgate did not log `hookgate listening public=.. admin=..` ({err}); \
                     exit status {status:?}"
                ));
            }
        };
        self.child = Some(child);
        self.api = Api::new(public, admin);
        Ok(())
    }
}

impl std::ops::Deref for Gateway {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- hookgate stderr ----\n{}", self.logs());
        }
    }
}

/// Parses `... hookgate listening public=IP:PORT admin=IP:PORT ...`, in a text line or in the
/// `message` of a JSON line (`--log-format json`).
pub fn parse_listening_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = &line[line.find("hookgate listening")?..];
    let mut public = None;
    let mut admin = None;
    // The address ends at a closing quote or comma (JSON: `admin=IP:PORT","target":...`).
    let address = |text: &str| -> Option<SocketAddr> {
        text.trim_start_matches('"')
            .split(['"', ','])
            .next()?
            .parse()
            .ok()
    };
    for token in rest.split_whitespace() {
        let token = token.trim_matches(|c| c == '"' || c == ',');
        if let Some(addr) = token.strip_prefix("public=") {
            public = address(addr);
        } else if let Some(addr) = token.strip_prefix("admin=") {
            admin = address(addr);
        }
    }
    Some((public?, admin?))
}

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("reply body is not JSON ({err}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// For a 200 ack: `(status, seq)`, e.g. `("accepted", 3)`.
    pub fn ack(&self) -> (String, u64) {
        assert_eq!(self.status, 200, "expected an ack, got: {}", self.text());
        let json = self.json();
        let status = json["status"].as_str().expect("ack has status").to_string();
        let seq = json["seq"].as_u64().expect("ack has a numeric seq");
        (status, seq)
    }
}

/// Asserts a 401 with the body every verification failure gets.
pub fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "unauthorized"}),
        "{what}"
    );
}

/// Client for one running gateway's two listeners. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub public_url: String,
    pub admin_url: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn unconnected() -> Api {
        let nowhere: SocketAddr = ([127, 0, 0, 1], 9).into();
        Api::new(nowhere, nowhere)
    }

    pub fn new(public_addr: SocketAddr, admin_addr: SocketAddr) -> Api {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build http client");
        Api {
            public_addr,
            admin_addr,
            public_url: format!("http://{public_addr}"),
            admin_url: format!("http://{admin_addr}"),
            client,
        }
    }

    /// POST `/hooks/{provider}`; transport errors are returned, not panicked on.
    pub fn try_post(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .client
            .post(format!("{}/hooks/{provider}", self.public_url))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        read_reply(request.send()?)
    }

    /// POST `/hooks/{provider}`.
    pub fn post(&self, provider: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
        self.try_post(provider, headers, body)
            .unwrap_or_else(|err| panic!("POST /hooks/{provider} failed: {}", error_chain(&err)))
    }

    /// Any method on the public listener.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .client
            .request(method, format!("{}{path}", self.public_url))
            .body(body.to_vec())
            .send()
            .unwrap_or_else(|err| panic!("{path} failed: {}", error_chain(&err)));
        read_reply(response).expect("read reply")
    }

    /// GET on the admin listener with `token` (None: no Authorization header).
    /// POST on the admin listener with the token and a JSON body.
    pub fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.admin_send(reqwest::Method::POST, path, body)
    }

    pub fn admin_put(&self, path: &str, body: &Value) -> Reply {
        self.admin_send(reqwest::Method::PUT, path, body)
    }

    fn admin_send(&self, method: reqwest::Method, path: &str, body: &Value) -> Reply {
        let response = self
            .client
            .request(method.clone(), format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .unwrap_or_else(|err| panic!("admin {method} {path} failed: {}", error_chain(&err)));
        read_reply(response).expect("read reply")
    }

    pub fn admin_get_with(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.admin_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .unwrap_or_else(|err| panic!("admin GET {path} failed: {}", error_chain(&err)));
        read_reply(response).expect("read reply")
    }

    /// GET on the admin listener with the admin token.
    pub fn admin_get(&self, path: &str) -> Reply {
        self.admin_get_with(path, Some(ADMIN_TOKEN))
    }

    /// GET admin JSON; panics unless the answer is 200.
    pub fn admin_json(&self, path: &str) -> Value {
        let reply = self.admin_get(path);
        assert_eq!(reply.status, 200, "admin GET {path}: {}", reply.text());
        reply.json()
    }

    /// One event by seq, or None on 404.
    pub fn event(&self, seq: u64) -> Option<Value> {
        let reply = self.admin_get(&format!("/v1/events/{seq}"));
        match reply.status {
            200 => Some(reply.json()),
            404 => None,
            other => panic!("GET /v1/events/{seq}: {other} {}", reply.text()),
        }
    }

    /// Every stored event's id, by seq.
    pub fn ids_by_seq(&self) -> std::collections::BTreeMap<u64, String> {
        self.all_events(None)
            .iter()
            .map(|e| {
                let seq = e["seq"].as_u64().expect("a seq");
                let id = e["event_id"].as_str().expect("an event id");
                (seq, id.to_string())
            })
            .collect()
    }

    /// Every stored event (optionally of one provider), paging through `/v1/events`.
    pub fn all_events(&self, provider: Option<&str>) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let mut path = String::from("/v1/events?limit=1000");
            if let Some(provider) = provider {
                path.push_str(&format!("&provider={provider}"));
            }
            if let Some(after) = after {
                path.push_str(&format!("&after={after}"));
            }
            let page = self.admin_json(&path);
            let batch = page["events"].as_array().expect("events array");
            events.extend(batch.iter().cloned());
            match page["next_after"].as_u64() {
                Some(next) if !batch.is_empty() => {
                    if let Some(previous) = after {
                        assert!(next > previous, "next_after must advance");
                    }
                    after = Some(next);
                }
                _ => break,
            }
        }
        events
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let reply = self.admin_get("/metrics");
        assert_eq!(reply.status, 200, "GET /metrics: {}", reply.text());
        reply.text()
    }

    /// The sum of every series named exactly `name` whose labels include `labels`
    /// (None when no such series is exported).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        parse_metric(&self.metrics_text(), name, labels)
    }
}

/// An error with its sources, for transport errors whose `Display` hides the cause.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

pub fn read_reply(response: reqwest::blocking::Response) -> Result<Reply, reqwest::Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes()?.to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// See [`Api::metric`].
pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..name_end] != name {
            continue;
        }
        let (label_text, value_text) = match line[name_end..].strip_prefix('{') {
            Some(rest) => {
                let close = rest.find('}')?;
                (&rest[..close], &rest[close + 1..])
            }
            None => ("", &line[name_end..]),
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        if !matches {
            continue;
        }
        let value: f64 = value_text
            .split_whitespace()
            .next()?
            .parse()
            .unwrap_or_else(|_| panic!("unparsable metric line: {line}"));
        total = Some(total.unwrap_or(0.0) + value);
    }
    total
}

/// A signed request read from `fixtures/`: `{"secret","headers","body","provider","note"}`.
pub struct Fixture {
    pub secret: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Provider settings (`verify`, and the hmac keys) as a JSON object.
    pub provider: serde_json::Map<String, Value>,
}

impl Fixture {
    pub fn load(relative: &str) -> Fixture {
        let path = fixture_path(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        let json: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let headers = json["headers"]
            .as_object()
            .expect("fixture headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_string()))
            .collect();
        Fixture {
            secret: json["secret"].as_str().expect("fixture secret").to_string(),
            headers,
            body: json["body"].as_str().expect("fixture body").to_string(),
            provider: json["provider"]
                .as_object()
                .expect("fixture provider")
                .clone(),
        }
    }

    /// Every fixture file, as paths relative to `fixtures/`.
    pub fn all() -> Vec<String> {
        let mut found = Vec::new();
        let root = fixture_path("");
        for dir in std::fs::read_dir(&root).expect("read fixtures/") {
            let dir = dir.expect("dir entry").path();
            // fixtures/oauth holds keys and a JWK set, not signed requests.
            if !dir.is_dir() || dir.ends_with("oauth") {
                continue;
            }
            for file in std::fs::read_dir(&dir).expect("read fixture dir") {
                let file = file.expect("dir entry").path();
                if file.extension().is_some_and(|e| e == "json") {
                    let relative = file.strip_prefix(&root).expect("under fixtures/");
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    /// The value of one of the fixture's headers (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A `[[provider]]` table for this fixture, with a tolerance wide enough for its timestamp.
    /// Settings may be strings or arrays of strings; a relative `file:` reference is taken under
    /// `fixtures/`; an empty `secret` (a scheme keyed otherwise, e.g. `public_keys`) gives no
    /// `secrets` key.
    pub fn provider_toml(&self, name: &str) -> String {
        let verify = self.provider["verify"].as_str().expect("verify");
        let mut extra = String::new();
        for (key, value) in &self.provider {
            if key == "verify" {
                continue;
            }
            let value = match value {
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|item| fixture_setting(item.as_str().expect("a string in the list")))
                        .collect();
                    format!("[{}]", items.join(", "))
                }
                value => fixture_setting(value.as_str().expect("provider setting is a string")),
            };
            extra.push_str(&format!("{key} = {value}\n"));
        }
        if matches!(verify, "standard-webhooks" | "stripe" | "slack") {
            extra.push_str("tolerance_s = 4000000000\n");
        }
        let secrets: &[&str] = if self.secret.is_empty() {
            &[]
        } else {
            &[&self.secret]
        };
        provider(name, verify, secrets, &extra)
    }
}

/// One fixture setting as a TOML string, a relative `file:` path made absolute under `fixtures/`.
fn fixture_setting(value: &str) -> String {
    match value.strip_prefix("file:") {
        Some(path) if !Path::new(path).is_absolute() => {
            toml_str(&format!("file:{}", fixture_path(path).display()))
        }
        _ => toml_str(value),
    }
}

/// Decodes an event's `body_base64`.
pub fn event_body(event: &Value) -> Vec<u8> {
    let encoded = event["body_base64"]
        .as_str()
        .expect("event has body_base64");
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("body_base64 is base64")
}

/// Deterministic pseudo-random bytes (xorshift), for bodies that must survive byte for byte.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Sets its flags when dropped. Threads of a `std::thread::scope` that run until a flag is set
/// then stop when the scope's own thread panics too (a failed `wait_until`), instead of the
/// scope waiting for them for ever and the test hanging in place of failing.
pub struct SetOnDrop<'a>(pub Vec<&'a std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        for flag in &self.0 {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Polls `check` every 10 ms until it returns true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
