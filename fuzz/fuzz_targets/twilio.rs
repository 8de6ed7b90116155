//! Twilio: `X-Twilio-Signature`, `X-Twilio-Webhooks-Signature-Settings`, the form parameters of
//! the body, the received query string joined to `public_url` (with and without its default
//! port), `bodySHA256` in the query.
//!
//! Besides "never panics": a body Twilio's signing (our `sign`) signed over
//! `public_url?query` is accepted when posted with that query, under HMAC-SHA1 and under
//! HMAC-SHA256 with the settings header.
#![no_main]

use std::time::SystemTime;

use hookgate::config::Config;
use hookgate::verify::SignInput;
use hookgate_fuzz::{config, query, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        config(
            r#"
[[provider]]
name = "tw"
verify = "twilio"
secrets = ["fuzz-twilio-auth-token"]
public_url = "https://hooks.example.com/hooks/tw"

[[provider]]
name = "tw-port-query"
verify = "twilio"
secrets = ["fuzz-twilio-auth-token"]
public_url = "http://user@[::1]:8080/sms?fixed=1"

[[provider]]
name = "tw-256"
verify = "twilio"
secrets = ["fuzz-twilio-shared-key"]
public_url = "https://hooks.example.com/hooks/tw"
algorithm = "sha256"
"#,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let input = split(data, 5);
    let query = query(input.fields[2]);
    let headers = FuzzHeaders(vec![
        ("X-Twilio-Signature", input.fields[0]),
        ("Content-Type", input.fields[1]),
        ("I-Twilio-Idempotency-Token", input.fields[3]),
        ("X-Twilio-Webhooks-Signature-Settings", input.fields[4]),
    ]);
    for name in ["tw", "tw-port-query", "tw-256"] {
        let _ = verify(
            verifier(gateway(), name),
            &headers,
            "/hooks/tw",
            query,
            input.body,
        );
    }

    // Round trip: sign a form body over public_url?query as Twilio would, then verify it.
    let Ok(url) = url::Url::parse(&format!("https://hooks.example.com/hooks/tw?{query}")) else {
        return;
    };
    if query.is_empty() || url.query() != Some(query) || query.contains("bodySHA256") {
        return; // The URL parser rewrote the query: not what a sender would have signed.
    }
    for name in ["tw", "tw-256"] {
        let twilio = verifier(gateway(), name);
        let signed = twilio.sign(&SignInput {
            body: input.body,
            url: &url,
            now: SystemTime::now(),
            event_id: "fuzz",
        });
        let Ok(signed) = signed else { return };
        let headers = FuzzHeaders(
            signed
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect(),
        );
        let outcome = verify(twilio, &headers, "/hooks/tw", query, input.body);
        assert!(
            matches!(outcome, Some(Ok(_))),
            "a Twilio-signed form post was refused by {name}: {outcome:?}"
        );
    }
});
