//! Client authentication by TLS certificate at `POST /token` (RFC 8705 section 2), with tessera
//! terminating TLS: `tls_client_auth` (a chain to the configured client CA and the registered
//! name, by subject DN or by DNS name) and `self_signed_tls_client_auth` (a certificate the client
//! registered in its JWK Set's `x5c`). The certificates are made with openssl for each run; the
//! client is rustls over a real socket, with and without a certificate.

use std::process::Command;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;

use super::token::{form, Issuing, FORM, ORDERS};
use super::*;

/// openssl in `dir`, expected to succeed.
fn openssl(dir: &Scratch, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("openssl is missing: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EXTENSIONS: &str = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
    [ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign\n\
    [server]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = IP:127.0.0.1\n\
    keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
    [orders]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = DNS:orders.example\n\
    keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n\
    [billing]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = DNS:billing.example\n\
    keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n\
    [serveronly]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = DNS:orders.example\n\
    keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n";

/// A self-signed certificate `NAME.pem` with key `NAME-key.pem`, subject `subject`, the
/// extensions of section `section`.
fn self_signed(dir: &Scratch, name: &str, subject: &str, section: &str) {
    let (key, cert) = (format!("{name}-key.pem"), format!("{name}.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-config",
            "x509.cnf",
            "-extensions",
            section,
            "-subj",
            subject,
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    );
}

/// `NAME.pem` issued by the CA `ca`, with the extensions of section `section`.
fn issued(dir: &Scratch, ca: &str, name: &str, subject: &str, section: &str) {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let serial = format!(
        "0x{:x}{:08x}",
        std::process::id(),
        SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (key, csr, cert) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-config",
            "x509.cnf",
            "-subj",
            subject,
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}-key.pem"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "1",
            "-extfile",
            "x509.cnf",
            "-extensions",
            section,
            "-out",
            &cert,
        ],
    );
}

/// A JWK Set with the public key of `NAME.pem` and the certificate in `x5c`.
fn jwks_with_certificate(dir: &Scratch, name: &str) -> PathBuf {
    let pem = std::fs::read(dir.join(&format!("{name}.pem"))).expect("certificate");
    let der = CertificateDer::from_pem_slice(&pem).expect("PEM certificate");
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            &format!("{name}-key.pem"),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            &format!("{name}-pub.der"),
        ],
    );
    let spki = std::fs::read(dir.join(&format!("{name}-pub.der"))).expect("public key");
    // An uncompressed P-256 point closes the SubjectPublicKeyInfo: 04 || x || y.
    let point = &spki[spki.len() - 65..];
    assert_eq!(point[0], 4);
    let set = json!({"keys": [{
        "kty": "EC",
        "crv": "P-256",
        "kid": name,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        "x5c": [STANDARD.encode(der.as_ref())],
    }]});
    dir.write(&format!("{name}-jwks.json"), &set.to_string())
}

/// `POST /token` over TLS as `NAME.pem` (or without a certificate): the status and the body.
async fn token_over_tls(
    daemon: &Daemon,
    dir: &Scratch,
    certificate: Option<&str>,
    params: &[(&str, &str)],
) -> (u16, Value) {
    let request = Request::post("/token")
        .header("host", "127.0.0.1")
        .header("content-type", FORM)
        .body(Full::new(Bytes::from(form(params))))
        .expect("request");
    over_tls(daemon, dir, certificate, request).await
}

/// `request` over TLS as `NAME.pem` (or without a certificate): the status and the body.
async fn over_tls(
    daemon: &Daemon,
    dir: &Scratch,
    certificate: Option<&str>,
    request: Request<Full<Bytes>>,
) -> (u16, Value) {
    try_over_tls(daemon, dir, certificate, request)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`over_tls`], or why the connection failed.
async fn try_over_tls(
    daemon: &Daemon,
    dir: &Scratch,
    certificate: Option<&str>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Value), String> {
    let pem = std::fs::read(dir.join("server.pem")).expect("server certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).expect("PEM"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match certificate {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let chain = std::fs::read(dir.join(&format!("{name}.pem"))).expect("cert");
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
                .collect::<Result<_, _>>()
                .expect("PEM chain");
            let key = PrivateKeyDer::from_pem_file(dir.join(&format!("{name}-key.pem")))
                .expect("PEM key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
    };
    let tcp = TcpStream::connect(daemon.addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(Duration::from_secs(20), send.send_request(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("request: {e}"))?;
    let reply = collect(response).await;
    Ok((
        reply.status,
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8705_clients_authenticate_with_their_tls_certificates() {
    let certs = Scratch::new("serve-mtls-certs");
    certs.write("x509.cnf", EXTENSIONS);
    self_signed(&certs, "server", "/CN=127.0.0.1", "server");
    self_signed(&certs, "ca", "/CN=Client CA", "ca");
    self_signed(&certs, "rogue-ca", "/CN=Client CA", "ca");
    issued(&certs, "ca", "orders", "/O=Example/CN=orders", "orders");
    issued(&certs, "ca", "billing", "/O=Example/CN=billing", "billing");
    issued(
        &certs,
        "ca",
        "server-only",
        "/O=Example/CN=orders",
        "serveronly",
    );
    issued(
        &certs,
        "rogue-ca",
        "forged",
        "/O=Example/CN=orders",
        "orders",
    );
    self_signed(&certs, "device", "/CN=device-7", "orders");
    self_signed(&certs, "other-device", "/CN=device-7", "orders");

    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_auth = \"request\"\nclient_ca = \"{}\"\n",
        certs.join("server.pem").display(),
        certs.join("server-key.pem").display(),
        certs.join("ca.pem").display(),
    );
    let issuing = Issuing::new("mtls", Some("https://tessera.example"), &tls);
    let cc = ["--grant", "client_credentials", "--scope", "orders:read"];
    let add = |id: &str, extra: &[&str]| {
        let mut args = vec!["add", "--id", id, "--audience", ORDERS];
        args.extend_from_slice(&cc);
        args.extend_from_slice(extra);
        let added = issuing.clients_ok(&args);
        assert!(added.get("client_secret").is_none(), "{added}");
    };
    add(
        "by-dns",
        &[
            "--auth",
            "tls_client_auth",
            "--tls-san-dns",
            "orders.example",
        ],
    );
    add(
        "by-dn",
        &[
            "--auth",
            "tls_client_auth",
            "--tls-subject-dn",
            "CN=orders,O=Example",
        ],
    );
    let device_jwks = jwks_with_certificate(&certs, "device");
    add(
        "device",
        &[
            "--auth",
            "self_signed_tls_client_auth",
            "--jwks",
            path_str(&device_jwks),
        ],
    );
    let secret = issuing.clients_ok(&[
        "add",
        "--id",
        "by-secret",
        "--auth",
        "client_secret_post",
        "--audience",
        ORDERS,
        "--grant",
        "client_credentials",
    ])["client_secret"]
        .as_str()
        .map(str::to_owned)
        .expect("a secret");
    let daemon = issuing.serve();
    assert!(daemon.url.starts_with("https://"), "{}", daemon.url);

    let ask = |id: &'static str| [("grant_type", "client_credentials"), ("client_id", id)];
    // RFC 8705 section 3: a token issued to a client that authenticated with its certificate
    // is bound to it, `cnf.x5t#S256` the SHA-256 of its DER; one issued for a secret is not.
    let thumbprint = |name: &str| {
        let pem = std::fs::read(certs.join(&format!("{name}.pem"))).expect("certificate");
        let der = CertificateDer::from_pem_slice(&pem).expect("PEM certificate");
        URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref())
    };
    let issued_to = |(status, body): (u16, Value), id: &str, bound: Option<&str>| {
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["token_type"], "Bearer", "{body}");
        let token = body["access_token"].as_str().expect("access_token");
        let claims = b64_json(token.split('.').nth(1).expect("a JWT"));
        assert_eq!(
            (claims["client_id"].as_str(), claims["sub"].as_str()),
            (Some(id), Some(id))
        );
        assert_eq!(
            claims["cnf"]["x5t#S256"].as_str().map(str::to_owned),
            bound.map(thumbprint),
            "{id}: {claims}"
        );
    };
    let refused = |(status, body): (u16, Value), what: &str| {
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {body}"
        );
    };

    // tls_client_auth: the CA's certificate with the registered DNS name, or subject.
    issued_to(
        token_over_tls(&daemon, &certs, Some("orders"), &ask("by-dns")).await,
        "by-dns",
        Some("orders"),
    );
    issued_to(
        token_over_tls(&daemon, &certs, Some("orders"), &ask("by-dn")).await,
        "by-dn",
        Some("orders"),
    );
    // Another name from the same CA; the same name from a CA of the same subject that is not
    // the configured one; a certificate not meant for clients; no certificate at all.
    refused(
        token_over_tls(&daemon, &certs, Some("billing"), &ask("by-dns")).await,
        "another name",
    );
    refused(
        token_over_tls(&daemon, &certs, Some("billing"), &ask("by-dn")).await,
        "another subject",
    );
    refused(
        token_over_tls(&daemon, &certs, Some("forged"), &ask("by-dns")).await,
        "a rogue CA",
    );
    refused(
        token_over_tls(&daemon, &certs, Some("server-only"), &ask("by-dns")).await,
        "serverAuth only",
    );
    refused(
        token_over_tls(&daemon, &certs, None, &ask("by-dns")).await,
        "no certificate",
    );
    // A self-signed certificate with the registered name is no CA's.
    refused(
        token_over_tls(&daemon, &certs, Some("device"), &ask("by-dns")).await,
        "self-signed for tls_client_auth",
    );

    // self_signed_tls_client_auth: exactly the registered certificate.
    issued_to(
        token_over_tls(&daemon, &certs, Some("device"), &ask("device")).await,
        "device",
        Some("device"),
    );
    refused(
        token_over_tls(&daemon, &certs, Some("other-device"), &ask("device")).await,
        "another self-signed certificate of the same subject and key type",
    );
    refused(
        token_over_tls(&daemon, &certs, Some("orders"), &ask("device")).await,
        "a CA-issued certificate for a self-signed client",
    );
    refused(
        token_over_tls(&daemon, &certs, None, &ask("device")).await,
        "no certificate",
    );

    // A certificate authenticates no client registered for a secret, and a secret still works
    // on a connection that presented a certificate.
    refused(
        token_over_tls(&daemon, &certs, Some("orders"), &ask("by-secret")).await,
        "a secret client by certificate",
    );
    refused(
        token_over_tls(&daemon, &certs, Some("orders"), &ask("nobody")).await,
        "an unknown client",
    );
    issued_to(
        token_over_tls(
            &daemon,
            &certs,
            Some("orders"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "by-secret"),
                ("client_secret", &secret),
            ],
        )
        .await,
        "by-secret",
        None,
    );
    let discovery = Request::get("/.well-known/oauth-authorization-server")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, discovery) = over_tls(&daemon, &certs, None, discovery).await;
    assert_eq!(status, 200, "{discovery}");
    let methods = discovery["token_endpoint_auth_methods_supported"].clone();
    assert_eq!(
        discovery["tls_client_certificate_bound_access_tokens"], true,
        "{discovery}"
    );
    for method in ["tls_client_auth", "self_signed_tls_client_auth"] {
        assert!(
            methods
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == method)),
            "{methods}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_require_refuses_a_handshake_without_a_certificate() {
    let certs = Scratch::new("serve-mtls-require");
    certs.write("x509.cnf", EXTENSIONS);
    self_signed(&certs, "server", "/CN=127.0.0.1", "server");
    self_signed(&certs, "device", "/CN=device-7", "orders");
    certs.write(
        "tessera.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"server.pem\"\n\
             key = \"server-key.pem\"\nclient_auth = \"require\"\n\
             [engine]\nworkers = 1\npin_cores = false\n\
             [[issuers]]\nissuer = \"{ISS}\"\njwks_file = \"{}\"\n",
            root().join("examples/jwks.json").display()
        ),
    );
    let daemon = Daemon::spawn(tessera(&[
        "serve",
        "--config",
        path_str(&certs.join("tessera.toml")),
    ]));
    let ready = || {
        Request::get("/readyz")
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let (status, _) = over_tls(&daemon, &certs, Some("device"), ready()).await;
    assert_eq!(status, 200);
    // TLS 1.3: the client finishes its side first; the server's alert ends the connection
    // before any answer.
    let without = try_over_tls(&daemon, &certs, None, ready()).await;
    assert!(without.is_err(), "{without:?}");
}

#[test]
fn client_ca_without_client_certificates_is_refused() {
    let dir = Scratch::new("serve-mtls-config");
    dir.write(
        "tessera.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
         client_ca = \"ca.pem\"\n",
    );
    let out = run(
        tessera(&["config", "check", path_str(&dir.join("tessera.toml"))]),
        b"",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.tls.client_ca"), "{stderr}");
}

/// The base64url SHA-256 of `NAME.pem`'s DER: its `cnf.x5t#S256`.
fn x5t(dir: &Scratch, name: &str) -> String {
    let pem = std::fs::read(dir.join(&format!("{name}.pem"))).expect("certificate");
    let der = CertificateDer::from_pem_slice(&pem).expect("PEM certificate");
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref())
}

/// `/v1/authz` as nginx asks it, for GET /orders/1 with `Bearer token`, plus `extra` headers.
async fn authz_with(daemon: &Daemon, token: &str, extra: &[(&str, &str)]) -> Reply {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("x-original-method", "GET"),
        ("x-original-uri", "/orders/1"),
        ("authorization", bearer.as_str()),
    ];
    headers.extend_from_slice(extra);
    daemon.call("GET", "/v1/authz", &headers, "").await
}

#[tokio::test]
async fn certificate_bound_tokens_pass_only_with_their_certificate_from_the_gateway() {
    let certs = Scratch::new("serve-mtls-bound");
    certs.write("x509.cnf", EXTENSIONS);
    self_signed(&certs, "client", "/CN=client", "orders");
    self_signed(&certs, "other", "/CN=client", "orders");
    let pem = std::fs::read_to_string(certs.join("client.pem")).expect("PEM");
    let escaped: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
    let hex: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let setup = Setup::new("mtls-bound");
    let bound = setup
        .issuer
        .sign(claims(json!({"cnf": {"x5t#S256": x5t(&certs, "client")}})));
    let other = setup
        .issuer
        .sign(claims(json!({"cnf": {"x5t#S256": x5t(&certs, "other")}})));
    let plain = setup.issuer.sign(claims(json!({})));

    // nginx: `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`
    let nginx = setup.start(
        "",
        "workers = 1",
        "[authz.certificate]\nsource = \"header\"\nheader = \"X-SSL-Client-Cert\"\n[log]\nlevel = \"debug\"\n",
    );
    let cert = [("x-ssl-client-cert", escaped.as_str())];
    let reply = authz_with(&nginx, &bound, &cert).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("x-auth-cnf-x5t"),
        Some(x5t(&certs, "client").as_str())
    );
    assert_eq!(reply.header("x-auth-subject"), Some("alice"));
    // Another certificate's token, no certificate, an empty one (nginx without a client
    // certificate): refused as invalid tokens.
    for (what, token, headers) in [
        ("another certificate's token", &other, &cert[..]),
        ("no certificate header", &bound, &[][..]),
        (
            "an empty certificate header",
            &bound,
            &[("x-ssl-client-cert", "")][..],
        ),
    ] {
        let reply = authz_with(&nginx, token, headers).await;
        assert_bearer(
            &reply,
            401,
            "Bearer realm=\"tessera\", error=\"invalid_token\"",
        );
        assert_eq!(reply.status, 401, "{what}");
    }
    // Two headers (one may be the client's), or one that is not a certificate: 400.
    let twice = [cert[0], cert[0]];
    assert_eq!(authz_with(&nginx, &bound, &twice).await.status, 400);
    let garbage = [("x-ssl-client-cert", "not-a-certificate")];
    assert_eq!(authz_with(&nginx, &bound, &garbage).await.status, 400);
    // An unbound token needs no certificate; a bound one never passes as unbound.
    assert_eq!(authz_with(&nginx, &plain, &[]).await.status, 200);
    assert_eq!(
        authz_with(&nginx, &plain, &[])
            .await
            .header("x-auth-cnf-x5t"),
        None
    );
    let log = nginx.stderr();
    for cause in ["certificate_mismatch", "no_client_certificate"] {
        assert!(log.contains(cause), "no {cause:?} in the log:\n{log}");
    }

    // Envoy: X-Forwarded-Client-Cert, by Hash or by Cert, of one element only.
    let envoy = setup.start(
        "",
        "workers = 1",
        "[authz.certificate]\nsource = \"xfcc\"\n",
    );
    for xfcc in [
        format!("By=spiffe://mesh/api;Hash={hex};Subject=\"CN=client\""),
        format!("Cert=\"{escaped}\""),
    ] {
        let reply = authz_with(&envoy, &bound, &[("x-forwarded-client-cert", &xfcc)]).await;
        assert_eq!(reply.status, 200, "{xfcc}: {reply:?}");
    }
    let appended = format!("Hash={hex},Hash={hex}");
    let reply = authz_with(&envoy, &bound, &[("x-forwarded-client-cert", &appended)]).await;
    assert_eq!(reply.status, 400, "several XFCC elements: {reply:?}");
    // The nginx header means nothing to this daemon.
    let reply = authz_with(&envoy, &bound, &cert).await;
    assert_eq!(reply.status, 401, "{reply:?}");

    // Without a configured source, certificate-bound tokens are refused.
    let none = setup.start("", "workers = 1", "");
    assert_eq!(authz_with(&none, &bound, &cert).await.status, 401);

    // tessera terminating TLS: the connection's certificate.
    self_signed(&certs, "server", "/CN=127.0.0.1", "server");
    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_auth = \"request\"\n",
        certs.join("server.pem").display(),
        certs.join("server-key.pem").display(),
    );
    let direct = setup.start(
        &tls,
        "workers = 1",
        "[authz.certificate]\nsource = \"tls\"\n",
    );
    let ask = |token: &str| {
        Request::get("/v1/authz")
            .header("host", "127.0.0.1")
            .header("x-original-method", "GET")
            .header("x-original-uri", "/orders/1")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let status = |(status, _): (u16, Value)| status;
    assert_eq!(
        status(over_tls(&direct, &certs, Some("client"), ask(&bound)).await),
        200
    );
    assert_eq!(
        status(over_tls(&direct, &certs, Some("other"), ask(&bound)).await),
        401
    );
    assert_eq!(
        status(over_tls(&direct, &certs, None, ask(&bound)).await),
        401
    );
    // A header does not stand in for the connection's certificate.
    let mut forged = ask(&bound);
    forged
        .headers_mut()
        .insert("x-ssl-client-cert", escaped.parse().expect("value"));
    assert_eq!(status(over_tls(&direct, &certs, None, forged).await), 401);
}
