//! `tessera serve` with TLS: a certificate made with openssl for this test, ALPN offering HTTP/2
//! and HTTP/1.1, and both protocols answering over it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls;

use testkit::{Daemon, Scratch};

/// The daemon and the folder with its certificate, removed after it is killed.
struct Served {
    daemon: Daemon,
    dir: Scratch,
}

/// A self-signed certificate for 127.0.0.1 and a daemon serving with it.
fn start() -> Served {
    let dir = Scratch::new("tls");
    // A leaf certificate (not a CA: rustls refuses a CA as the server's certificate).
    dir.write(
        "openssl.cnf",
        "[req]\ndistinguished_name = dn\nx509_extensions = leaf\nprompt = no\n\
         [dn]\nCN = 127.0.0.1\n\
         [leaf]\nbasicConstraints = critical, CA:FALSE\nsubjectAltName = IP:127.0.0.1\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-config",
            "openssl.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir.path())
        .output()
        .expect("openssl is missing: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.write(
        "tessera.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
             [engine]\nworkers = 1\npin_cores = false\n\
             [[issuers]]\nissuer = \"https://issuer.example\"\njwks_file = \"{}\"\n",
            root.join("examples/jwks.json").display()
        ),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args(["serve", "--config"])
        .arg(dir.join("tessera.toml"));
    let daemon = Daemon::spawn(command);
    assert!(daemon.url.starts_with("https://"), "{}", daemon.url);
    Served { daemon, dir }
}

async fn get(served: &Served, alpn: &[u8], path: &str) -> (Vec<u8>, u16, hyper::Version) {
    let pem = std::fs::read(served.dir.join("cert.pem")).expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(served.daemon.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let request = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = if alpn == b"h2" {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        send.send_request(request).await.expect("h2 request")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        send.send_request(request).await.expect("h1 request")
    };
    let status = response.status().as_u16();
    let version = response.version();
    let _ = response.into_body().collect().await.expect("body");
    (negotiated.unwrap_or_default(), status, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http2_and_http1_by_alpn() {
    let served = start();
    let (alpn, status, version) =
        tokio::time::timeout(Duration::from_secs(20), get(&served, b"h2", "/readyz"))
            .await
            .expect("h2 in time");
    assert_eq!(
        (alpn.as_slice(), status, version),
        (&b"h2"[..], 200, hyper::Version::HTTP_2)
    );
    let (alpn, status, version) = tokio::time::timeout(
        Duration::from_secs(20),
        get(&served, b"http/1.1", "/healthz"),
    )
    .await
    .expect("http/1.1 in time");
    assert_eq!(
        (alpn.as_slice(), status, version),
        (&b"http/1.1"[..], 200, hyper::Version::HTTP_11)
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut plain = tokio::net::TcpStream::connect(served.daemon.addr)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP answered on the TLS port"
    );
}
