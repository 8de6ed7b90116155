//! HTTP/1.1 over a plain `TcpStream`, for what an HTTP client library hides: chunked bodies
//! without `Content-Length`, senders that stall, and whether the server closes the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One client connection.
pub struct RawConn {
    stream: TcpStream,
}

/// What came back on a [`RawConn`].
#[derive(Debug)]
pub struct RawResponse {
    /// The status code (0 when no status line arrived).
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server closed the connection (EOF or reset) before the deadline.
    pub closed: bool,
    /// Time from the call to `read_response` until the response head had arrived.
    pub head_after: Option<Duration>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect to gateway");
        stream.set_nodelay(true).expect("nodelay");
        RawConn { stream }
    }

    /// Connects from a chosen loopback address (any of 127.0.0.0/8), as a different client would.
    pub fn connect_from(addr: SocketAddr, source: IpAddr) -> RawConn {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect(&addr.into()).expect("connect to gateway");
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true).expect("nodelay");
        RawConn { stream }
    }

    /// Sends a whole `POST path` with `headers` and `body` and reads the answer.
    pub fn exchange(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> RawResponse {
        let addr = self.stream.peer_addr().expect("peer address");
        let mut headers = headers.to_vec();
        headers.push(("Content-Length".into(), body.len().to_string()));
        let mut request = post_head(path, addr, &headers);
        request.extend_from_slice(body);
        assert!(self.send(&request), "send the request");
        self.read_response(Duration::from_secs(10), false)
    }

    /// Whether the server closed this connection within `deadline` without answering anything.
    pub fn closed_silently(&mut self, deadline: Duration) -> bool {
        let response = self.read_response(deadline, true);
        response.closed && response.status == 0
    }

    /// Connects and sends the head of `POST path` with `headers` (the body is up to the test).
    pub fn post(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> RawConn {
        let mut conn = RawConn::connect(addr);
        assert!(
            conn.send(&post_head(path, addr, headers)),
            "send request head"
        );
        conn
    }

    /// Writes `bytes`; false when the server already stopped reading (reset, broken pipe).
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads one response. With `wait_for_close`, keeps reading after the body until the server
    /// closes the connection or `deadline` passes; without it, returns once the body is complete.
    pub fn read_response(&mut self, deadline: Duration, wait_for_close: bool) -> RawResponse {
        let start = Instant::now();
        self.stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let mut buf = Vec::new();
        let mut closed = false;
        let mut head_after = None;
        let mut chunk = [0u8; 16 * 1024];
        while start.elapsed() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            if let Some((head_len, content_length)) = parse_head_len(&buf) {
                head_after.get_or_insert_with(|| start.elapsed());
                let complete = buf.len() >= head_len + content_length.unwrap_or(0);
                if complete && !wait_for_close {
                    break;
                }
            }
        }
        parse_response(&buf, closed, head_after)
    }
}

/// Length of the response head (through the blank line) and its Content-Length, once complete.
fn parse_head_len(buf: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let content_length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse().ok()
        } else {
            None
        }
    });
    Some((end, content_length))
}

fn parse_response(buf: &[u8], closed: bool, head_after: Option<Duration>) -> RawResponse {
    let Some((head_len, content_length)) = parse_head_len(buf) else {
        return RawResponse {
            status: 0,
            headers: Vec::new(),
            body: buf.to_vec(),
            closed,
            head_after,
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body_end = content_length.map_or(buf.len(), |n| (head_len + n).min(buf.len()));
    RawResponse {
        status,
        headers,
        body: buf[head_len..body_end].to_vec(),
        closed,
        head_after,
    }
}

/// A request head for `POST path` with the given extra header lines.
pub fn post_head(path: &str, host: SocketAddr, extra_headers: &[(String, String)]) -> Vec<u8> {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A server on a loopback port that answers every request with `status` and a chunked body of
/// `x`s as long as `body_bytes` (in 64 KiB chunks), as a broken or hostile server may: long
/// enough to fill memory, were the client to read it whole. Returns its URL, and how many body
/// bytes it could write before each client went (the socket's buffers hold a few MiB of them).
pub fn long_body_server(
    status: u16,
    body_bytes: u64,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    const CHUNK: usize = 64 * 1024;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = format!("HTTP/1.1 {status} Oops\r\ntransfer-encoding: chunked\r\n\r\n");
                let chunk = format!("{CHUNK:x}\r\n{}\r\n", "x".repeat(CHUNK));
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..body_bytes / CHUNK as u64 {
                    if stream.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                    counter.fetch_add(CHUNK as u64, Ordering::Relaxed);
                }
                let _ = stream.write_all(b"0\r\n\r\n");
            });
        }
    });
    (url, written)
}
