//! TLS listeners: `mqtts` (MQTT only, client certificate required, no ALPN negotiated) and
//! `tls`, IoT Core's port 443, which reads the ClientHello first and dispatches on ALPN:
//!
//! | ALPN              | what follows                                   |
//! |-------------------|------------------------------------------------|
//! | `x-amzn-mqtt-ca`  | MQTT, client certificate required              |
//! | `x-amzn-http-ca`  | HTTPS, client certificate required: iot-data (Publish, the shadow API) as the certificate's principal |
//! | `mqtt`            | MQTT, custom authorizer fields in the CONNECT username |
//! | `http/1.1`, none  | HTTP: WebSocket `/mqtt` (SigV4 or custom authorizer), SigV4-signed control plane |

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use futures_util::FutureExt;
use rustls::server::{Acceptor, ClientHello};
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{info, warn};

use super::{http, websocket};
use crate::auth::certificate::RegistryVerifier;
use crate::auth::{Identity, PolicyStore, Transport};
use crate::broker::Broker;
use crate::connection::{self, gated, opening_step, Abandoned};
use crate::metrics::Listener;
use crate::pki::{ServerIdentity, TlsMaterialError};
use crate::registry::{identity_of_der, CertificateIdentity, Registry};

pub const ALPN_MQTT_CERTIFICATE: &[u8] = b"x-amzn-mqtt-ca";
pub const ALPN_HTTP_CERTIFICATE: &[u8] = b"x-amzn-http-ca";
pub const ALPN_MQTT_CUSTOM_AUTH: &[u8] = b"mqtt";
pub const ALPN_HTTP: &[u8] = b"http/1.1";

/// Server configurations, one per kind of client authentication.
pub struct TlsConfigs {
    /// Client certificate required (mqtts, ALPN `x-amzn-mqtt-ca`, ALPN `x-amzn-http-ca`):
    /// one verifier for all three.
    certificate: Arc<ServerConfig>,
    certificate_alpn: Arc<ServerConfig>,
    certificate_http: Arc<ServerConfig>,
    /// No client certificate (ALPN `mqtt` and HTTP): authentication happens inside.
    custom_auth: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

impl TlsConfigs {
    pub fn new(
        identity: &ServerIdentity,
        registry: Arc<Registry>,
        policies: Arc<PolicyStore>,
    ) -> Result<TlsConfigs, TlsMaterialError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(RegistryVerifier::new(
            registry,
            policies,
            provider.signature_verification_algorithms,
        ));
        let build = |client_auth: Option<Arc<RegistryVerifier>>, alpn: &[&[u8]]| {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring supports TLS 1.2 and 1.3");
            let builder = match client_auth {
                Some(verifier) => builder.with_client_cert_verifier(verifier),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder
                .with_single_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|error| TlsMaterialError::Invalid {
                    path: "server certificate".into(),
                    message: error.to_string(),
                })?;
            config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
            Ok::<_, TlsMaterialError>(Arc::new(config))
        };
        Ok(TlsConfigs {
            certificate: build(Some(verifier.clone()), &[])?,
            certificate_alpn: build(Some(verifier.clone()), &[ALPN_MQTT_CERTIFICATE])?,
            certificate_http: build(Some(verifier), &[ALPN_HTTP_CERTIFICATE])?,
            custom_auth: build(None, &[ALPN_MQTT_CUSTOM_AUTH])?,
            http: build(None, &[ALPN_HTTP])?,
        })
    }
}

/// What the `tls` port does with a connection, from the ALPN protocols the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    MqttWithCertificate,
    HttpWithCertificate,
    MqttWithCustomAuth,
    Http,
}

/// IoT Core's order of preference: a client offering `x-amzn-mqtt-ca` wants certificate
/// MQTT even if it lists others too; one offering `x-amzn-http-ca` wants certificate
/// HTTPS (its other offers, `http/1.1` say, are the HTTP client's defaults).
pub fn dispatch(offered: &[&[u8]]) -> Dispatch {
    if offered.contains(&ALPN_MQTT_CERTIFICATE) {
        Dispatch::MqttWithCertificate
    } else if offered.contains(&ALPN_HTTP_CERTIFICATE) {
        Dispatch::HttpWithCertificate
    } else if offered.contains(&ALPN_MQTT_CUSTOM_AUTH) {
        Dispatch::MqttWithCustomAuth
    } else {
        Dispatch::Http
    }
}

/// Serves one connection on the `mqtts` port.
///
/// The handshake is boxed (its state is large and needed once) and followed by the
/// connection with `then`, not in an `async` block: there the TLS stream, once bound to a
/// name, would keep its room in the future next to the connection it moved into.
pub fn serve_mqtts(
    broker: Arc<Broker>,
    configs: Arc<TlsConfigs>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let limit = broker.config.limits.handshake_timeout;
    let handshake = mqtts_handshake(configs, stream, peer, limit, shutdown.clone());
    gated(&broker, Box::pin(handshake)).then(move |accepted| match accepted {
        Some((tls, identity)) => Either::Left(connection::serve(
            broker,
            tls,
            peer,
            shutdown,
            Listener::Mqtts,
            identity,
        )),
        None => Either::Right(std::future::ready(())),
    })
}

async fn mqtts_handshake(
    configs: Arc<TlsConfigs>,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(TlsStream<TcpStream>, Identity)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(configs.certificate.clone());
    let accepted = opening_step(limit, &mut shutdown, acceptor.accept(stream)).await;
    let tls = handshake_outcome(accepted, peer, "mqtts", limit)?;
    let Some(certificate) = certificate_of(tls.get_ref().1.peer_certificates()) else {
        warn!(%peer, listener = "mqtts", "no usable client certificate after the handshake");
        return None;
    };
    Some((tls, Identity::Certificate(certificate)))
}

/// Serves one connection on the `tls` port: ClientHello first, then by ALPN. Shaped like
/// [`serve_mqtts`] for the same reason.
pub fn serve_tls(
    broker: Arc<Broker>,
    configs: Arc<TlsConfigs>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let limit = broker.config.limits.handshake_timeout;
    let handshake = tls_handshake(configs, stream, peer, limit, shutdown.clone());
    gated(&broker, Box::pin(handshake)).then(move |accepted| {
        let Some((route, tls)) = accepted else {
            return Either::Right(Either::Right(std::future::ready(())));
        };
        let server_name = tls.get_ref().1.server_name().map(str::to_owned);
        let identity = match route {
            Dispatch::MqttWithCertificate | Dispatch::HttpWithCertificate => {
                let Some(certificate) = certificate_of(tls.get_ref().1.peer_certificates()) else {
                    warn!(%peer, listener = "tls", "no usable client certificate after the handshake");
                    return Either::Right(Either::Right(std::future::ready(())));
                };
                if route == Dispatch::HttpWithCertificate {
                    let serving: HttpServing =
                        Box::pin(serve_https(broker, tls, certificate, shutdown));
                    return Either::Right(Either::Left(serving));
                }
                Identity::Certificate(certificate)
            }
            Dispatch::MqttWithCustomAuth => Identity::AtConnect {
                protocols: vec!["tls", "mqtt"],
                server_name,
            },
            Dispatch::Http => {
                let serving: HttpServing = Box::pin(websocket::serve(
                    broker,
                    tls,
                    peer,
                    shutdown,
                    Transport::Tls { server_name },
                    Listener::Tls,
                ));
                return Either::Right(Either::Left(serving));
            }
        };
        Either::Left(connection::serve(
            broker,
            tls,
            peer,
            shutdown,
            Listener::Tls,
            identity,
        ))
    })
}

/// An HTTP connection on the `tls` port. Boxed: HTTP's future is larger than MQTT's, and
/// MQTT is the common case.
type HttpServing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// HTTPS with a verified client certificate (ALPN `x-amzn-http-ca`, IoT Core's device
/// data endpoint): one request, the certificate's (iot-data only, by its policies).
async fn serve_https(
    broker: Arc<Broker>,
    tls: TlsStream<TcpStream>,
    certificate: CertificateIdentity,
    shutdown: watch::Receiver<bool>,
) {
    let request =
        http::serve_control_plane(&broker, tls, Vec::new(), Some(certificate), true, shutdown);
    gated(&broker, Box::pin(request)).await
}

async fn tls_handshake(
    configs: Arc<TlsConfigs>,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(Dispatch, TlsStream<TcpStream>)> {
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let route = route_of(&start.client_hello());
        let config = match route {
            Dispatch::MqttWithCertificate => configs.certificate_alpn.clone(),
            Dispatch::HttpWithCertificate => configs.certificate_http.clone(),
            Dispatch::MqttWithCustomAuth => configs.custom_auth.clone(),
            Dispatch::Http => configs.http.clone(),
        };
        Ok::<_, std::io::Error>((route, start.into_stream(config).await?))
    };
    let accepted = opening_step(limit, &mut shutdown, handshake).await;
    handshake_outcome(accepted, peer, "tls", limit)
}

/// The handshake's result, or `None` with the reason logged.
fn handshake_outcome<T>(
    accepted: Result<std::io::Result<T>, Abandoned>,
    peer: SocketAddr,
    listener: &'static str,
    limit: Duration,
) -> Option<T> {
    match accepted {
        Ok(Ok(accepted)) => Some(accepted),
        Ok(Err(error)) => {
            info!(%peer, listener, %error, "TLS handshake failed");
            None
        }
        Err(Abandoned::TimedOut) => {
            info!(%peer, listener, "closing connection: TLS handshake not done within {limit:?} (handshake_timeout)");
            None
        }
        Err(Abandoned::ShuttingDown) => None,
    }
}

fn route_of(hello: &ClientHello<'_>) -> Dispatch {
    let offered: Vec<&[u8]> = hello
        .alpn()
        .map(|protocols| protocols.collect())
        .unwrap_or_default();
    dispatch(&offered)
}

fn certificate_of(certificates: Option<&[CertificateDer<'static>]>) -> Option<CertificateIdentity> {
    let leaf = certificates?.first()?;
    identity_of_der(leaf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_dispatch_follows_iot_core() {
        assert_eq!(
            dispatch(&[b"x-amzn-mqtt-ca"]),
            Dispatch::MqttWithCertificate
        );
        assert_eq!(
            dispatch(&[b"http/1.1", b"x-amzn-mqtt-ca"]),
            Dispatch::MqttWithCertificate
        );
        assert_eq!(
            dispatch(&[b"x-amzn-http-ca", b"http/1.1"]),
            Dispatch::HttpWithCertificate
        );
        assert_eq!(dispatch(&[b"mqtt"]), Dispatch::MqttWithCustomAuth);
        assert_eq!(dispatch(&[b"http/1.1"]), Dispatch::Http);
        assert_eq!(dispatch(&[]), Dispatch::Http);
    }
}
