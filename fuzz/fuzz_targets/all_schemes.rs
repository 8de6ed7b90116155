//! Every scheme's header parsing at once: the first byte picks a provider, the next lines are
//! that scheme's headers, the rest is the body (GitHub, generic hmac, Shopify, Slack, Alcméon,
//! AccuLynx, `none`, and the schemes with a target of their own, for cross-checking).
#![no_main]

use hookgate::config::Config;
use hookgate_fuzz::{config, query, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        config(
            r#"
[[provider]]
name = "github"
verify = "github"
secrets = ["fuzz-github"]

[[provider]]
name = "hmac-hex"
verify = "hmac"
secrets = ["fuzz-hmac"]
header = "X-Signature"
prefix = "sha256="

[[provider]]
name = "hmac-b64"
verify = "hmac"
secrets = ["fuzz-hmac"]
header = "X-Signature"
algorithm = "sha1"
encoding = "base64"

[[provider]]
name = "shopify"
verify = "shopify"
secrets = ["fuzz-shopify"]

[[provider]]
name = "slack"
verify = "slack"
secrets = ["fuzz-slack"]

[[provider]]
name = "alcmeon"
verify = "alcmeon"
secrets = ["fuzz-alcmeon"]
public_url = "https://hooks.example.com/prefix/hooks/alcmeon"

[[provider]]
name = "acculynx"
verify = "acculynx"
secrets = ["fuzz-acculynx"]
encoding = "base64"

[[provider]]
name = "open"
verify = "none"
allow_ips = ["127.0.0.0/8", "::1"]

[[provider]]
name = "stripe"
verify = "stripe"
secrets = ["whsec_fuzz"]

[[provider]]
name = "sw"
verify = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
"#,
        )
    })
}

/// Each provider and the headers its scheme reads.
const SCHEMES: &[(&str, &[&str])] = &[
    ("github", &["X-Hub-Signature-256", "X-GitHub-Delivery"]),
    ("hmac-hex", &["X-Signature"]),
    ("hmac-b64", &["X-Signature"]),
    (
        "shopify",
        &[
            "X-Shopify-Hmac-Sha256",
            "X-Shopify-Webhook-Id",
            "X-Shopify-Topic",
        ],
    ),
    ("slack", &["X-Slack-Signature", "X-Slack-Request-Timestamp"]),
    ("alcmeon", &["X-Alcmeon-Webhook-Signature"]),
    ("acculynx", &["X-AccuLynx-Signature"]),
    ("open", &[]),
    ("stripe", &["Stripe-Signature"]),
    (
        "sw",
        &["webhook-id", "webhook-timestamp", "webhook-signature"],
    ),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (name, header_names) = SCHEMES[usize::from(selector) % SCHEMES.len()];
    // One more field: the request's query string.
    let input = split(rest, header_names.len() + 1);
    let headers = FuzzHeaders(
        header_names
            .iter()
            .copied()
            .zip(input.fields.iter().copied())
            .collect(),
    );
    let query = query(input.fields[header_names.len()]);
    let _ = verify(
        verifier(gateway(), name),
        &headers,
        &format!("/hooks/{name}"),
        query,
        input.body,
    );
});
