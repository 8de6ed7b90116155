//! OAuth bearer-token providers end to end: the builtin token endpoint and a sender's whole flow
//! (fetch, send, expire, 401 invalid_token, fetch again, send) with HTTP Basic credentials raw or
//! form-encoded, introspection against a real local server (the number of introspection calls,
//! audience and client checks, cached refusals, a bounded positive cache), and JWTs against a
//! JWKS, including `alg` confusion and `none`, a hanging or failing JWKS URL, and key removal.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use base64::Engine;
use common::stub::Stub;
use common::{Gateway, Reply};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const BODY: &[u8] = br#"{"eventType":"order.created","id":"ord-1"}"#;

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".to_string(), format!("Bearer {token}"))]
}

fn builtin_provider(name: &str, client: &str, ttl_s: u64, scope: &str) -> String {
    format!(
        "\n[[provider]]\nname = \"{name}\"\nverify = \"oauth\"\nevent_id = \"json:/id\"\n[provider.oauth]\nmode = \"builtin\"\n\
         token_ttl_s = {ttl_s}\nrequired_scope = \"events:write\"\n\
         clients = [{{ id = \"{client}\", secret = \"{client}-secret-0123456789\", scopes = [\"{scope}\"] }}]\n"
    )
}

/// POST /oauth/token with HTTP Basic (or form fields when `basic` is false).
fn fetch_token(gw: &Gateway, client: &str, secret: &str, basic: bool) -> (u16, Value) {
    let http = reqwest::blocking::Client::new();
    let mut request = http.post(format!("{}/oauth/token", gw.api().public_url));
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if basic {
        request = request.header(
            "Authorization",
            format!("Basic {}", BASE64.encode(format!("{client}:{secret}"))),
        );
    } else {
        form.push(("client_id", client.to_string()));
        form.push(("client_secret", secret.to_string()));
    }
    let response = request.form(&form).send().unwrap();
    let status = response.status().as_u16();
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    (status, response.json().unwrap())
}

fn assert_invalid_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#),
        "{what}"
    );
    assert_eq!(reply.json(), json!({"error": "unauthorized"}), "{what}");
}

#[test]
fn builtin_sender_flow_fetch_send_expire_refetch() {
    let gw = Gateway::start(&builtin_provider("sterling", "sender", 2, "events:write"));
    let (status, token) = fetch_token(&gw, "sender", "sender-secret-0123456789", true);
    assert_eq!(status, 200, "{token}");
    assert_eq!(
        (token["token_type"].as_str(), token["expires_in"].as_u64()),
        (Some("Bearer"), Some(2))
    );
    let access = token["access_token"].as_str().unwrap().to_string();

    assert_eq!(
        gw.post("sterling", &bearer(&access), BODY).ack().0,
        "accepted"
    );

    // No credentials: a bare challenge.
    let reply = gw.post("sterling", &[], BODY);
    assert_eq!(
        (reply.status, reply.header("www-authenticate")),
        (401, Some("Bearer"))
    );

    // The token expires; the sender gets invalid_token, fetches a new one (form auth this time).
    std::thread::sleep(Duration::from_millis(2100));
    assert_invalid_token(
        &gw.post("sterling", &bearer(&access), BODY),
        "expired token",
    );
    let (status, token) = fetch_token(&gw, "sender", "sender-secret-0123456789", false);
    assert_eq!(status, 200);
    let fresh = token["access_token"].as_str().unwrap();
    assert_eq!(
        gw.post("sterling", &bearer(fresh), BODY).ack().0,
        "duplicate"
    );
    assert_eq!(gw.all_events(Some("sterling")).len(), 1);
}

#[test]
fn token_endpoint_errors() {
    let gw = Gateway::start(&builtin_provider("p", "sender", 60, "events:write"));
    let (status, body) = fetch_token(&gw, "sender", "wrong", true);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = fetch_token(&gw, "nobody", "sender-secret-0123456789", false);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/oauth/token", gw.api().public_url);
    let reply = http
        .post(&url)
        .form(&[
            ("grant_type", "password"),
            ("client_id", "sender"),
            ("client_secret", "sender-secret-0123456789"),
        ])
        .send()
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert_eq!(
        reply.json::<Value>().unwrap()["error"],
        "unsupported_grant_type"
    );
    let reply = http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sender"),
            ("client_secret", "sender-secret-0123456789"),
            ("scope", "admin"),
        ])
        .send()
        .unwrap();
    assert_eq!(reply.json::<Value>().unwrap()["error"], "invalid_scope");
    // A token request over its 16 KiB: 413, the connection closed, as on /hooks (it was 400
    // `invalid_request`, and the rest of the body was read and thrown away).
    let reply = http.post(&url).body(vec![b'a'; 64 * 1024]).send().unwrap();
    assert_eq!(reply.status(), 413);
    let cause = [("cause", "payload_too_large")];
    assert_eq!(gw.metric("hookgate_rejections_total", &cause), Some(1.0));
}

#[test]
fn basic_credentials_are_accepted_raw_and_form_encoded() {
    // Like `openssl rand -base64` output, with a `%` besides: read as form-encoded, `+` would be
    // a space and `%41` an `A`.
    let (client, secret) = ("sterling+prod", "k+Zq/9w=%41x+R2d+Tq==");
    let config = format!(
        "\n[[provider]]\nname = \"sterling\"\nverify = \"oauth\"\n[provider.oauth]\nmode = \"builtin\"\n\
         clients = [{{ id = {}, secret = {}, scopes = [\"events:write\"] }}]\n",
        common::toml_str(client),
        common::toml_str(secret)
    );
    let gw = Gateway::start(&config);
    let encoded = |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
    let ways = [
        ("raw in Basic", client.to_string(), secret.to_string(), true),
        (
            "form-encoded in Basic",
            encoded(client),
            encoded(secret),
            true,
        ),
        ("form fields", client.to_string(), secret.to_string(), false),
    ];
    for (what, id, secret, basic) in ways {
        let (status, body) = fetch_token(&gw, &id, &secret, basic);
        assert_eq!(status, 200, "{what}: {body}");
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(
            gw.post("sterling", &bearer(access), BODY).status,
            200,
            "{what}"
        );
    }
    // Look-alikes match in neither form.
    for wrong in [
        "k Zq/9w=%41x R2d Tq==",
        "k Zq/9w=Ax R2d Tq==",
        "k+Zq/9w=Ax+R2d+Tq==",
    ] {
        assert_eq!(fetch_token(&gw, client, wrong, true).0, 401, "{wrong}");
    }
}

#[test]
fn tokens_are_bound_to_their_provider_scoped_and_survive_a_restart() {
    let config = builtin_provider("a", "client-a", 3600, "events:write")
        + &builtin_provider("b", "client-b", 3600, "events:write")
        + &builtin_provider("c", "client-c", 3600, "events:read");
    let mut gw = Gateway::start(&config);
    let token_a = fetch_token(&gw, "client-a", "client-a-secret-0123456789", true).1
        ["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_invalid_token(
        &gw.post("b", &bearer(&token_a), BODY),
        "provider a's token at provider b",
    );
    assert_eq!(gw.post("a", &bearer(&token_a), BODY).ack().0, "accepted");

    let token_c = fetch_token(&gw, "client-c", "client-c-secret-0123456789", true).1
        ["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = gw.post("c", &bearer(&token_c), BODY);
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );

    gw.restart();
    let body = br#"{"id":"ord-2"}"#;
    assert_eq!(
        gw.post("a", &bearer(&token_a), body).ack().0,
        "accepted",
        "token survives a restart"
    );
}

/// An introspection endpoint: `good-token` is active for audience `hookgate` and client
/// `sender` (until `revoked` is set), `no-scope-token` lacks the scope, `other-aud-token` and
/// `other-client-token` are active for someone else; any other token is inactive.
fn introspection_stub(revoked: Arc<AtomicBool>) -> Stub {
    Stub::start(move |request| {
        let form: Vec<(String, String)> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let token = form
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let exp = now() + 600;
        let active = |aud: Value, client: &str, scope: &str| json!({"active": true, "exp": exp, "aud": aud, "client_id": client, "scope": scope});
        let answer = match token {
            "good-token" if !revoked.load(Ordering::SeqCst) => {
                active(json!(["hookgate", "other"]), "sender", "events:write other")
            }
            "no-scope-token" => active(json!("hookgate"), "sender", "other"),
            "other-aud-token" => active(json!("someone-else"), "sender", "events:write"),
            "other-client-token" => active(json!("hookgate"), "intruder", "events:write"),
            _ => json!({"active": false}),
        };
        (200, "application/json", answer.to_string().into_bytes())
    })
}

fn introspection_provider(url: &str, extra: &str) -> String {
    format!(
        "\n[[provider]]\nname = \"p\"\nverify = \"oauth\"\n[provider.oauth]\nmode = \"introspection\"\nrequired_scope = \"events:write\"\n\
         introspection_url = \"{url}/introspect\"\nclient_id = \"hookgate\"\nclient_secret = \"introspection-secret\"\n{extra}"
    )
}

#[test]
fn introspection_is_called_once_per_token() {
    let stub = introspection_stub(Arc::default());
    let gw = Gateway::start(&introspection_provider(&stub.url, ""));
    for i in 0..40 {
        let body = format!(r#"{{"n":{i}}}"#);
        assert_eq!(
            gw.post("p", &bearer("good-token"), body.as_bytes()).ack().0,
            "accepted"
        );
    }
    assert_eq!(
        stub.calls(),
        1,
        "one introspection for 40 webhooks with one token"
    );
    let call = &stub.requests()[0];
    assert_eq!(call.method, "POST");
    let expected = format!("Basic {}", BASE64.encode("hookgate:introspection-secret"));
    assert_eq!(call.header("authorization"), Some(expected.as_str()));

    assert_invalid_token(
        &gw.post("p", &bearer("revoked-token"), BODY),
        "inactive token",
    );
    assert_eq!(gw.post("p", &bearer("no-scope-token"), BODY).status, 403);
    assert_eq!(stub.calls(), 3);
}

#[test]
fn introspection_refuses_tokens_for_another_audience_or_client() {
    let stub = introspection_stub(Arc::default());
    let gw = Gateway::start(&introspection_provider(
        &stub.url,
        "audience = \"hookgate\"\nallowed_client_ids = [\"sender\"]\n",
    ));
    assert_eq!(
        gw.post("p", &bearer("good-token"), BODY).ack().0,
        "accepted",
        "aud as a list holding ours, an allowed client"
    );
    assert_invalid_token(
        &gw.post("p", &bearer("other-aud-token"), BODY),
        "active, but for another audience",
    );
    assert_invalid_token(
        &gw.post("p", &bearer("other-client-token"), BODY),
        "active, but issued to another client",
    );
    assert_eq!(gw.post("p", &bearer("no-scope-token"), BODY).status, 403);
}

#[test]
fn a_junk_token_sent_again_and_again_costs_one_introspection() {
    let stub = introspection_stub(Arc::default());
    let gw = Gateway::start(&introspection_provider(&stub.url, ""));
    for _ in 0..20 {
        assert_invalid_token(&gw.post("p", &bearer("junk-token"), BODY), "junk token");
    }
    assert_eq!(stub.calls(), 1, "the refusal is cached");
}

/// Random tokens cost one introspection each until a provider's bound (100 a second, 200 at
/// once in a burst): past it they are answered 503 without a call, and a cached token still
/// works (each made a call, and the authorization server took all of them).
#[test]
fn random_tokens_cost_a_bounded_number_of_introspections() {
    let stub = introspection_stub(Arc::default());
    let gw = Gateway::start(&format!(
        "[limits]\nper_address_rps = 0\n{}",
        introspection_provider(&stub.url, "")
    ));
    assert_eq!(gw.post("p", &bearer("good-token"), BODY).status, 200);
    let started = std::time::Instant::now();
    let mut unavailable = 0;
    for n in 0..1000 {
        let status = gw.post("p", &bearer(&format!("junk-{n}")), BODY).status;
        assert!(matches!(status, 401 | 503), "{status}");
        unavailable += usize::from(status == 503);
    }
    let bound = 200.0 + 100.0 * started.elapsed().as_secs_f64() + 10.0;
    assert!(
        (stub.calls() as f64) <= bound,
        "{} introspections for 1,000 random tokens in {:?}",
        stub.calls(),
        started.elapsed()
    );
    assert!(unavailable > 0);
    assert_eq!(
        gw.post("p", &bearer("good-token"), BODY).status,
        200,
        "cached"
    );
}

/// Random tokens sent without pause do not lock a genuine sender out once its token's answer
/// has passed `cache_ttl_s`: tokens found active before have calls of their own (the random
/// ones took every call, and the genuine sender was answered 503 for as long as they came).
#[test]
fn a_flood_of_random_tokens_does_not_lock_out_a_token_found_active_before() {
    let stub = introspection_stub(Arc::default());
    let gw = Gateway::start(&format!(
        "[limits]\nper_address_rps = 0\n{}",
        introspection_provider(&stub.url, "cache_ttl_s = 1\n")
    ));
    assert_eq!(gw.post("p", &bearer("good-token"), BODY).status, 200);
    let flooding = Arc::new(AtomicBool::new(true));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let floods: Vec<_> = (0..2)
        .map(|thread| {
            let (api, flooding, unavailable) = (gw.api(), flooding.clone(), unavailable.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while flooding.load(Ordering::SeqCst) {
                    let status = api
                        .post("p", &bearer(&format!("junk-{thread}-{n}")), BODY)
                        .status;
                    unavailable.fetch_add(usize::from(status == 503), Ordering::SeqCst);
                    n += 1;
                }
            })
        })
        .collect();
    common::wait_until(Duration::from_secs(10), "random tokens refused 503", || {
        unavailable.load(Ordering::SeqCst) > 0
    });
    std::thread::sleep(Duration::from_millis(1100));
    let status = gw.post("p", &bearer("good-token"), BODY).status;
    flooding.store(false, Ordering::SeqCst);
    for flood in floods {
        flood.join().unwrap();
    }
    assert_eq!(
        status, 200,
        "the genuine token, its answer past cache_ttl_s"
    );
}

/// Requests with one new token while the authorization server fails share its one call and
/// its failure (each waited for the call before it: the fourth 503 came after four calls).
#[test]
fn concurrent_requests_with_one_token_share_a_failed_introspection() {
    let stub = Stub::start(|_| {
        std::thread::sleep(Duration::from_millis(1000));
        (500, "text/plain", b"down".to_vec())
    });
    let gw = Gateway::start(&introspection_provider(&stub.url, ""));
    let started = Instant::now();
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let api = gw.api();
            std::thread::spawn(move || api.post("p", &bearer("new-token"), BODY).status)
        })
        .collect();
    for post in posts {
        assert_eq!(post.join().unwrap(), 503);
    }
    assert_eq!(stub.calls(), 1, "one call for the four");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_active_answer_is_trusted_no_longer_than_cache_ttl_s() {
    let revoked = Arc::new(AtomicBool::new(false));
    let stub = introspection_stub(revoked.clone());
    let gw = Gateway::start(&introspection_provider(&stub.url, "cache_ttl_s = 1\n"));
    assert_eq!(gw.post("p", &bearer("good-token"), BODY).status, 200);
    assert_eq!(gw.post("p", &bearer("good-token"), BODY).status, 200);
    assert_eq!(stub.calls(), 1, "cached");
    // Revoked at the authorization server, its exp still 10 minutes away.
    revoked.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1100));
    assert_invalid_token(
        &gw.post("p", &bearer("good-token"), BODY),
        "revoked token after cache_ttl_s",
    );
    assert_eq!(stub.calls(), 2);
}

fn jwt_provider(jwks: &str) -> String {
    format!(
        "\n[[provider]]\nname = \"p\"\nverify = \"oauth\"\n[provider.oauth]\nmode = \"jwt\"\nrequired_scope = \"events:write\"\n\
         jwks = \"{jwks}\"\nissuer = \"https://idp.example.com\"\naudience = \"hookgate\"\nalgorithms = [\"RS256\"]\n"
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rs256(claims: &Value, kid: &str) -> String {
    let pem = std::fs::read(common::fixture_path("oauth/jwt-test-private-key.pem")).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn claims(aud: &str, exp: u64, scope: &str) -> Value {
    json!({"iss": "https://idp.example.com", "aud": aud, "exp": exp, "iat": now(), "scope": scope, "sub": "sender"})
}

#[test]
fn jwt_tokens_against_a_jwks_file() {
    let jwks = common::fixture_path("oauth/jwks.json");
    let gw = Gateway::start(&jwt_provider(&format!("file:{}", jwks.display())));
    let good = rs256(
        &claims("hookgate", now() + 300, "events:write"),
        "test-key-1",
    );
    assert_eq!(gw.post("p", &bearer(&good), BODY).ack().0, "accepted");

    let cases = [
        (
            "wrong audience",
            rs256(
                &claims("someone-else", now() + 300, "events:write"),
                "test-key-1",
            ),
        ),
        (
            "expired",
            rs256(
                &claims("hookgate", now() - 120, "events:write"),
                "test-key-1",
            ),
        ),
        (
            "unknown kid",
            rs256(
                &claims("hookgate", now() + 300, "events:write"),
                "other-key",
            ),
        ),
        (
            "alg none",
            unsigned_token(&claims("hookgate", now() + 300, "events:write")),
        ),
        (
            "HS256 keyed with the public key",
            hs256_confusion(&claims("hookgate", now() + 300, "events:write")),
        ),
        ("garbage", "not.a.jwt".to_string()),
        (
            "a critical extension",
            with_critical_extension(&claims("hookgate", now() + 300, "events:write")),
        ),
    ];
    for (what, token) in &cases {
        assert_invalid_token(&gw.post("p", &bearer(token), BODY), what);
    }
    let no_scope = rs256(
        &claims("hookgate", now() + 300, "events:read"),
        "test-key-1",
    );
    assert_eq!(gw.post("p", &bearer(&no_scope), BODY).status, 403);

    // Scopes in either claim, in either shape: `scp` a string (Azure AD) or a list (Okta),
    // `scope` a list. (A string `scp` or a list `scope` made every token invalid.)
    let base = claims("hookgate", now() + 300, "");
    for (claim, value) in [
        ("scp", json!("events:read events:write")),
        ("scp", json!(["events:write"])),
        ("scope", json!(["events:read", "events:write"])),
    ] {
        let mut shaped = base.clone();
        shaped.as_object_mut().unwrap().remove("scope");
        shaped[claim] = value.clone();
        let token = rs256(&shaped, "test-key-1");
        let reply = gw.post("p", &bearer(&token), BODY);
        assert_eq!(reply.status, 200, "{claim} = {value}: {}", reply.text());
    }
}

#[test]
fn jwks_url_is_fetched_and_refreshed_on_unknown_kid() {
    let jwks = std::fs::read(common::fixture_path("oauth/jwks.json")).unwrap();
    let stub = Stub::start(move |_| (200, "application/json", jwks.clone()));
    let gw = Gateway::start(&jwt_provider(&format!("{}/jwks.json", stub.url)));
    for _ in 0..5 {
        let token = rs256(
            &claims("hookgate", now() + 300, "events:write"),
            "test-key-1",
        );
        assert_eq!(gw.post("p", &bearer(&token), BODY).status, 200);
    }
    assert_eq!(stub.calls(), 1, "the key set is fetched once, then cached");
    let unknown = rs256(
        &claims("hookgate", now() + 300, "events:write"),
        "rotated-key",
    );
    assert_invalid_token(&gw.post("p", &bearer(&unknown), BODY), "unknown kid");
    assert!(
        stub.calls() <= 2,
        "refreshes are rate-limited: {} calls",
        stub.calls()
    );
}

/// A JWKS URL answering fetch number `n` (from 0) with `answer(n)`. The counter counts fetches as
/// they arrive (the stub records a request only once it has answered it).
fn jwks_stub(
    answer: impl Fn(usize) -> common::stub::StubAnswer + Send + Sync + 'static,
) -> (Stub, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let stub = Stub::start(move |_| answer(counted.fetch_add(1, Ordering::SeqCst)));
    (stub, fetches)
}

fn jwks_fixture() -> Vec<u8> {
    std::fs::read(common::fixture_path("oauth/jwks.json")).unwrap()
}

/// A valid token, signed with the fixture key under `kid`.
fn token(kid: &str) -> String {
    rs256(&claims("hookgate", now() + 300, "events:write"), kid)
}

#[test]
fn a_hanging_jwks_refresh_delays_no_valid_token() {
    let jwks = jwks_fixture();
    let (stub, fetches) = jwks_stub(move |n| {
        if n > 0 {
            std::thread::sleep(Duration::from_secs(10)); // past the gateway's fetch timeout
        }
        (200, "application/json", jwks.clone())
    });
    let gw = Gateway::start(
        &(jwt_provider(&format!("{}/jwks.json", stub.url)) + "jwks_refresh_s = 1\n"),
    );
    assert_eq!(
        gw.post("p", &bearer(&token("test-key-1")), BODY).status,
        200
    );
    // Past jwks_refresh_s, an unknown kid starts a refresh, and the JWKS URL hangs.
    std::thread::sleep(Duration::from_millis(1100));
    let api = gw.api();
    let unknown = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = api.post("p", &bearer(&token("rotated-key")), BODY);
        (reply, started.elapsed())
    });
    common::wait_until(
        Duration::from_secs(3),
        "the refresh to reach the JWKS",
        || fetches.load(Ordering::SeqCst) >= 2,
    );
    let started = Instant::now();
    for i in 0..5 {
        let body = format!(r#"{{"n":{i}}}"#);
        let reply = gw.post("p", &bearer(&token("test-key-1")), body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Well under the refresh's own timeout (5 s), which the hanging JWKS URL reaches: room for
    // five debug-build RSA checks on a loaded machine.
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "5 valid tokens took {took:?} while a JWKS refresh hangs"
    );
    let (reply, took) = unknown.join().unwrap();
    assert_invalid_token(&reply, "unknown kid");
    assert!(
        took < Duration::from_millis(2500),
        "the unknown kid was answered after {took:?}"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one refresh at a time");
}

#[test]
fn a_failing_jwks_and_a_flood_of_unknown_kids_cost_few_fetches() {
    let healthy = Arc::new(AtomicBool::new(false));
    let up = healthy.clone();
    let jwks = jwks_fixture();
    let (stub, fetches) = jwks_stub(move |_| {
        if up.load(Ordering::SeqCst) {
            (200, "application/json", jwks.clone())
        } else {
            (500, "text/plain", b"down".to_vec())
        }
    });
    let gw = Gateway::start(&jwt_provider(&format!("{}/jwks.json", stub.url)));
    let valid = token("test-key-1");
    for _ in 0..20 {
        let reply = gw.post("p", &bearer(&valid), BODY);
        assert_eq!(reply.status, 503, "no key set yet: {}", reply.text());
    }
    let failed = fetches.load(Ordering::SeqCst);
    assert!(
        failed <= 2,
        "a failed fetch backs off: {failed} fetches for 20 requests"
    );

    healthy.store(true, Ordering::SeqCst);
    common::wait_until(
        Duration::from_secs(10),
        "the JWKS to be fetched after the backoff",
        || gw.post("p", &bearer(&valid), BODY).status == 200,
    );
    let loaded = fetches.load(Ordering::SeqCst);
    for i in 0..50 {
        assert_invalid_token(
            &gw.post("p", &bearer(&token(&format!("unknown-{i}"))), BODY),
            "unknown kid",
        );
    }
    let after = fetches.load(Ordering::SeqCst);
    assert!(
        after <= loaded + 1,
        "50 unknown kids made {} fetches",
        after - loaded
    );
}

/// An OAuth server (`provider(url)`) whose answer is 256 MiB long: hookgate reads its first MiB,
/// refuses it (logging `refusal`) and hangs up, rather than read it whole into memory; the
/// sender of a request with `token` gets 503.
fn assert_answer_too_long_is_refused_unread(
    provider: impl Fn(&str) -> String,
    token: &str,
    refusal: &str,
) {
    let (url, written) = common::raw::long_body_server(200, 256 << 20);
    let gw = Gateway::start(&provider(&url));
    let reply = gw.post("p", &bearer(token), BODY);
    assert_eq!(reply.status, 503, "{}", reply.text());
    common::wait_until(Duration::from_secs(10), refusal, || {
        gw.logs().contains(refusal)
    });
    std::thread::sleep(Duration::from_millis(500));
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "hookgate read {sent} bytes of the answer");
}

/// The `oauth2` crate's own client would read an introspection answer whole.
#[test]
fn an_introspection_answer_too_long_is_refused_unread() {
    assert_answer_too_long_is_refused_unread(
        |url| introspection_provider(url, ""),
        "good-token",
        "the answer is longer than 1048576 bytes",
    );
}

#[test]
fn a_jwks_answer_too_long_is_refused_unread() {
    assert_answer_too_long_is_refused_unread(
        |url| jwt_provider(&format!("{url}/jwks.json")),
        &token("test-key-1"),
        "the key set is larger than 1048576 bytes",
    );
}

#[test]
fn a_key_removed_from_the_jwks_is_refused_after_the_ttl_refresh() {
    let rotated = Arc::new(AtomicBool::new(false));
    let flag = rotated.clone();
    let before = jwks_fixture();
    let after = String::from_utf8(before.clone())
        .unwrap()
        .replace("test-key-1", "test-key-2")
        .into_bytes();
    let (stub, _) = jwks_stub(move |_| {
        let set = if flag.load(Ordering::SeqCst) {
            &after
        } else {
            &before
        };
        (200, "application/json", set.clone())
    });
    let gw = Gateway::start(
        &(jwt_provider(&format!("{}/jwks.json", stub.url)) + "jwks_refresh_s = 1\n"),
    );
    let old = token("test-key-1");
    assert_eq!(gw.post("p", &bearer(&old), BODY).status, 200);
    // The authorization server rotates: test-key-1 leaves the key set, test-key-2 joins it.
    rotated.store(true, Ordering::SeqCst);
    common::wait_until(
        Duration::from_secs(5),
        "the removed key to be refused",
        || gw.post("p", &bearer(&old), BODY).status == 401,
    );
    assert_invalid_token(&gw.post("p", &bearer(&old), BODY), "removed key");
    assert_eq!(
        gw.post("p", &bearer(&token("test-key-2")), BODY).status,
        200
    );
}

#[test]
fn hmac_algorithms_are_refused_in_config() {
    let jwks = common::fixture_path("oauth/jwks.json");
    let config = jwt_provider(&format!("file:{}", jwks.display()))
        .replace("[\"RS256\"]", "[\"RS256\", \"HS256\"]");
    let path = std::env::temp_dir().join(format!("hookgate-jwt-hs-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!("[admin]\ntoken = \"0123456789abcdef0123\"\n{config}"),
    )
    .unwrap();
    let output = std::process::Command::new(common::hookgate_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HS256 is refused"), "{stderr}");
}

fn unsigned_token(claims: &Value) -> String {
    let header = BASE64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", BASE64URL.encode(claims.to_string()))
}

/// A well-signed RS256 token whose header makes an extension critical (RFC 7515 4.1.11):
/// one hookgate does not understand, so the token must be refused.
fn with_critical_extension(claims: &Value) -> String {
    let header = BASE64URL.encode(
        br#"{"alg":"RS256","typ":"JWT","kid":"test-key-1","crit":["exp-ext"],"exp-ext":1}"#,
    );
    let message = format!("{header}.{}", BASE64URL.encode(claims.to_string()));
    let pem = std::fs::read(common::fixture_path("oauth/jwt-test-private-key.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
            .unwrap();
    format!("{message}.{signature}")
}

/// The classic confusion attack: HS256 with the RSA public key as the HMAC secret.
fn hs256_confusion(claims: &Value) -> String {
    let public = std::fs::read(common::fixture_path("oauth/jwt-test-public-key.pem")).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("test-key-1".into());
    encode(&header, claims, &EncodingKey::from_secret(&public)).unwrap()
}
