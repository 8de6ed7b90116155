//! `POST /oauth/token` on the public listener: the client-credentials grant (RFC 6749 §4.4) for
//! providers with `[provider.oauth] mode = "builtin"`. Clients authenticate with HTTP Basic
//! (RFC 6749 §2.3.1, form-urlencoded id and secret) or with `client_id` / `client_secret` form
//! fields, not both. Errors follow §5.2.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, AUTHORIZATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::body::read_body;
use super::client::client_address;
use super::limits::RetryAfter;
use super::{ApiError, AppState, Refused};
use crate::verify::oauth::TokenError;

/// Token requests are small; anything larger is not one.
const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

pub async fn token(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let client = client_address(
        request.peer_addr(),
        request.headers(),
        &state.config.server.trusted_proxies,
    );
    let bucket = client.or_else(|| request.peer_addr().map(|peer| peer.ip()));
    if let Some(Err(RetryAfter(seconds))) = bucket.map(|address| state.limits.oauth_token(address))
    {
        let refused = Refused {
            cause: "rate_limited_oauth_token",
            provider: None,
            client,
            verification: false,
        };
        state
            .rejections
            .record(refused, &"over oauth_token_per_address_per_min");
        return actix_web::ResponseError::error_response(&ApiError::RateLimited(seconds));
    }
    let basic_used = request.headers().contains_key(AUTHORIZATION);
    let timeout = state
        .config
        .server
        .body_timeout
        .min(Duration::from_secs(10));
    let mut lease = state.limits.bodies.lease();
    let body = read_body(
        request.headers(),
        payload,
        MAX_TOKEN_REQUEST_BYTES,
        timeout,
        &mut lease,
    );
    let result = match body.await {
        Ok(body) => grant(&request, &body, &state),
        Err(_) => Err(TokenError::InvalidRequest),
    };
    match result {
        Ok(grant) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(grant),
        Err(err) => {
            let refused = Refused {
                cause: "oauth_token_refused",
                provider: None,
                client,
                verification: true,
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
    state: &AppState,
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
    let (id, secret) = match (basic, form_id, form_secret) {
        (Some(credentials), None, None) => credentials,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, None, None) => return Err(TokenError::InvalidClient),
        _ => return Err(TokenError::InvalidRequest),
    };
    let builtin = state
        .config
        .providers
        .iter()
        .find_map(|p| p.verifier.oauth_builtin().filter(|b| b.has_client(&id)))
        .ok_or(TokenError::InvalidClient)?;
    builtin.issue(&id, &secret, scope.as_deref(), SystemTime::now())
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`, if present.
fn basic_credentials(request: &HttpRequest) -> Result<Option<(String, String)>, TokenError> {
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
    let unescape = |part: &str| -> String {
        form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}
