//! A client certificate as a gateway forwards it, reduced to what a certificate-bound token
//! (RFC 8705 section 3) is checked against: the SHA-256 of the leaf certificate's DER.
//!
//! Two header forms cover the common gateways:
//! - [`Format::Pem`]: a PEM certificate, or the base64 DER alone, URL-escaped or not: nginx's
//!   `$ssl_client_escaped_cert`, Traefik's `passTLSClientCert` (`pem = true`), Caddy's
//!   `{http.request.tls.client.certificate_der_base64}` or `certificate_pem`.
//! - [`Format::Xfcc`]: Envoy's `X-Forwarded-Client-Cert`, of exactly one element (a header of
//!   several carries what earlier hops, or the client, put there), its `Hash` (hex SHA-256)
//!   and/or `Cert` (URL-escaped PEM), which must agree when both are given.
//!
//! Whether the header can be trusted is the deployment's: the gateway must set it and
//! overwrite any the client sent.

use aws_lc_rs::digest;
use base64::Engine;
use x509_cert::der::Decode;

/// The longest header value read (a certificate chain's leaf, escaped, is a few KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How the gateway writes the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pem,
    Xfcc,
}

/// Why a forwarded certificate could not be read: the request is refused, never taken as
/// coming without a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}

/// The SHA-256 of the certificate `value` carries; `None` when it carries none (an empty
/// value, as nginx sends for a connection without one, or an XFCC element without `Hash`
/// and `Cert`).
pub fn certificate_sha256(value: &str, format: Format) -> Result<Option<[u8; 32]>, Malformed> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(Malformed("the certificate header is too long"));
    }
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    match format {
        Format::Pem => pem_sha256(value).map(Some),
        Format::Xfcc => xfcc_sha256(value),
    }
}

fn pem_sha256(value: &str) -> Result<[u8; 32], Malformed> {
    let text = percent_decode(value).ok_or(Malformed("a malformed percent-escape"))?;
    let text = std::str::from_utf8(&text).map_err(|_| Malformed("the certificate is not text"))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let body = match text.split_once(BEGIN) {
        None => text,
        Some((before, rest)) => {
            let (body, after) = rest
                .split_once(END)
                .ok_or(Malformed("a PEM certificate without its end line"))?;
            if !before.trim().is_empty() || !after.trim().is_empty() {
                return Err(Malformed("more than one certificate, or text around it"));
            }
            body
        }
    };
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64.as_bytes())
        .map_err(|_| Malformed("the certificate is not base64"))?;
    // A certificate, not any bytes: what is hashed is what a TLS stack would have taken.
    x509_cert::Certificate::from_der(&der).map_err(|_| Malformed("not an X.509 certificate"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, &der).as_ref());
    Ok(out)
}

fn xfcc_sha256(value: &str) -> Result<Option<[u8; 32]>, Malformed> {
    let elements = split_unquoted(value, b',')?;
    let [element] = elements.as_slice() else {
        return Err(Malformed("an XFCC header of several elements"));
    };
    let mut hash = None;
    let mut cert = None;
    for pair in split_unquoted(element, b';')? {
        let (key, value) = pair
            .split_once('=')
            .ok_or(Malformed("an XFCC pair without '='"))?;
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted
                .strip_suffix('"')
                .ok_or(Malformed("an unterminated XFCC quote"))?,
            None => value,
        };
        let slot = if key.trim().eq_ignore_ascii_case("hash") {
            &mut hash
        } else if key.trim().eq_ignore_ascii_case("cert") {
            &mut cert
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(Malformed("a repeated XFCC key"));
        }
    }
    let from_hash = match hash {
        None => None,
        Some(hex) => Some(hex_32(hex).ok_or(Malformed("an XFCC Hash that is not SHA-256 hex"))?),
    };
    let from_cert = cert.map(pem_sha256).transpose()?;
    match (from_hash, from_cert) {
        (Some(a), Some(b)) if a != b => Err(Malformed("XFCC Hash and Cert disagree")),
        (a, b) => Ok(a.or(b)),
    }
}

/// `value` split on `separator` outside double quotes (a backslash escapes inside them).
fn split_unquoted(value: &str, separator: u8) -> Result<Vec<&str>, Malformed> {
    let bytes = value.as_bytes();
    let (mut parts, mut start, mut quoted, mut i) = (Vec::new(), 0, false, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b if b == separator && !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err(Malformed("an unterminated XFCC quote"));
    }
    parts.push(&value[start..]);
    Ok(parts)
}

fn hex_32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// RFC 3986 percent-decoding (`+` is a plus: these are not form bodies).
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two self-signed P-256 certificates (`CN=client-a`, `CN=client-b`).
    const CLIENT_A: &str = concat!(
        "MIIBejCCASGgAwIBAgIUWSkxyWw2h4+hIw4JSmj6Sq495powCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIY2xpZW50",
        "LWEwHhcNMjYxMjA4MDExMzMxWhcNMzYxMjA1MDExMzMxWjATMREwDwYDVQQDDAhjbGllbnQtYTBZMBMGByqGSM49",
        "AgEGCCqGSM49AwEHA0IABM7O+uBleWJ/vLM46bkT0WZt0VSWVWsxQEfxMSvq82R4woFFWhjIcrrj7E4kf5uhFRXY",
        "7ZiFUgmN+aKaTIeTOF6jUzBRMB0GA1UdDgQWBBQ3g/CfLGA5Cgl5D1JiPQwHaTxbSzAfBgNVHSMEGDAWgBQ3g/Cf",
        "LGA5Cgl5D1JiPQwHaTxbSzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIBPt/oLrrRlMTIAf2+Ov",
        "LgXNlGW905CWcdI4EfVDEMjWAiBOKfPzC/SWFMCHpg+E1gsqeu0Bej7UHV/iiUHcTPtXiQ==",
    );
    const CLIENT_B: &str = concat!(
        "MIIBfDCCASGgAwIBAgIUOL/Okax/mJR+0hPdA5JvKYJz7OcwCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIY2xpZW50",
        "LWIwHhcNMjYxMjA4MDExMzMxWhcNMzYxMjA1MDExMzMxWjATMREwDwYDVQQDDAhjbGllbnQtYjBZMBMGByqGSM49",
        "AgEGCCqGSM49AwEHA0IABGOL1ezQppO9+NlBc++Ayl7Bj5c1IPtkOYfDjxbM0YqQGA0IuJQGSwv2FhYA2G2G6RGu",
        "426WRbWglpdv9/lk66ajUzBRMB0GA1UdDgQWBBSDY478LsmwQDUEPJ2nfM9jGu0v8jAfBgNVHSMEGDAWgBSDY478",
        "LsmwQDUEPJ2nfM9jGu0v8jAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDq+K8xRf7wMG3VrBzG",
        "lU1FvbZd2qjh5N+YdG9/suZi/AIhAMQe7nn7mIWiLgZj/bqyeszqaSjutCKGdpCoW6eqbCxz",
    );

    fn der(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    }

    fn pem(der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    fn escaped(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn every_gateway_form_gives_the_certificates_hash() {
        let der = der(CLIENT_A);
        let want: [u8; 32] = digest::digest(&digest::SHA256, &der)
            .as_ref()
            .try_into()
            .expect("32");
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        for (what, value, format) in [
            ("nginx escaped PEM", escaped(&pem(&der)), Format::Pem),
            ("plain PEM", pem(&der).replace('\n', " "), Format::Pem),
            ("Traefik escaped base64", escaped(&b64), Format::Pem),
            ("Caddy base64 DER", b64.clone(), Format::Pem),
            (
                "XFCC Hash",
                format!("By=spiffe://a/b;Hash={hex};Subject=\"CN=x,O=y\""),
                Format::Xfcc,
            ),
            (
                "XFCC Cert",
                format!("Cert=\"{}\";URI=spiffe://c", escaped(&pem(&der))),
                Format::Xfcc,
            ),
            (
                "XFCC both",
                format!(
                    "Hash={};Cert=\"{}\"",
                    hex.to_uppercase(),
                    escaped(&pem(&der))
                ),
                Format::Xfcc,
            ),
        ] {
            assert_eq!(certificate_sha256(&value, format), Ok(Some(want)), "{what}");
        }
        assert_eq!(certificate_sha256("", Format::Pem), Ok(None));
        assert_eq!(certificate_sha256("By=spiffe://a", Format::Xfcc), Ok(None));
    }

    #[test]
    fn hostile_or_ambiguous_values_are_refused() {
        let (der, other) = (der(CLIENT_A), der(CLIENT_B));
        let hex = |d: &[u8]| -> String {
            digest::digest(&digest::SHA256, d)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let two = format!("{}{}", pem(&der), pem(&other));
        for (what, value, format) in [
            ("two certificates", escaped(&two), Format::Pem),
            ("not base64", "not base64!".to_owned(), Format::Pem),
            (
                "base64 of no certificate",
                "aGVsbG8=".to_owned(),
                Format::Pem,
            ),
            ("a bad escape", "%G0".to_owned(), Format::Pem),
            (
                "no end line",
                "-----BEGIN CERTIFICATE-----\nAAAA".to_owned(),
                Format::Pem,
            ),
            (
                "two XFCC elements",
                format!("Hash={},Hash={}", hex(&other), hex(&der)),
                Format::Xfcc,
            ),
            (
                "Hash and Cert disagree",
                format!("Hash={};Cert=\"{}\"", hex(&other), escaped(&pem(&der))),
                Format::Xfcc,
            ),
            ("a short Hash", "Hash=abcd".to_owned(), Format::Xfcc),
            (
                "a repeated key",
                format!("Hash={0};Hash={0}", hex(&der)),
                Format::Xfcc,
            ),
            ("an open quote", "Cert=\"abc".to_owned(), Format::Xfcc),
            ("too long", "A".repeat(MAX_HEADER_BYTES + 1), Format::Pem),
        ] {
            assert!(certificate_sha256(&value, format).is_err(), "{what}");
        }
    }
}
