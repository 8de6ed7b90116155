//! `POST /oauth/token` on the public listener: the client-credentials grant (RFC 6749 §4.4) for
//! providers with `[provider.oauth] mode = "builtin"`. Clients authenticate with HTTP Basic
//! (RFC 6749 §2.3.1 form-urlencodes the id and secret first, but many client libraries do not, so
//! both the decoded and the raw form are tried) or with `client_id` / `client_secret` form
//! fields, not both. Errors follow §5.2.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, AUTHORIZATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::body::{drain, read_body};
use super::client::Client;
use super::limits::RetryAfter;
use super::rejections::Level;
use super::{ApiError, AppState, Live, Refused};
use crate::verify::oauth::TokenError;

/// Token requests are small; anything larger is not one.
const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

pub async fn token(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let live = state.live();
    let Client {
        address: client,
        bucket,
    } = Client::of(&request, &live.config.server);
    // The limit of every public route, then this route's own.
    let limited = bucket.and_then(|address| {
        let over_rate = live.limits.address(address).err();
        over_rate
            .map(|after| (after, "rate_limited_address", "over per_address_rps"))
            .or_else(|| {
                let over_route = live.limits.oauth_token(address).err();
                over_route.map(|after| {
                    let why = "over oauth_token_per_address_per_min";
                    (after, "rate_limited_oauth_token", why)
                })
            })
    });
    if let Some((RetryAfter(seconds), cause, why)) = limited {
        let refused = Refused {
            cause,
            provider: None,
            client,
            level: Level::Info,
            request_id: None,
        };
        state.rejections.record(refused, &why);
        let drained = drain(request.headers(), payload, &mut state.bodies.lease()).await;
        let error = ApiError::RateLimited {
            retry_after: seconds,
            drained,
        };
        return actix_web::ResponseError::error_response(&error);
    }
    let basic_used = request.headers().contains_key(AUTHORIZATION);
    let timeout = live.config.server.body_timeout.min(Duration::from_secs(10));
    let mut lease = state.bodies.lease();
    let body = read_body(
        request.headers(),
        payload,
        MAX_TOKEN_REQUEST_BYTES,
        timeout,
        &mut lease,
    );
    let body = match body.await {
        Ok(body) => body,
        // As on `/hooks`: 503 + `Retry-After` while the body budget is spent (it was 400
        // `invalid_request`, final for a client), 413 or 408 for a body too large or too slow,
        // the connection closed (it was kept, the rest of the body read and thrown away).
        Err(error) => {
            let refused = Refused {
                cause: super::public::body_cause(error),
                provider: None,
                client,
                level: Level::Info,
                request_id: None,
            };
            state.rejections.record(refused, &error);
            return actix_web::ResponseError::error_response(&error);
        }
    };
    match grant(&request, &body, &live) {
        Ok(grant) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(grant),
        Err(err) => {
            let refused = Refused {
                cause: "oauth_token_refused",
                provider: None,
                client,
                level: Level::Warn,
                request_id: None,
            };
            state.rejections.record(refused, &err);
            let status = match err {
                TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
                TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            let mut response = HttpResponse::build(status);
            response.insert_header((header::CACHE_CONTROL, "no-store"));
            if err == TokenError::InvalidClient && basic_used {
                response.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="hookgate""#));
            }
            response.json(serde_json::json!({ "error": err.to_string() }))
        }
    }
}

fn grant(
    request: &HttpRequest,
    body: &[u8],
    live: &Live,
) -> Result<crate::verify::oauth::TokenGrant, TokenError> {
    let mut grant_type = None;
    let mut scope = None;
    let mut form_id = None;
    let mut form_secret = None;
    for (key, value) in form_urlencoded::parse(body) {
        let slot = match key.as_ref() {
            "grant_type" => &mut grant_type,
            "scope" => &mut scope,
            "client_id" => &mut form_id,
            "client_secret" => &mut form_secret,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(TokenError::InvalidRequest); // a parameter given twice
        }
    }
    match grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
        None => return Err(TokenError::InvalidRequest),
    }
    let basic = basic_credentials(request)?;
    let Credentials { ids, secrets } = match (basic, form_id, form_secret) {
        (Some(credentials), None, None) => credentials,
        (None, Some(id), Some(secret)) => Credentials {
            ids: vec![id],
            secrets: vec![secret],
        },
        (None, None, None) => return Err(TokenError::InvalidClient),
        _ => return Err(TokenError::InvalidRequest),
    };
    let (builtin, id) = ids
        .iter()
        .find_map(|id| {
            let mut builtins = live.config.providers.iter();
            builtins
                .find_map(|p| p.verifier.oauth_builtin().filter(|b| b.has_client(id)))
                .map(|builtin| (builtin, id))
        })
        .ok_or(TokenError::InvalidClient)?;
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    builtin.issue(id, &secrets, scope.as_deref(), SystemTime::now())
}

/// A client's id and secret, each in the forms it may be meant in.
struct Credentials {
    ids: Vec<String>,
    secrets: Vec<String>,
}

/// `Authorization: Basic base64(id ":" secret)`, if present: id and secret each form-urldecoded
/// first (RFC 6749 §2.3.1), then raw when that differs.
fn basic_credentials(request: &HttpRequest) -> Result<Option<Credentials>, TokenError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| TokenError::InvalidClient)?;
    let (scheme, encoded) = value.split_once(' ').ok_or(TokenError::InvalidClient)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(TokenError::InvalidClient);
    }
    let decoded = BASE64
        .decode(encoded.trim())
        .map_err(|_| TokenError::InvalidClient)?;
    let text = String::from_utf8(decoded).map_err(|_| TokenError::InvalidClient)?;
    let (id, secret) = text.split_once(':').ok_or(TokenError::InvalidClient)?;
    Ok(Some(Credentials {
        ids: forms(id),
        secrets: forms(secret),
    }))
}

/// `part` form-urldecoded, and `part` as it is when that differs.
fn forms(part: &str) -> Vec<String> {
    // One `x=<part>` pair, with `&` escaped so that it cannot end the value early.
    let pair = format!("x={}", part.replace('&', "%26"));
    let decoded = form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if decoded == part {
        vec![decoded]
    } else {
        vec![decoded, part.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::forms;

    #[test]
    fn basic_parts_are_tried_decoded_then_raw() {
        assert_eq!(forms("plain-secret"), vec!["plain-secret"]);
        assert_eq!(forms("a+b/c="), vec!["a b/c=", "a+b/c="]);
        assert_eq!(forms("a%2Bb%2Fc%3D"), vec!["a+b/c=", "a%2Bb%2Fc%3D"]);
        assert_eq!(forms("100%&x=y"), vec!["100%&x=y"]);
        assert_eq!(forms("a%26b"), vec!["a&b", "a%26b"]);
    }
}
