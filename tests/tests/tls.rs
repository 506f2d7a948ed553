//! TLS and mutual TLS with a CA made here: a client with a certificate the CA signed
//! gets in; one without a certificate, or without TLS, does not.

mod common;

use std::path::Path;

use common::Server;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "vargid test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();

    let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca_cert.pem(),
        server: leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf("test-client", ExtendedKeyUsagePurpose::ClientAuth),
    }
}

async fn info(channel: Result<Channel, tonic::transport::Error>) -> Result<(), String> {
    let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
    FaceServiceClient::new(channel)
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

async fn connect(
    addr: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    endpoint.connect().await
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_signed_certificate() {
    let dir = std::env::temp_dir().join(format!("vargid-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = pki();
    let ca = write(&dir, "ca.pem", &certs.ca_pem);
    let cert = write(&dir, "server.pem", &certs.server.0);
    let key = write(&dir, "server.key", &certs.server.1);
    let mut server = Server::start(&[
        ("VARGID_SERVER__TLS_CERT", &cert),
        ("VARGID_SERVER__TLS_KEY", &key),
        ("VARGID_SERVER__TLS_CLIENT_CA", &ca),
    ]);
    assert!(server
        .wait_for_log("transport=\"mtls\"", std::time::Duration::from_secs(5))
        .or_else(|| server.wait_for_log("transport=mtls", std::time::Duration::from_secs(1)))
        .is_some());
    let addr = server.grpc.clone();
    let trust = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&certs.ca_pem))
            .domain_name("localhost")
    };

    // A client certificate the CA signed: served.
    let with_cert = trust().identity(Identity::from_pem(&certs.client.0, &certs.client.1));
    info(connect(&addr, Some(with_cert)).await)
        .await
        .expect("client with a signed certificate");

    // TLS without a client certificate: refused during the handshake.
    let refused = info(connect(&addr, Some(trust())).await).await;
    assert!(refused.is_err(), "a client without a certificate got in");

    // A certificate from another CA: refused.
    let other = pki();
    let stranger = trust().identity(Identity::from_pem(&other.client.0, &other.client.1));
    assert!(info(connect(&addr, Some(stranger)).await).await.is_err());

    // Plaintext against the TLS port: refused.
    assert!(info(connect(&addr, None).await).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plaintext_off_loopback_needs_the_explicit_opt_out() {
    let out = std::process::Command::new(common::binary())
        .current_dir(common::workspace_root())
        .env("VARGID_SERVER__LISTEN", "0.0.0.0:0")
        .env("VARGID_AUTH__ALLOW_UNAUTHENTICATED_REMOTE", "true")
        .output()
        .expect("running vargid");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow_plaintext_remote"), "{stderr}");
}
