//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and the `webhook-signature` list
//! (`v1,<base64> v1,<base64> ...`), in both spellings (`svix-*`).
#![no_main]

use hookgate::config::Config;
use hookgate_fuzz::{config, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        config(
            r#"
[[provider]]
name = "sw"
verify = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldA=="]
"#,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let input = split(data, 6);
    let names = [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
    ];
    let headers = FuzzHeaders(names.into_iter().zip(input.fields).collect());
    let _ = verify(
        verifier(gateway(), "sw"),
        &headers,
        "/hooks/sw",
        "",
        input.body,
    );
});
