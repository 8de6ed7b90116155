//! What `send-test` posts: the URL and the headers of a request signed as the provider's vendor
//! would sign it.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};
use url::Url;

use super::sample::{self, JSON};
use super::Failure;
use crate::error_chain::error_chain;
use crate::verify::{oauth, SignInput, Verifier};

/// A request ready to post.
pub struct Prepared {
    pub url: Url,
    /// Headers in order; none of them is printed (a bearer token is a credential).
    pub headers: Vec<(String, String)>,
}

/// What the request is built from.
pub struct Input<'a> {
    pub verifier: &'a Verifier,
    pub body: &'a [u8],
    /// Where the request is posted.
    pub url: Url,
    pub now: SystemTime,
    pub event_id: &'a str,
    /// `--private-key`: the PEM text of Dialog Insight's private key.
    pub private_key: Option<&'a str>,
    /// `--token`: a bearer token for oauth providers.
    pub token: Option<&'a str>,
}

/// Signs (or authenticates) the request as the vendor would.
pub fn prepare(input: Input<'_>, client: &reqwest::blocking::Client) -> Result<Prepared, Failure> {
    let content_type = sample::content_type(input.body);
    let mut url = input.url.clone();
    let signed = match input.verifier {
        Verifier::DialogInsight(scheme) => {
            let pem = input.private_key.ok_or_else(|| {
                Failure::Usage(
                    "dialog-insight is signed with Dialog Insight's RSA private key: pass \
                     --private-key PEM"
                        .into(),
                )
            })?;
            scheme.sign(pem, input.body).map_err(Failure::Usage)?
        }
        Verifier::OAuth(scheme) => {
            let token =
                match (input.token, scheme.builtin()) {
                    (Some(token), _) => token.to_string(),
                    (None, Some(builtin)) => fetch_token(client, &input.url, builtin)?,
                    (None, None) => return Err(Failure::Usage(
                        "this oauth provider validates tokens issued elsewhere: pass --token TOKEN"
                            .into(),
                    )),
                };
            vec![("Authorization".to_string(), format!("Bearer {token}"))]
        }
        Verifier::Twilio(scheme) => {
            let mut signed_url = Url::parse(scheme.public_url())
                .map_err(|err| Failure::Usage(format!("public_url: {err}")))?;
            if signed_url.query().is_none() {
                signed_url.set_query(url.query());
            }
            if content_type == JSON {
                // Twilio signs JSON bodies through a hash of the body in the URL it calls.
                let hash = hex::encode(Sha256::digest(input.body));
                signed_url
                    .query_pairs_mut()
                    .append_pair("bodySHA256", &hash);
                url.query_pairs_mut().append_pair("bodySHA256", &hash);
            }
            sign(&input, &signed_url)?
        }
        _ => sign(&input, &input.url)?,
    };
    let mut headers = Vec::new();
    if !signed
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".to_string(), content_type.to_string()));
    }
    headers.extend(signed);
    Ok(Prepared { url, headers })
}

fn sign(input: &Input<'_>, url: &Url) -> Result<Vec<(String, String)>, Failure> {
    input
        .verifier
        .sign(&SignInput {
            body: input.body,
            url,
            now: input.now,
            event_id: input.event_id,
        })
        .map_err(Failure::Usage)
}

/// Fetches a token from the gateway's own token endpoint (`<origin of url>/oauth/token`) with the
/// provider's first client, by the client-credentials grant and HTTP Basic, as the sender would.
fn fetch_token(
    client: &reqwest::blocking::Client,
    url: &Url,
    builtin: &oauth::Builtin,
) -> Result<String, Failure> {
    let token_url = token_url(url);
    let (id, secret) = builtin.sender_credentials();
    let basic = format!("{}:{}", form_encode(id.as_bytes()), form_encode(secret));
    let response = client
        .post(token_url.clone())
        .header("Authorization", format!("Basic {}", BASE64.encode(basic)))
        .header("Content-Type", sample::FORM)
        .body("grant_type=client_credentials")
        .send()
        .map_err(|err| Failure::Send(format!("POST {token_url}: {}", error_chain(&err))))?;
    let status = response.status();
    let text = response.text().unwrap_or_default();
    if !status.is_success() {
        // The endpoint's error body is an RFC 6749 error code, never a credential.
        return Err(Failure::Send(format!(
            "POST {token_url} (client {id:?}) answered {status}: {}",
            text.trim()
        )));
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| json["access_token"].as_str().map(str::to_string))
        .ok_or_else(|| Failure::Send(format!("POST {token_url}: no access_token in the answer")))
}

/// The token endpoint on the same origin as `url`.
fn token_url(url: &Url) -> Url {
    let mut token_url = url.clone();
    token_url.set_path("/oauth/token");
    token_url.set_query(None);
    // Credentials in the URL would compete with the client's own (ignored errors: `url` is http).
    let _ = token_url.set_username("");
    let _ = token_url.set_password(None);
    token_url.set_fragment(None);
    token_url
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before HTTP Basic.
fn form_encode(bytes: &[u8]) -> String {
    form_urlencoded::byte_serialize(bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_is_on_the_same_origin_without_credentials() {
        let url = Url::parse("https://u@gw.example.com:8443/hooks/p?x=1#f").unwrap();
        assert_eq!(
            token_url(&url).as_str(),
            "https://gw.example.com:8443/oauth/token"
        );
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode(b"a b:c/d"), "a+b%3Ac%2Fd");
    }
}
