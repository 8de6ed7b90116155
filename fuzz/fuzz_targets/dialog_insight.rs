//! Dialog Insight: `X-DI-Signature` decoding (base64 and hex) and RSA verification, and the
//! `isTest` check of an accepted body.
#![no_main]

use hookgate::config::Config;
use hookgate_fuzz::{config, fixture, split, verifier, verify, FuzzHeaders};
use libfuzzer_sys::fuzz_target;

fn gateway() -> &'static Config {
    hookgate_fuzz::gateway(|| {
        config(&format!(
            r#"
[[provider]]
name = "di"
verify = "dialog-insight"
public_keys = ["file:{pem}", "file:{rotation}"]

[[provider]]
name = "di-hex-sha1"
verify = "dialog-insight"
public_keys = ["file:{xml}"]
hash = "sha1"
signature_encoding = "hex"
"#,
            pem = fixture("dialog-insight/test-public-key.pem"),
            rotation = fixture("dialog-insight/test-rotation-public-key.pem"),
            xml = fixture("dialog-insight/test-public-key.xml"),
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let input = split(data, 1);
    let headers = FuzzHeaders(vec![("X-DI-Signature", input.fields[0])]);
    for name in ["di", "di-hex-sha1"] {
        let _ = verify(
            verifier(gateway(), name),
            &headers,
            "/hooks/di",
            "",
            input.body,
        );
    }
});
