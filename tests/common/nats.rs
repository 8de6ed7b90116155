//! A real nats-server with JetStream, for the JetStream backend's tests.
//!
//! [`NatsServer::start`] runs `nats-server -js -sd DIR -p PORT -a 127.0.0.1` on a free loopback
//! port with its store in `DIR`, waits until it accepts connections, and stops it when dropped
//! (SIGTERM, so it shuts JetStream down cleanly; SIGKILL if it does not exit in 10 s). Starting
//! another on the same directory afterwards finds the same streams: a restart.
//!
//! [`NatsCluster`] runs a 3-node JetStream cluster on loopback the same way, for cluster mode's
//! tests and bench: each node can be killed (SIGKILL) and restarted on its own ports and store.
//!
//! The binary: `HOOKGATE_NATS_SERVER`, else `nats-server` on PATH (`.ci/install-nats` puts one
//! there).

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::config::{JetStreamConfig, NatsAuth, StoreBackend, StoreConfig};
use hookgate::metrics::Metrics;
use hookgate::store::{Store, StoreError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

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
        NatsServer::start_with(dir, "")
    }

    /// [`NatsServer::start`] with `conf` added to the server's configuration file (an
    /// `authorization` or `tls` block, operator mode).
    pub fn start_with(dir: &Path, conf: &str) -> NatsServer {
        std::fs::create_dir_all(dir).expect("create the nats-server directory");
        let config = dir.join("nats-server.conf");
        std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n{conf}\n"))
            .expect("write nats-server.conf");
        let mut last_failure = String::new();
        // A free port found by binding port 0 may be taken again before the server binds it.
        for _ in 0..5 {
            let port = free_port();
            let log = File::create(dir.join("nats-server.log")).expect("create the server log");
            let mut command = Command::new(binary());
            command
                .arg("-c")
                .arg(&config)
                .arg("-js")
                .arg("-sd")
                .arg(dir.join("jetstream"))
                .args(["-p", &port.to_string(), "-a", "127.0.0.1"]);
            let mut child = spawn(command, log);
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
        self.try_store(lease_time)
            .unwrap_or_else(|err| panic!("open the JetStream store on {}: {err}", self.url()))
    }

    /// [`Self::store`], or why it does not open.
    pub fn try_store(&self, lease_time: Duration) -> Result<Store, StoreError> {
        let config = StoreConfig {
            backend: StoreBackend::JetStream(JetStreamConfig {
                servers: vec![self.url()],
                stream: "HOOKGATE".into(),
                replicas: 1,
                auth: NatsAuth::None,
                tls: None,
                lease_time,
            }),
            ..StoreConfig::default()
        };
        tokio::task::block_in_place(|| Store::open(&self.dir, &config, Arc::new(Metrics::new())))
    }
}

impl NatsServer {
    /// Stops the server (SIGSTOP) for `pause`, then lets it go on (SIGCONT), as a stalled
    /// machine would.
    pub fn stall(&self, pause: Duration) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP nats-server");
        std::thread::sleep(pause);
        kill(pid, Signal::SIGCONT).expect("SIGCONT nats-server");
    }

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

/// Spawns a nats-server command with its output into `log`.
fn spawn(mut command: Command, log: File) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "start {}: {err} (set HOOKGATE_NATS_SERVER or run .ci/install-nats)",
                binary().display()
            )
        })
}

fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` ports free at the moment, all different: each is held until every one is picked (one
/// picked and let go at once may be picked again: a cluster's node once got the same port for
/// its routes and its monitor, and exited).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
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

/// When the cluster's servers fsync what they store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncInterval {
    /// nats-server's default: every 2 minutes.
    Default,
    /// `sync_interval: always`: before every ack.
    Always,
}

/// A node's ports: clients, routes between the nodes, and the monitoring endpoint.
#[derive(Clone, Copy)]
struct NodePorts {
    client: u16,
    route: u16,
    monitor: u16,
}

/// A 3-node JetStream cluster on loopback; every node still running is stopped on drop.
pub struct NatsCluster {
    dir: PathBuf,
    ports: Vec<NodePorts>,
    nodes: Vec<Option<Child>>,
}

/// The nodes of a [`NatsCluster`].
pub const CLUSTER_SIZE: usize = 3;

impl NatsCluster {
    /// Starts three nodes with stores under `dir/n0` .. `dir/n2` and waits until JetStream has
    /// a meta leader. Panics when it does not within 30 s.
    pub fn start(dir: &Path) -> NatsCluster {
        NatsCluster::start_with(dir, SyncInterval::Default)
    }

    /// As [`NatsCluster::start`]. A new cluster one of whose nodes does not start, or that elects
    /// no meta leader (seen once, cause not found; the ports are picked free, then bound by the
    /// servers a moment later, and another process may take one meanwhile), is stopped,
    /// reported on stderr with every node's log, and started once more under `dir/retry` on
    /// other ports; a second failure panics. No test is about nats-server
    /// forming a cluster; a restart of a formed one is never retried. Each cluster has a name of
    /// its own, so two that crossed would refuse each other's routes and say so in their logs.
    pub fn start_with(dir: &Path, sync: SyncInterval) -> NatsCluster {
        match NatsCluster::try_start(dir, sync) {
            Ok(cluster) => cluster,
            Err(failure) => {
                eprintln!("a new nats cluster failed to form; starting another: {failure}");
                NatsCluster::try_start(&dir.join("retry"), sync).unwrap_or_else(|f| panic!("{f}"))
            }
        }
    }

    fn try_start(dir: &Path, sync: SyncInterval) -> Result<NatsCluster, String> {
        std::fs::create_dir_all(dir).expect("create the cluster directory");
        let ports: Vec<NodePorts> = free_ports(3 * CLUSTER_SIZE)
            .chunks(3)
            .map(|three| NodePorts {
                client: three[0],
                route: three[1],
                monitor: three[2],
            })
            .collect();
        for (node, _) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .map(|other| format!("\"nats-route://127.0.0.1:{}\"", other.route))
                .collect();
            let mine = ports[node];
            let sync_line = match sync {
                SyncInterval::Default => "",
                SyncInterval::Always => "sync_interval: always\n",
            };
            let store = dir.join(format!("n{node}"));
            let config = format!(
                "server_name: n{node}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 max_payload: {MAX_PAYLOAD}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  {sync_line}}}\n\
                 cluster {{\n  name: hookgate-test-{}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                mine.client,
                mine.monitor,
                store.display(),
                ports[0].route,
                mine.route,
                routes.join(", ")
            );
            std::fs::write(dir.join(format!("n{node}.conf")), config)
                .expect("write a node's config");
        }
        let mut cluster = NatsCluster {
            dir: dir.to_path_buf(),
            nodes: (0..CLUSTER_SIZE).map(|_| None).collect(),
            ports,
        };
        for node in 0..CLUSTER_SIZE {
            cluster.spawn(node)?;
        }
        cluster.wait_for_meta_leader()?;
        Ok(cluster)
    }

    /// The client URLs of all nodes, as a gateway's `servers` lists them.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|ports| format!("nats://127.0.0.1:{}", ports.client))
            .collect()
    }

    /// The directory the nodes keep their stores, configs and logs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills a node with SIGKILL (a crash) and waits for it to be gone.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every node with SIGKILL, all at once.
    pub fn kill_all(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
        }
        for node in 0..CLUSTER_SIZE {
            self.kill(node);
        }
    }

    /// Starts a killed node again on its ports and store.
    pub fn restart(&mut self, node: usize) {
        assert!(self.nodes[node].is_none(), "node {node} is running");
        self.spawn(node).unwrap_or_else(|f| panic!("{f}"));
    }

    /// Starts every killed node again and waits until JetStream has a meta leader.
    pub fn restart_all(&mut self) {
        for node in 0..CLUSTER_SIZE {
            if self.nodes[node].is_none() {
                self.spawn(node).unwrap_or_else(|f| panic!("{f}"));
            }
        }
        self.wait_for_meta_leader()
            .unwrap_or_else(|f| panic!("{f}"));
    }

    /// The node leading `stream`, if some running node knows one.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        (0..CLUSTER_SIZE)
            .filter(|&node| self.nodes[node].is_some())
            .find_map(|node| {
                let leader = self.stream_state(node, stream)?["cluster"]["leader"]
                    .as_str()?
                    .to_string();
                // Empty while the stream has no leader.
                leader.strip_prefix('n')?.parse().ok()
            })
    }

    /// What node `node` holds of `stream`: its `state` in the monitoring endpoint's `/jsz`
    /// (`messages`, `bytes`, `first_seq`, `last_seq`, ...), with `cluster` beside it.
    pub fn stream_on(&self, node: usize, stream: &str) -> Option<Value> {
        let mut found = self.stream_state(node, stream)?;
        let mut state = found["state"].take();
        state["cluster"] = found["cluster"].take();
        Some(state)
    }

    /// Waits until every node holds the same messages of `stream` (count, bytes, first and
    /// last seq) and returns that state. Panics after `timeout`.
    pub fn wait_caught_up(&self, stream: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = (0..CLUSTER_SIZE)
                .map(|node| self.stream_on(node, stream))
                .collect();
            let key = |state: &Option<Value>| {
                state.as_ref().map(|state| {
                    ["messages", "bytes", "first_seq", "last_seq"]
                        .map(|field| state[field].as_u64().unwrap_or(u64::MAX))
                })
            };
            if let Some(first) = key(&last[0]) {
                if last.iter().all(|state| key(state) == Some(first)) {
                    return last[0].clone().unwrap_or_default();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the nodes did not catch up on {stream} within {timeout:?}: {last:?}");
    }

    /// The process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().flatten().map(Child::id).collect()
    }

    /// The log of a node.
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("n{node}.log"))).unwrap_or_default()
    }

    /// Starts node `node`; says why if it exits or does not listen within 20 s.
    fn spawn(&mut self, node: usize) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{node}.log")))
            .expect("open a node's log");
        let mut command = Command::new(binary());
        command
            .arg("-c")
            .arg(self.dir.join(format!("n{node}.conf")));
        let mut child = spawn(command, log);
        if let Err(failure) = wait_until_listening(&mut child, self.ports[node].client) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "node n{node} did not start: {failure}\n{}",
                self.log(node)
            ));
        }
        self.nodes[node] = Some(child);
        Ok(())
    }

    /// Waits up to 30 s for JetStream's meta leader; else says so with every node's log.
    fn wait_for_meta_leader(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let led = (0..CLUSTER_SIZE).any(|node| {
                self.monitor(node, "/jsz").is_some_and(|jsz| {
                    jsz["meta_cluster"]["leader"]
                        .as_str()
                        .is_some_and(|l| !l.is_empty())
                })
            });
            if led {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = (0..CLUSTER_SIZE)
            .map(|node| format!("--- n{node}'s log:\n{}", self.log(node)))
            .collect();
        Err(format!(
            "the cluster elected no meta leader within 30 s\n{}",
            logs.join("\n")
        ))
    }

    /// The stream's entry in node `node`'s `/jsz?streams=true`, if that node is up and holds it.
    fn stream_state(&self, node: usize, stream: &str) -> Option<Value> {
        self.nodes[node].as_ref()?;
        let jsz = self.monitor(node, "/jsz?streams=true")?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|account| {
                account["stream_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|detail| detail["name"] == stream)
    }

    /// A GET of the node's monitoring endpoint, as JSON; None when it does not answer.
    fn monitor(&self, node: usize, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.ports[node].monitor);
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        client.get(url).send().ok()?.json().ok()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in self.nodes.iter_mut().flatten() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
