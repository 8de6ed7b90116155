//! Stripe: the `Stripe-Signature` list (`t=..,v1=..,v1=..,v0=..`) and its timestamp.
#![no_main]

use hookgate::config::Config;
use hookgate_fuzz::{config, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        config(
            r#"
[[provider]]
name = "stripe"
verify = "stripe"
secrets = ["whsec_fuzz_stripe_secret", "whsec_fuzz_stripe_rotated"]
"#,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let input = split(data, 1);
    let headers = FuzzHeaders(vec![("Stripe-Signature", input.fields[0])]);
    let _ = verify(
        verifier(gateway(), "stripe"),
        &headers,
        "/hooks/stripe",
        "",
        input.body,
    );
});
