//! The bodies of answers from other servers (downstreams, vendors' sync APIs, an identity
//! provider's key set), read up to a bound: a server that answers with an endless body costs at
//! most that much memory. `reqwest::Response::{bytes, text, json}` read without one, and
//! `clippy.toml` disallows them.

use bytes::{Bytes, BytesMut};

/// The start of a body.
pub struct Body {
    /// At most the limit's bytes.
    pub bytes: Bytes,
    /// Whether that is all of it; if not, the rest was not read.
    pub whole: bool,
}

/// Reads `response`'s body up to `limit` bytes.
pub async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Body, reqwest::Error> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Body {
                bytes: bytes.freeze(),
                whole: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes: bytes.freeze(),
        whole: true,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server that answers one request with a 500 whose body is `chunks` chunks of `chunk`
    /// bytes (endless when `None`: until the client goes).
    fn serve(chunk: usize, chunks: Option<usize>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let head = "HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes()).unwrap();
            let data = format!("{chunk:x}\r\n{}\r\n", "x".repeat(chunk));
            for _ in 0..chunks.unwrap_or(usize::MAX) {
                if stream.write_all(data.as_bytes()).is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        });
        url
    }

    async fn get(url: &str, limit: usize) -> Body {
        let response = reqwest::get(url).await.unwrap();
        read_at_most(response, limit).await.unwrap()
    }

    #[tokio::test]
    async fn an_endless_body_is_read_up_to_the_limit() {
        let body = get(&serve(1000, None), 4096).await;
        assert_eq!(body.bytes.len(), 4096);
        assert!(!body.whole);
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = get(&serve(1000, Some(4)), 4000).await;
        assert_eq!((body.bytes.len(), body.whole), (4000, true));
        let body = get(&serve(1000, Some(4)), 3999).await;
        assert_eq!((body.bytes.len(), body.whole), (3999, false));
    }
}
