//! JSON laid out for reading: the body's own tokens (keys in their order, numbers and escapes
//! as received, a key given twice shown twice) with new lines and indentation added, never a
//! parsed tree (a body of many small objects takes ~95 times its size as one), and never more
//! than a bound, however deep the nesting (each level indents every line under it).

/// Lays out `json` (a document that parses) two spaces a level, up to about `limit` bytes;
/// `true` with it when the text was cut there.
pub fn indent(json: &str, limit: usize) -> (String, bool) {
    let bytes = json.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(json.len().min(limit) + 64);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut at = 0;
    let new_line = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    while at < bytes.len() {
        if out.len() >= limit {
            return (cut_to_chars(out, limit), true);
        }
        let byte = bytes[at];
        at += 1;
        if in_string {
            out.push(byte);
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => {
                out.push(byte);
                let close = if byte == b'{' { b'}' } else { b']' };
                let next = bytes[at..].iter().position(|b| !b.is_ascii_whitespace());
                if next.is_some_and(|skip| bytes[at + skip] == close) {
                    out.push(close);
                    at += next.unwrap_or(0) + 1;
                } else {
                    depth += 1;
                    new_line(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                new_line(&mut out, depth);
                out.push(byte);
            }
            b',' => {
                out.push(byte);
                new_line(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b'"' => {
                out.push(byte);
                in_string = true;
            }
            _ => out.push(byte),
        }
    }
    // The last new line and closing brackets may take it past the bound.
    let cut = out.len() > limit;
    (cut_to_chars(out, limit), cut)
}

/// `bytes` (UTF-8 but perhaps for a character cut at the end) as a string of at most `limit`
/// bytes.
fn cut_to_chars(mut bytes: Vec<u8>, limit: usize) -> String {
    bytes.truncate(limit);
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let whole = err.utf8_error().valid_up_to();
            let mut bytes = err.into_bytes();
            bytes.truncate(whole);
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

/// The first `limit` bytes of `text` at most, cut at a character's start; `true` when cut.
pub fn cut_text(text: &str, limit: usize) -> (&str, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let end = (0..=limit)
        .rev()
        .find(|end| text.is_char_boundary(*end))
        .unwrap_or(0);
    (&text[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_the_tokens_as_received() {
        let body = r#" {"zeta":1,"alpha":[1.10, 123456789012345678901234567890,{},[ ]],"s":"a,{\"b\":[c]}\\","k":"x","k":"y"} "#;
        let (text, cut) = indent(body, 1 << 20);
        assert!(!cut);
        let expected = "{\n  \"zeta\": 1,\n  \"alpha\": [\n    1.10,\n    123456789012345678901234567890,\n    {},\n    []\n  ],\n  \"s\": \"a,{\\\"b\\\":[c]}\\\\\",\n  \"k\": \"x\",\n  \"k\": \"y\"\n}";
        assert_eq!(text, expected);
        // The same as serde_json's layout, where the values are ones it keeps exactly.
        let plain = r#"{"a":{"b":[1,2,{"c":null}],"d":"é"},"e":true}"#;
        let value: serde_json::Value = serde_json::from_str(plain).unwrap();
        assert_eq!(
            indent(plain, 1 << 20).0,
            serde_json::to_string_pretty(&value).unwrap()
        );
    }

    #[test]
    fn deep_nesting_stops_at_the_bound() {
        // 1 MB of input whose layout would be ~100 MB.
        let body = format!(
            "{}{}0{}",
            "[".repeat(120),
            "0,".repeat(400_000),
            "]".repeat(120)
        );
        let (text, cut) = indent(&body, 1 << 20);
        assert!(cut);
        assert!(text.len() <= 1 << 20);
    }

    #[test]
    fn cuts_fall_between_characters() {
        let (text, cut) = indent(r#"["ééééé"]"#, 9);
        assert!(cut);
        assert_eq!(text, "[\n  \"éé");
        assert_eq!(cut_text("aéb", 2), ("a", true));
        assert_eq!(cut_text("aéb", 3), ("aé", true));
        assert_eq!(cut_text("aéb", 4), ("aéb", false));
        // Past the bound only by the closing brackets: cut, and said.
        let (text, cut) = indent("[[1]]", 12);
        assert_eq!((text.as_str(), cut), ("[\n  [\n    1\n", true));
    }
}
