//! Reading RSA keys as Dialog Insight hands them out: PEM (SPKI `BEGIN PUBLIC KEY` or PKCS#1
//! `BEGIN RSA PUBLIC KEY`) or the .NET XML `<RSAKeyValue><Modulus>..</Modulus><Exponent>..
//! </Exponent></RSAKeyValue>` (`RSA.ToXmlString(false)`), and private keys (PKCS#8 or PKCS#1 PEM)
//! for signing test requests.
//!
//! The XML is read by hand, strictly: an optional `<?xml ..?>` declaration, one `RSAKeyValue`
//! element holding exactly one `Modulus` and one `Exponent` in any order, whitespace anywhere
//! between tags and inside the base64 text. Nothing else is accepted: no DOCTYPE, entities,
//! comments or CDATA (so no external entity can ever be fetched), and no private key parts.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};

/// The smallest modulus accepted, in bits.
pub const MIN_BITS: usize = 2048;

/// Standard base64, padded or not, as .NET and hand-edited files write it.
const XML_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parts of a .NET private key: their presence means a private key was configured.
const PRIVATE_PARTS: &[&str] = &["P", "Q", "DP", "DQ", "InverseQ", "D"];

/// Reads a public key in any of the accepted formats and checks its size.
pub fn parse_public_key(text: &[u8]) -> Result<RsaPublicKey, String> {
    let text = std::str::from_utf8(text)
        .map_err(|_| "is not text (expected a PEM or XML RSA public key)".to_string())?
        .trim();
    let key = if text.starts_with('<') {
        parse_xml(text)?
    } else if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        RsaPublicKey::from_public_key_pem(text)
            .map_err(|err| format!("is not a valid SPKI RSA public key: {err}"))?
    } else if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(text)
            .map_err(|err| format!("is not a valid PKCS#1 RSA public key: {err}"))?
    } else if text.starts_with("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        return Err("is a private key: give the public key only".to_string());
    } else {
        return Err(
            "is not a PEM (BEGIN PUBLIC KEY, BEGIN RSA PUBLIC KEY) or XML \
             (<RSAKeyValue>) RSA public key"
                .to_string(),
        );
    };
    let bits = key.n().bits();
    if bits < MIN_BITS {
        return Err(format!(
            "is a {bits}-bit RSA key; at least {MIN_BITS} bits are required"
        ));
    }
    Ok(key)
}

/// Reads a private key, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM.
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs8_pem(pem).map_err(|err| format!("invalid PKCS#8 key: {err}"))
    } else if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(pem).map_err(|err| format!("invalid PKCS#1 key: {err}"))
    } else {
        Err("not a PEM RSA private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)".to_string())
    }
}

/// Reads `<RSAKeyValue><Modulus>b64</Modulus><Exponent>b64</Exponent></RSAKeyValue>`.
fn parse_xml(text: &str) -> Result<RsaPublicKey, String> {
    let bad = |why: &str| format!("is not a valid XML RSA public key: {why}");
    let mut rest = text;
    if rest.starts_with("<?xml") {
        let end = rest.find("?>").ok_or_else(|| bad("unterminated <?xml"))?;
        rest = rest[end + 2..].trim_start();
    }
    if rest.contains("<!") || rest.contains("<?") || rest.contains('&') {
        return Err(bad(
            "DOCTYPE, entities, comments and CDATA are not accepted",
        ));
    }
    rest = rest
        .strip_prefix("<RSAKeyValue>")
        .ok_or_else(|| bad("expected <RSAKeyValue>"))?;
    let mut modulus = None;
    let mut exponent = None;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("</RSAKeyValue>") {
            if !after.trim().is_empty() {
                return Err(bad("text after </RSAKeyValue>"));
            }
            break;
        }
        let (name, value, after) = element(rest).ok_or_else(|| bad("expected an element"))?;
        let slot = match name {
            "Modulus" => &mut modulus,
            "Exponent" => &mut exponent,
            name if PRIVATE_PARTS.contains(&name) => {
                return Err("holds a private key (<D>, <P>...): give the public key only".into())
            }
            other => return Err(bad(&format!("unexpected element <{other}>"))),
        };
        if slot.is_some() {
            return Err(bad(&format!("<{name}> appears twice")));
        }
        let compact: String = value.split_ascii_whitespace().collect();
        let bytes = XML_BASE64
            .decode(compact)
            .map_err(|_| bad(&format!("<{name}> is not base64")))?;
        *slot = Some(BigUint::from_bytes_be(&bytes));
        rest = after;
    }
    let modulus = modulus.ok_or_else(|| bad("no <Modulus>"))?;
    let exponent = exponent.ok_or_else(|| bad("no <Exponent>"))?;
    RsaPublicKey::new(modulus, exponent).map_err(|err| bad(&err.to_string()))
}

/// Splits `<Name>text</Name>rest` into its parts; the text may hold no markup.
fn element(text: &str) -> Option<(&str, &str, &str)> {
    let inner = text.strip_prefix('<')?;
    let name_end = inner.find('>')?;
    let name = &inner[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let body = &inner[name_end + 1..];
    let close = format!("</{name}>");
    let value_end = body.find(&close)?;
    let value = &body[..value_end];
    if value.contains('<') {
        return None;
    }
    Some((name, value, &body[value_end + close.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const PEM: &str = include_str!("../../../fixtures/dialog-insight/test-public-key.pem");
    pub const XML: &str = include_str!("../../../fixtures/dialog-insight/test-public-key.xml");

    fn modulus_and_exponent() -> (String, String) {
        let start = XML.find("<Modulus>").unwrap() + "<Modulus>".len();
        let end = XML.find("</Modulus>").unwrap();
        (XML[start..end].to_string(), "AQAB".to_string())
    }

    #[test]
    fn xml_and_pem_give_the_same_key() {
        let pem = parse_public_key(PEM.as_bytes()).unwrap();
        assert_eq!(parse_public_key(XML.as_bytes()).unwrap(), pem);
        assert_eq!(pem.n().bits(), 2048);
    }

    #[test]
    fn xml_tolerates_declaration_whitespace_and_order() {
        let (n, e) = modulus_and_exponent();
        let wrapped: String = n
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n      ");
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<RSAKeyValue>\n  <Exponent>{e}</Exponent>\n  \
             <Modulus>\n      {wrapped}\n  </Modulus>\n</RSAKeyValue>\n"
        );
        let expected = parse_public_key(PEM.as_bytes()).unwrap();
        assert_eq!(parse_public_key(xml.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn xml_is_strict_about_structure() {
        let (n, e) = modulus_and_exponent();
        let refused = [
            format!("<RSAKeyValue><Modulus>{n}</Modulus></RSAKeyValue>"),
            format!("<RSAKeyValue><Modulus>{n}</Modulus><Modulus>{n}</Modulus><Exponent>{e}</Exponent></RSAKeyValue>"),
            format!("<RSAKeyValue><Modulus>{n}</Modulus><Exponent>{e}</Exponent><D>AQAB</D></RSAKeyValue>"),
            format!("<RSAKeyValue><Modulus>{n}</Modulus><Exponent>{e}</Exponent><Foo>x</Foo></RSAKeyValue>"),
            format!("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><RSAKeyValue><Modulus>{n}</Modulus><Exponent>&e;</Exponent></RSAKeyValue>"),
            format!("<RSAKeyValue><Modulus>{n}</Modulus><Exponent>{e}</Exponent></RSAKeyValue>trailing"),
            format!("<RSAKeyValue><Modulus>not base64!</Modulus><Exponent>{e}</Exponent></RSAKeyValue>"),
            format!("<RSAKeyValue><Modulus>{n}</Modulus><Exponent>{e}</Exponent>"),
            format!("<RSAKeyValue><Modulus>{n}<Exponent>{e}</Exponent></Modulus></RSAKeyValue>"),
        ];
        for xml in refused {
            assert!(parse_public_key(xml.as_bytes()).is_err(), "{xml}");
        }
    }

    #[test]
    fn weak_private_and_unknown_keys_are_refused() {
        let weak = include_str!("../../../fixtures/dialog-insight/test-weak-1024-public-key.pem");
        let err = parse_public_key(weak.as_bytes()).unwrap_err();
        assert!(err.contains("1024-bit"), "{err}");
        let private = include_str!("../../../fixtures/dialog-insight/test-private-key.pem");
        let err = parse_public_key(private.as_bytes()).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        assert!(parse_public_key(b"ssh-rsa AAAA").is_err());
        assert!(
            parse_public_key(b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(parse_public_key(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn private_keys_in_both_pem_formats() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let pkcs8 = include_str!("../../../fixtures/dialog-insight/test-private-key.pem");
        let key = parse_private_key(pkcs8).unwrap();
        let pkcs1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert_eq!(parse_private_key(&pkcs1).unwrap(), key);
        assert!(parse_private_key(PEM).is_err());
    }
}
