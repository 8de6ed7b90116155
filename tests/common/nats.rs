//! A real nats-server with JetStream, for the JetStream backend's tests.
//!
//! [`NatsServer::start`] runs `nats-server -js -sd DIR -p PORT -a 127.0.0.1` on a free loopback
//! port with its store in `DIR`, waits until it accepts connections, and stops it when dropped
//! (SIGTERM, so it shuts JetStream down cleanly; SIGKILL if it does not exit in 10 s). Starting
//! another on the same directory afterwards finds the same streams: a restart.
//!
//! The binary: `HOOKGATE_NATS_SERVER`, else `nats-server` on PATH (`.ci/install-nats` puts one
//! there).

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::config::{JetStreamConfig, StoreBackend, StoreConfig};
use hookgate::metrics::Metrics;
use hookgate::store::Store;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The largest message the test servers take: the conformance suite stores 1 MiB bodies, over
/// nats-server's default `max_payload` of 1 MiB once headers are added.
const MAX_PAYLOAD: &str = "8MB";

/// A running nats-server; stopped on drop.
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a server whose JetStream store is `dir/jetstream` (created if missing; its log
    /// goes to `dir/nats-server.log`). Panics when none starts within 20 s.
    pub fn start(dir: &Path) -> NatsServer {
        std::fs::create_dir_all(dir).expect("create the nats-server directory");
        let config = dir.join("nats-server.conf");
        std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n"))
            .expect("write nats-server.conf");
        let mut last_failure = String::new();
        // A free port found by binding port 0 may be taken again before the server binds it.
        for _ in 0..5 {
            let port = free_port();
            let log = File::create(dir.join("nats-server.log")).expect("create the server log");
            let mut child = Command::new(binary())
                .arg("-c")
                .arg(&config)
                .arg("-js")
                .arg("-sd")
                .arg(dir.join("jetstream"))
                .args(["-p", &port.to_string(), "-a", "127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "start {}: {err} (set HOOKGATE_NATS_SERVER or run .ci/install-nats)",
                        binary().display()
                    )
                });
            match wait_until_listening(&mut child, port) {
                Ok(()) => {
                    return NatsServer {
                        child,
                        port,
                        dir: dir.to_path_buf(),
                    }
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_failure = failure;
                }
            }
        }
        let log = std::fs::read_to_string(dir.join("nats-server.log")).unwrap_or_default();
        panic!("nats-server did not start: {last_failure}\n{log}");
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The directory the server keeps its store and log in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A JetStream store on this server (stream `HOOKGATE`, one replica), as a gateway opens it.
    /// Call it within a multi-threaded tokio runtime.
    pub fn store(&self, lease_time: Duration) -> Store {
        let config = StoreConfig {
            backend: StoreBackend::JetStream(JetStreamConfig {
                servers: vec![self.url()],
                stream: "HOOKGATE".into(),
                replicas: 1,
                token: None,
                lease_time,
            }),
            ..StoreConfig::default()
        };
        tokio::task::block_in_place(|| {
            Store::open(&self.dir, &config, Arc::new(Metrics::new()))
                .unwrap_or_else(|err| panic!("open the JetStream store on {}: {err}", self.url()))
        })
    }
}

impl NatsServer {
    /// Kills the server with SIGKILL (a crash) and waits for it to be gone.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `HOOKGATE_NATS_SERVER`, else `nats-server` (looked up on PATH).
fn binary() -> PathBuf {
    std::env::var_os("HOOKGATE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Waits until the server accepts TCP connections on `port`, or exits, or 20 s pass.
fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited with {status}"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("it did not listen within 20 s".to_string())
}
