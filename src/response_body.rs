//! The bodies of answers from other servers (downstreams, vendors' sync APIs, an identity
//! provider's key set, token and introspection endpoints), read up to a bound: a server that
//! answers with an endless body costs at most that much memory. `reqwest::Response::{bytes,
//! text, json}` read without one (`clippy.toml` disallows them), and so does the `oauth2`
//! crate's own client over `reqwest`: hence [`OAuthHttp`].

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use oauth2::HttpClientError;

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

/// The most of an OAuth server's answer (a token, an introspection) read; a longer one is an
/// error.
pub const MAX_OAUTH_ANSWER: usize = 1024 * 1024;

/// The `oauth2` crate's HTTP client over `reqwest`, reading each answer up to
/// [`MAX_OAUTH_ANSWER`] bytes (the crate's own reads them whole).
#[derive(Clone)]
pub struct OAuthHttp(pub reqwest::Client);

type OAuthAnswer<'c> = Pin<
    Box<
        dyn Future<Output = Result<oauth2::HttpResponse, HttpClientError<reqwest::Error>>>
            + Send
            + Sync
            + 'c,
    >,
>;

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future = OAuthAnswer<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(Box::new)?;
            // Errors without the URL: a token URL may carry a credential in its query, and
            // these errors reach the log and the sync API's `last_error`.
            let response = self
                .0
                .execute(request)
                .await
                .map_err(|err| Box::new(err.without_url()))?;
            let mut answer = oauth2::http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = read_at_most(response, MAX_OAUTH_ANSWER)
                .await
                .map_err(|err| Box::new(err.without_url()))?;
            if !body.whole {
                return Err(HttpClientError::Other(format!(
                    "the answer is longer than {MAX_OAUTH_ANSWER} bytes"
                )));
            }
            answer
                .body(body.bytes.to_vec())
                .map_err(HttpClientError::Http)
        })
    }
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
    async fn an_oauth_answer_too_long_is_an_error() {
        use oauth2::AsyncHttpClient;
        let call = |url: String| async move {
            let request = oauth2::http::Request::get(url).body(Vec::new()).unwrap();
            OAuthHttp(reqwest::Client::new()).call(request).await
        };
        let answer = call(serve(1000, Some(4))).await.unwrap();
        assert_eq!((answer.status().as_u16(), answer.body().len()), (500, 4000));
        let chunks = MAX_OAUTH_ANSWER / 1000 + 1;
        let refused = call(serve(1000, Some(chunks))).await.unwrap_err();
        assert!(refused.to_string().contains("longer than"), "{refused}");
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = get(&serve(1000, Some(4)), 4000).await;
        assert_eq!((body.bytes.len(), body.whole), (4000, true));
        let body = get(&serve(1000, Some(4)), 3999).await;
        assert_eq!((body.bytes.len(), body.whole), (3999, false));
    }
}
