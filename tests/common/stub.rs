//! A tiny HTTP/1.1 server on a loopback port, for the outside services a test needs (an OAuth
//! introspection endpoint, a JWKS URL). Each request is answered by a handler; every request is
//! recorded. Connections are closed after each answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request had been read.
    pub at: Instant,
}

impl StubRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, content type, body. Status 0 closes the connection without an answer.
pub type StubAnswer = (u16, &'static str, Vec<u8>);

pub struct Stub {
    pub url: String,
    requests: Arc<Mutex<Vec<StubRequest>>>,
}

impl Stub {
    pub fn start(handler: impl Fn(&StubRequest) -> StubAnswer + Send + Sync + 'static) -> Stub {
        Stub::start_with_headers(move |request| {
            let (status, content_type, body) = handler(request);
            (
                status,
                vec![("Content-Type".to_string(), content_type.to_string())],
                body,
            )
        })
    }

    /// As `start`, with a handler that sets any headers.
    pub fn start_with_headers(
        handler: impl Fn(&StubRequest) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
    ) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
        let url = format!("http://{}", listener.local_addr().expect("stub address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (recorded, handler) = (recorded.clone(), handler.clone());
                std::thread::spawn(move || {
                    let Some(request) = read_request(&mut stream) else {
                        return;
                    };
                    let (status, headers, body) = handler(&request);
                    recorded.lock().expect("stub lock").push(request);
                    if status == 0 {
                        return; // status 0: close the connection without answering
                    }
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                });
            }
        });
        Stub { url, requests }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests.lock().expect("stub lock").clone()
    }

    pub fn calls(&self) -> usize {
        self.requests.lock().expect("stub lock").len()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<StubRequest> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(StubRequest {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}
