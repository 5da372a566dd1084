//! Client authentication by TLS certificate (RFC 8705 section 2): what a `tls_client_auth`
//! client's certificate must name ([`CertSubject`], matched by [`CertSubject::matches`]) and
//! the certificates a `self_signed_tls_client_auth` client registered ([`registered_certificates`],
//! the `x5c` of its JWK Set).
//!
//! The TLS layer proved the client holds the certificate's key (the handshake signature); the
//! caller validates a `tls_client_auth` chain against its trust anchors. What is decided here is
//! only whether the certificate is the registered client's.

use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::RdnSequence;
use x509_cert::Certificate;

/// The one name a `tls_client_auth` client's certificate must carry (RFC 8705 section 2.1.2:
/// exactly one of these is registered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSubject {
    /// `tls_client_auth_subject_dn`: the subject, in RFC 4514 form (`CN=orders,O=Example`).
    SubjectDn(String),
    /// `tls_client_auth_san_dns`: a dNSName in the subject alternative names.
    SanDns(String),
    /// `tls_client_auth_san_uri`: a uniformResourceIdentifier.
    SanUri(String),
    /// `tls_client_auth_san_ip`: an iPAddress.
    SanIp(IpAddr),
    /// `tls_client_auth_san_email`: an rfc822Name.
    SanEmail(String),
}

/// The longest name registered (RFC 5280's upper bounds are far below).
const MAX_NAME_BYTES: usize = 1024;

impl CertSubject {
    /// The RFC 8705 metadata name it is registered under.
    pub fn field(&self) -> &'static str {
        match self {
            CertSubject::SubjectDn(_) => "tls_client_auth_subject_dn",
            CertSubject::SanDns(_) => "tls_client_auth_san_dns",
            CertSubject::SanUri(_) => "tls_client_auth_san_uri",
            CertSubject::SanIp(_) => "tls_client_auth_san_ip",
            CertSubject::SanEmail(_) => "tls_client_auth_san_email",
        }
    }

    /// The registered value as text.
    pub fn value(&self) -> String {
        match self {
            CertSubject::SubjectDn(s)
            | CertSubject::SanDns(s)
            | CertSubject::SanUri(s)
            | CertSubject::SanEmail(s) => s.clone(),
            CertSubject::SanIp(ip) => ip.to_string(),
        }
    }

    /// Reads `value` registered under `field` (one of [`CertSubject::field`]'s names).
    pub fn parse(field: &str, value: &str) -> Result<CertSubject, String> {
        if value.is_empty() || value.len() > MAX_NAME_BYTES {
            return Err(format!(
                "{field}: empty or longer than {MAX_NAME_BYTES} bytes"
            ));
        }
        let subject = match field {
            "tls_client_auth_subject_dn" => {
                let dn = RdnSequence::from_str(value).map_err(|_| {
                    format!("{field}: {value:?} is not an RFC 4514 name (CN=client,O=Example)")
                })?;
                if dn.0.is_empty() {
                    return Err(format!("{field}: an empty name"));
                }
                CertSubject::SubjectDn(value.to_owned())
            }
            "tls_client_auth_san_dns" => {
                if !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("{field}: {value:?} is not a DNS name"));
                }
                CertSubject::SanDns(value.to_owned())
            }
            "tls_client_auth_san_uri" => {
                if !crate::registration::is_resource_indicator(value) {
                    return Err(format!("{field}: {value:?} is not an absolute URI"));
                }
                CertSubject::SanUri(value.to_owned())
            }
            "tls_client_auth_san_ip" => CertSubject::SanIp(
                value
                    .parse()
                    .map_err(|_| format!("{field}: {value:?} is not an IP address"))?,
            ),
            "tls_client_auth_san_email" => {
                if value.matches('@').count() != 1 || !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(format!("{field}: {value:?} is not an email address"));
                }
                CertSubject::SanEmail(value.to_owned())
            }
            _ => return Err(format!("{field}: not a tls_client_auth name")),
        };
        Ok(subject)
    }

    /// The one name among `fields` (each an RFC 8705 metadata name with its value, if given):
    /// `None` when none is given, an error when more than one is or the one does not parse.
    pub fn from_fields(fields: &[(&str, Option<&str>)]) -> Result<Option<CertSubject>, String> {
        let mut given = fields
            .iter()
            .filter_map(|(field, value)| value.map(|v| (*field, v)));
        match (given.next(), given.next()) {
            (None, _) => Ok(None),
            (Some((field, value)), None) => CertSubject::parse(field, value).map(Some),
            (Some(_), Some(_)) => {
                Err("tls_client_auth: register exactly one certificate name".into())
            }
        }
    }

    /// Whether the certificate (DER) names this subject. A certificate that does not parse
    /// names nothing.
    pub fn matches(&self, certificate: &[u8]) -> bool {
        let Ok(cert) = Certificate::from_der(certificate) else {
            return false;
        };
        let tbs = &cert.tbs_certificate;
        match self {
            CertSubject::SubjectDn(expected) => RdnSequence::from_str(expected)
                .is_ok_and(|expected| same_name(&expected, &tbs.subject)),
            _ => alternative_names(&cert).iter().any(|name| self.names(name)),
        }
    }

    /// Whether one subject alternative name is this one: DNS names and email domains without
    /// regard to ASCII case (RFC 4343, RFC 5280 section 7.5), URIs exactly, addresses by value.
    fn names(&self, name: &GeneralName) -> bool {
        match (self, name) {
            (CertSubject::SanDns(want), GeneralName::DnsName(got)) => {
                want.eq_ignore_ascii_case(got.as_str())
            }
            (CertSubject::SanUri(want), GeneralName::UniformResourceIdentifier(got)) => {
                want == got.as_str()
            }
            (CertSubject::SanEmail(want), GeneralName::Rfc822Name(got)) => {
                match (want.rsplit_once('@'), got.as_str().rsplit_once('@')) {
                    (Some((wl, wd)), Some((gl, gd))) => wl == gl && wd.eq_ignore_ascii_case(gd),
                    _ => false,
                }
            }
            (CertSubject::SanIp(want), GeneralName::IpAddress(got)) => {
                let got = got.as_bytes();
                match want {
                    IpAddr::V4(v4) => got == v4.octets(),
                    IpAddr::V6(v6) => got == v6.octets(),
                }
            }
            _ => false,
        }
    }
}

/// The certificate's subject alternative names; none if the extension is missing or malformed.
fn alternative_names(cert: &Certificate) -> Vec<GeneralName> {
    let extensions = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let mut found = extensions
        .iter()
        .filter(|e| e.extn_id == SubjectAltName::OID);
    match (found.next(), found.next()) {
        // RFC 5280 section 4.2: an extension appears at most once.
        (Some(san), None) => SubjectAltName::from_der(san.extn_value.as_bytes())
            .map(|san| san.0)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Two names equal RDN by RDN, each attribute of one in the other with the same type and a
/// value that matches as LDAP's caseIgnoreMatch does for ASCII (case and runs of spaces
/// ignored; RFC 4518's full preparation is not done, so names beyond ASCII match only when
/// their code points are the same after Unicode lower-casing).
fn same_name(expected: &RdnSequence, got: &RdnSequence) -> bool {
    expected.0.len() == got.0.len()
        && expected.0.iter().zip(&got.0).all(|(want, have)| {
            want.0.len() == have.0.len()
                && want.0.iter().all(|w| {
                    have.0.iter().any(|h| {
                        w.oid == h.oid
                            && match (text(&w.value), text(&h.value)) {
                                (Some(a), Some(b)) => folded(a) == folded(b),
                                _ => false,
                            }
                    })
                })
        })
}

/// An attribute value as text, for the string types names are written in.
fn text(value: &x509_cert::der::Any) -> Option<&str> {
    match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::PrintableString => PrintableStringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok().map(|s| s.as_str()),
        Tag::TeletexString => TeletexStringRef::try_from(value).ok().map(|s| s.as_str()),
        _ => None,
    }
}

fn folded(value: &str) -> String {
    value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The most certificates one client registers.
const MAX_CERTIFICATES: usize = 16;

/// The certificates a `self_signed_tls_client_auth` client registered: the first certificate
/// of each key's `x5c` (RFC 7517 section 4.7: base64, not base64url, of the DER) in its JWK
/// Set. A key without `x5c` is skipped; a set with no certificate, or one that does not
/// parse, is refused.
pub fn registered_certificates(jwks: &str) -> Result<Vec<Vec<u8>>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Key>,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(default)]
        x5c: Vec<String>,
    }
    let set: Set = serde_json::from_str(jwks).map_err(|e| format!("jwks: {e}"))?;
    let mut certificates = Vec::new();
    for (i, key) in set.keys.iter().enumerate() {
        let Some(first) = key.x5c.first() else {
            continue;
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(first)
            .map_err(|_| format!("jwks: keys[{i}].x5c[0] is not base64"))?;
        Certificate::from_der(&der)
            .map_err(|_| format!("jwks: keys[{i}].x5c[0] is not an X.509 certificate"))?;
        certificates.push(der);
    }
    if certificates.is_empty() {
        return Err("jwks: no key carries a certificate (x5c)".into());
    }
    if certificates.len() > MAX_CERTIFICATES {
        return Err(format!("jwks: more than {MAX_CERTIFICATES} certificates"));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 certificate with subject `CN=orders client,O=Example Corp,C=DE`
    /// (PrintableString values) and the alternative names `DNS:orders.example`,
    /// `URI:spiffe://example/orders`, `IP:10.1.2.3` and `email:ops@Example.COM`.
    const CERT: &str = concat!(
        "MIICGzCCAcGgAwIBAgIUSvs7N0EX71Ff4mDUJQ8KRLOb7tIwCgYIKoZIzj0EAwIwPDELMAkGA1UEBhMCREUxFTAT",
        "BgNVBAoTDEV4YW1wbGUgQ29ycDEWMBQGA1UEAxMNb3JkZXJzIGNsaWVudDAeFw0yNjEyMDcxMjQyNDlaFw0zNjEy",
        "MDQxMjQyNDlaMDwxCzAJBgNVBAYTAkRFMRUwEwYDVQQKEwxFeGFtcGxlIENvcnAxFjAUBgNVBAMTDW9yZGVycyBj",
        "bGllbnQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR0JGsbdJHnpak+lYntvoivak/5o6NBXLUHCDDY9GofL0OH",
        "+vdkeirJGAY7eVu8iWC310PEflNQijhUvPS9Iq2ho4GgMIGdMAwGA1UdEwEB/wQCMAAwSQYDVR0RBEIwQIIOb3Jk",
        "ZXJzLmV4YW1wbGWGF3NwaWZmZTovL2V4YW1wbGUvb3JkZXJzhwQKAQIDgQ9vcHNARXhhbXBsZS5DT00wDgYDVR0P",
        "AQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMCMB0GA1UdDgQWBBTeXElfQQIEpP9iV1Lxvkx2momDZjAKBggq",
        "hkjOPQQDAgNIADBFAiEAtJxaYiQjfqm44+RwQNMNpL3K+gIHTGSb7faYFBH/MqACIDYiuZBMlyHIzV74hqriPmj8",
        "/hoR78hN0/EsompktwKc",
    );

    fn cert() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(CERT)
            .unwrap_or_default()
    }

    #[test]
    fn registered_names_are_checked() {
        for (field, value) in [
            ("tls_client_auth_subject_dn", "CN=orders,O=Example"),
            ("tls_client_auth_san_dns", "orders.example"),
            ("tls_client_auth_san_uri", "spiffe://example/orders"),
            ("tls_client_auth_san_ip", "10.1.2.3"),
            ("tls_client_auth_san_ip", "2001:db8::1"),
            ("tls_client_auth_san_email", "ops@example.com"),
        ] {
            let subject = CertSubject::parse(field, value).unwrap();
            assert_eq!((subject.field(), subject.value().as_str()), (field, value));
        }
        for (field, value) in [
            ("tls_client_auth_subject_dn", "not a name"),
            ("tls_client_auth_subject_dn", ""),
            ("tls_client_auth_san_dns", "a b"),
            ("tls_client_auth_san_uri", "orders"),
            ("tls_client_auth_san_ip", "10.1.2"),
            ("tls_client_auth_san_email", "ops"),
            ("tls_client_auth_san_email", "a@b@c"),
            ("tls_client_auth_other", "x"),
        ] {
            assert!(CertSubject::parse(field, value).is_err(), "{field}={value}");
        }
    }

    #[test]
    fn a_certificate_names_what_it_carries() {
        let cert = cert();
        let named = |field: &str, value: &str| {
            CertSubject::parse(field, value)
                .unwrap_or_else(|e| panic!("{e}"))
                .matches(&cert)
        };
        assert!(named(
            "tls_client_auth_subject_dn",
            "CN=orders client,O=Example Corp,C=DE"
        ));
        assert!(named(
            "tls_client_auth_subject_dn",
            "cn=Orders Client,o=example corp,c=de"
        ));
        assert!(!named(
            "tls_client_auth_subject_dn",
            "CN=orders client,O=Example Corp"
        ));
        assert!(!named(
            "tls_client_auth_subject_dn",
            "C=DE,O=Example Corp,CN=orders client"
        ));
        assert!(named("tls_client_auth_san_dns", "orders.example"));
        assert!(named("tls_client_auth_san_dns", "ORDERS.example"));
        assert!(!named("tls_client_auth_san_dns", "billing.example"));
        assert!(named("tls_client_auth_san_uri", "spiffe://example/orders"));
        assert!(!named("tls_client_auth_san_uri", "spiffe://example/Orders"));
        assert!(named("tls_client_auth_san_ip", "10.1.2.3"));
        assert!(!named("tls_client_auth_san_ip", "10.1.2.4"));
        assert!(!named("tls_client_auth_san_ip", "::ffff:10.1.2.3"));
        assert!(named("tls_client_auth_san_email", "ops@example.com"));
        assert!(!named("tls_client_auth_san_email", "OPS@example.com"));
        // The URI is not a DNS name, nor the address an email.
        assert!(!named("tls_client_auth_san_dns", "spiffe://example/orders"));
    }

    #[test]
    fn garbage_names_nothing_and_registers_nothing() {
        let dn = CertSubject::parse("tls_client_auth_subject_dn", "CN=x").unwrap();
        assert!(!dn.matches(b""));
        assert!(!dn.matches(b"\x30\x82\xff\xff"));
        assert!(!dn.matches(&cert()[..100]));
        assert!(registered_certificates(r#"{"keys":[{"kty":"EC"}]}"#).is_err());
        assert!(registered_certificates(r#"{"keys":[{"x5c":["!!"]}]}"#).is_err());
        assert!(registered_certificates(r#"{"keys":[{"x5c":["AAAA"]}]}"#).is_err());
        assert!(registered_certificates("[]").is_err());
    }

    #[test]
    fn names_fold_case_and_spaces_but_not_order_or_count() {
        let parse = |s: &str| RdnSequence::from_str(s).unwrap();
        let a = parse("CN=Orders  Client,O=Example");
        assert!(same_name(&parse("cn=orders client,o=EXAMPLE"), &a));
        assert!(!same_name(&parse("O=Example,CN=Orders Client"), &a));
        assert!(!same_name(&parse("CN=Orders Client"), &a));
        assert!(!same_name(&parse("CN=Orders Client,O=Example,C=DE"), &a));
        assert!(!same_name(&parse("CN=Orders Clients,O=Example"), &a));
    }
}
