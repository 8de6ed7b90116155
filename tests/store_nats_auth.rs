//! How a gateway proves who it is to NATS, and checks the servers, with the JetStream backend:
//! the real binary against a real nats-server configured for each way (a token, a user and
//! password, an NKey, a `.creds` file on a server in operator mode, TLS with a private CA and a
//! client certificate). Each accepted way stores a webhook; wrong credentials, a missing client
//! certificate or a server whose certificate is not trusted stop the start with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::nats::NatsServer;
use common::{provider, sign, toml_str, Gateway};
use nkeys::KeyPair;

const WHSEC_NAME: &str = "nats-auth";

/// `[store]` on `nats` with `keys` (authentication, TLS) added.
fn store_section(nats: &NatsServer, keys: &str) -> String {
    format!(
        "\n[store]\nbackend = \"jetstream\"\nservers = [{}]\n{keys}\n",
        toml_str(&nats.url())
    )
}

/// A gateway on `nats` with `keys`: it starts, and stores a signed webhook.
fn assert_stores_a_webhook(nats: &NatsServer, keys: &str) {
    let whsec = sign::whsec(WHSEC_NAME);
    let gw = Gateway::builder()
        .config(&provider("std", "standard-webhooks", &[&whsec], ""))
        .config(&store_section(nats, keys))
        .start();
    let body = br#"{"type":"order.created","id":"ord_1"}"#;
    let headers = sign::standard_headers(&whsec, "msg_1", body);
    let reply = gw.post("std", &headers, body);
    assert_eq!(reply.status, 200, "{keys}: {}", reply.text());
    assert_eq!(reply.ack().0, "accepted", "{keys}");
    assert_eq!(gw.all_events(None).len(), 1, "{keys}");
}

/// `hookgate serve` on `nats` with `keys` exits non-zero within 30 s: its stderr.
fn refused_start(nats: &NatsServer, keys: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let whsec = sign::whsec(WHSEC_NAME);
    let config = common::config_toml(
        &dir.path().join("data"),
        "",
        &format!(
            "{}{}",
            provider("std", "standard-webhooks", &[&whsec], ""),
            store_section(nats, keys)
        ),
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let (status, stderr) = common::serve_until_it_exits(&path, Duration::from_secs(30));
    assert!(!status.success(), "{keys}: exited 0\n{stderr}");
    stderr
}

fn assert_refused(nats: &NatsServer, keys: &str, reason: &str) {
    let stderr = refused_start(nats, keys);
    assert!(
        stderr.to_lowercase().contains(reason),
        "{keys}: no {reason:?} in\n{stderr}"
    );
}

#[test]
fn a_token_a_password_or_an_nkey_authenticates_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(
        &dir.path().join("token"),
        "authorization { token: \"nats-token-0123456789\" }",
    );
    assert_stores_a_webhook(&nats, "token = \"nats-token-0123456789\"");
    assert_refused(&nats, "token = \"not-the-token\"", "authorization");
    assert_refused(&nats, "", "authorization");
    drop(nats);

    let nats = NatsServer::start_with(
        &dir.path().join("password"),
        "authorization { users = [ { user: \"hookgate\", password: \"pass-0123456789\" } ] }",
    );
    assert_stores_a_webhook(&nats, "user = \"hookgate\"\npassword = \"pass-0123456789\"");
    assert_refused(
        &nats,
        "user = \"hookgate\"\npassword = \"wrong-password\"",
        "authorization",
    );
    drop(nats);

    let user = KeyPair::new_user();
    let nats = NatsServer::start_with(
        &dir.path().join("nkey"),
        &format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}",
            user.public_key()
        ),
    );
    assert_stores_a_webhook(&nats, &format!("nkey_seed = \"{}\"", user.seed().unwrap()));
    let stranger = KeyPair::new_user();
    assert_refused(
        &nats,
        &format!("nkey_seed = \"{}\"", stranger.seed().unwrap()),
        "authorization",
    );
}

/// A JWT as NATS signs them: `claims` issued by `issuer` about `subject`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{subject}{now}"),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let claims = encode(claims.to_string().as_bytes());
    let signature = issuer
        .sign(format!("{header}.{claims}").as_bytes())
        .unwrap();
    format!("{header}.{claims}.{}", encode(&signature))
}

/// A server in operator mode (decentralized JWT authentication), with one account that may use
/// JetStream, and a `.creds` file for a user of that account, written to `creds`.
fn operator_mode_server(dir: &Path, creds: &Path) -> NatsServer {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "hookgate",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "hookgate",
        serde_json::json!({"subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
    );
    std::fs::write(
        creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    // A server in operator mode needs a system account of its own.
    let system = KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    NatsServer::start_with(
        dir,
        &format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{ {sys}: \"{system_jwt}\", {}: \"{account_jwt}\" }}",
            account.public_key(),
            sys = system.public_key(),
        ),
    )
}

#[test]
fn a_creds_file_authenticates_to_a_server_in_operator_mode() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("hookgate.creds");
    let nats = operator_mode_server(&dir.path().join("nats"), &creds);
    assert_stores_a_webhook(
        &nats,
        &format!("credentials = {}", toml_str(&creds.to_string_lossy())),
    );
    // The same user JWT with another user's seed cannot sign the server's nonce.
    let text = std::fs::read_to_string(&creds).unwrap();
    let seed_line = text.lines().find(|line| line.starts_with("SU")).unwrap();
    let forged = dir.path().join("forged.creds");
    std::fs::write(
        &forged,
        text.replace(seed_line, &KeyPair::new_user().seed().unwrap()),
    )
    .unwrap();
    assert_refused(
        &nats,
        &format!("credentials = {}", toml_str(&forged.to_string_lossy())),
        "authorization",
    );
}

/// PEM files under `dir`: a private CA, a server certificate for 127.0.0.1 and a client
/// certificate, both issued by it, and a second CA that issued nothing here.
fn write_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params.clone(), KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let other = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
    for (name, names) in [
        ("server", vec!["127.0.0.1".to_string()]),
        ("client", vec!["hookgate".to_string()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

#[test]
fn tls_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    write_certificates(dir.path());
    let file = |name: &str| toml_str(&dir.path().join(name).to_string_lossy());
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        &format!(
            "tls {{ cert_file: {}, key_file: {}, ca_file: {}, verify: true }}",
            file("server.pem"),
            file("server-key.pem"),
            file("ca.pem")
        ),
    );
    let ca = format!("tls_ca = {}", file("ca.pem"));
    let client = format!(
        "tls_cert = {}\ntls_key = {}",
        file("client.pem"),
        file("client-key.pem")
    );
    assert_stores_a_webhook(&nats, &format!("{ca}\n{client}"));
    // Without its client certificate, the server refuses the gateway.
    assert_refused(&nats, &ca, "cannot connect to the nats servers");
    // A server whose certificate the gateway does not trust is refused by the gateway.
    assert_refused(
        &nats,
        &format!("tls_ca = {}\n{client}", file("other-ca.pem")),
        "certificate",
    );
}
