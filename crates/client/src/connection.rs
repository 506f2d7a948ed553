//! Where the server is and how to reach it: address, TLS and API key, from flags or
//! `VARGID_*` variables (the server's settings use `VARGID_<SECTION>__<KEY>`, so the
//! two never collide).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vargid_proto::v1::face_service_client::FaceServiceClient;

use crate::ClientError;

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The server's gRPC address (host:port, or a URL).
    #[arg(long, env = "VARGID_ADDRESS", default_value = "127.0.0.1:50051")]
    pub address: String,
    /// API key, sent as `authorization: Bearer KEY` (servers with [auth] keys).
    #[arg(long, env = "VARGID_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM file of the CA that signed the server's certificate: connect over TLS.
    #[arg(long, env = "VARGID_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the address's host).
    #[arg(long, env = "VARGID_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// PEM client certificate, for servers that require mutual TLS (with --client-key).
    #[arg(long, env = "VARGID_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "VARGID_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// Seconds one call may take before it is abandoned.
    #[arg(long, env = "VARGID_TIMEOUT_S", default_value_t = 60)]
    pub timeout_s: u64,
}

/// Adds the API key to every call.
#[derive(Clone)]
pub struct ApiKey(Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = FaceServiceClient<InterceptedService<Channel, ApiKey>>;

fn read(path: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(ClientError::io(path))
}

impl ConnectArgs {
    fn uri(&self) -> String {
        if self.address.contains("://") {
            self.address.clone()
        } else if self.ca_cert.is_some() {
            format!("https://{}", self.address)
        } else {
            format!("http://{}", self.address)
        }
    }

    /// A connected client; fails at once when the server cannot be reached.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        let uri = self.uri();
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| ClientError::Config(format!("--address {:?}: {e}", self.address)))?
            .timeout(Duration::from_secs(self.timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &self.ca_cert {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let Some(domain) = &self.tls_domain {
                tls = tls.domain_name(domain.clone());
            }
            match (&self.client_cert, &self.client_key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
                }
                (None, None) => {}
                _ => {
                    return Err(ClientError::Config(
                        "--client-cert and --client-key go together".into(),
                    ))
                }
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| ClientError::Connect {
                    address: uri.clone(),
                    source,
                })?;
        } else if uri.starts_with("https://") {
            return Err(ClientError::Config(
                "an https:// address needs --ca-cert (the CA that signed the server's certificate)"
                    .into(),
            ));
        }
        let key =
            match &self.api_key {
                Some(k) => Some(format!("Bearer {}", k.trim()).parse().map_err(|_| {
                    ClientError::Config("--api-key: not a valid header value".into())
                })?),
                None => None,
            };
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                address: uri,
                source,
            })?;
        Ok(FaceServiceClient::with_interceptor(channel, ApiKey(key))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }
}
