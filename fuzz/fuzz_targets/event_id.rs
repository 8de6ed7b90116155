//! Event ids from attacker bodies: a configured `json:/pointer` or `header:NAME` rule, the
//! body-hash fallback, and the ids and topics the vendor schemes read from a body they accepted
//! (Stripe's `/id`, Slack's `event_id`, Alcméon's `/id`, AccuLynx's `EventId`/`TopicName`).
//! The bodies are signed with the scheme's own `sign` first, so that the parsing past the
//! signature check is reached; a signed body must then verify.
#![no_main]

use std::time::SystemTime;

use hookgate::config::Config;
use hookgate::event_id::{event_id, EventIdRule};
use hookgate::verify::SignInput;
use hookgate_fuzz::{config, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        config(
            r#"
[[provider]]
name = "open"
verify = "none"

[[provider]]
name = "stripe"
verify = "stripe"
secrets = ["whsec_fuzz"]

[[provider]]
name = "slack"
verify = "slack"
secrets = ["fuzz-slack"]

[[provider]]
name = "alcmeon"
verify = "alcmeon"
secrets = ["fuzz-alcmeon"]

[[provider]]
name = "acculynx"
verify = "acculynx"
secrets = ["fuzz-acculynx"]

[[provider]]
name = "shopify"
verify = "shopify"
secrets = ["fuzz-shopify"]
"#,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let input = split(data, 2);
    let headers = FuzzHeaders(vec![("X-Event-Id", input.fields[1])]);
    let Some(Ok(verified)) = verify(
        verifier(gateway(), "open"),
        &headers,
        "/hooks/open",
        "",
        input.body,
    ) else {
        panic!("`none` refused a request");
    };
    let _ = event_id(None, &headers, &verified);
    let _ = event_id(
        Some(&EventIdRule::Header("X-Event-Id".into())),
        &headers,
        &verified,
    );
    if let Ok(pointer) = std::str::from_utf8(input.fields[0]) {
        if let Ok(rule) = EventIdRule::parse(&format!("json:{pointer}")) {
            let _ = event_id(Some(&rule), &headers, &verified);
        }
    }

    let url = url::Url::parse("https://hooks.example.com/hooks/p").expect("a valid URL");
    for name in ["stripe", "slack", "alcmeon", "acculynx", "shopify"] {
        let scheme = verifier(gateway(), name);
        let signed = scheme
            .sign(&SignInput {
                body: input.body,
                url: &url,
                now: SystemTime::now(),
                event_id: "fuzz-event",
            })
            .expect("sign");
        let headers = FuzzHeaders(
            signed
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect(),
        );
        let outcome = verify(scheme, &headers, url.path(), "", input.body);
        let Some(Ok(verified)) = outcome else {
            panic!("{name}: a body signed by sign() was refused: {outcome:?}");
        };
        let _ = event_id(None, &headers, &verified);
        let _ = verified.topic();
    }
});
