//! Authentication of WebSocket upgrades and of CONNECTs that carry authorizer fields in
//! their username. Rules (DESIGN.md §4): credentials on the upgrade (SigV4 query, or
//! authorizer headers / query) win; only a bare upgrade looks at the CONNECT username; a
//! bare upgrade with nothing there uses `default_authorizer`, else CONNACK 5.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use iot::custom_auth::{self, AuthorizerFields};
use iot::lifecycle::DisconnectReason;
use iot::sigv4::{self, SignedRequest};
use mqtt::Connect;

use super::custom::{AuthorizedIdentity, ConnectionFacts};
use super::policy::{ADMINISTRATOR, ANONYMOUS};
use super::IdentityPlane;
use crate::http_head::RequestHead;
use crate::registry::CertificateIdentity;

/// Who a connection authenticated as before MQTT began.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The plain listener.
    Anonymous,
    /// A registered (or CA-vouched) client certificate: the principal is its id.
    Certificate(CertificateIdentity),
    /// SigV4 credentials: the principal is their identity id (e.g. a Cognito identity);
    /// `cognito` for an identity pool's temporary credentials (the role rule decides).
    Credentials {
        principal: String,
        cognito: Option<super::CognitoPrincipal>,
    },
    /// SigV4 by the control plane's admin key (the console's MQTT connection): an IAM
    /// administrator, allowed `iot:*` (`PolicyStore::administrator`).
    Administrator,
    /// A custom authorizer's answer: its principal id and the policies it returned.
    Authorizer(AuthorizedIdentity),
    /// Not yet: the CONNECT username carries authorizer fields (ALPN `mqtt`, or a bare
    /// WebSocket upgrade).
    AtConnect {
        protocols: Vec<&'static str>,
        server_name: Option<String>,
    },
}

impl Identity {
    pub fn principal(&self) -> &str {
        match self {
            Identity::Anonymous => ANONYMOUS,
            Identity::Certificate(certificate) => &certificate.certificate_id,
            Identity::Credentials { principal, .. } => principal,
            Identity::Administrator => ADMINISTRATOR,
            Identity::Authorizer(authorized) => &authorized.principal_id,
            Identity::AtConnect { .. } => "unauthenticated",
        }
    }
}

/// How a transport hands a connection over: who it is, and when it must end at the latest
/// (WebSocket TTL, custom authorizer's disconnectAfterInSeconds).
#[derive(Debug, Clone)]
pub struct Admission {
    pub identity: Identity,
    pub lifetime: Option<(Duration, DisconnectReason)>,
}

impl From<Identity> for Admission {
    fn from(identity: Identity) -> Admission {
        Admission {
            identity,
            lifetime: None,
        }
    }
}

/// What carried the HTTP request: a TLS port (with the SNI the client sent) or the plain
/// development `ws` listener.
#[derive(Debug, Clone)]
pub enum Transport {
    Tls { server_name: Option<String> },
    Plain,
}

impl Transport {
    fn server_name(&self) -> Option<&str> {
        match self {
            Transport::Tls { server_name } => server_name.as_deref(),
            Transport::Plain => None,
        }
    }

    fn protocols(&self, http: bool) -> Vec<&'static str> {
        let mut protocols = Vec::new();
        if matches!(self, Transport::Tls { .. }) {
            protocols.push("tls");
        }
        if http {
            protocols.push("http");
        }
        protocols.push("mqtt");
        protocols
    }
}

/// Authenticates a WebSocket upgrade. `Err` is the reason for the 403.
pub async fn authenticate_upgrade(
    broker: &IdentityPlane,
    request: &RequestHead,
    peer: SocketAddr,
    transport: Transport,
) -> Result<Admission, String> {
    broker.refresh_registry();
    let headers = request.header_pairs();
    let ttl = Some((
        broker.config.limits.websocket_ttl,
        DisconnectReason::WebsocketTtlExpiration,
    ));
    if let Some(presigned) = sigv4::parse_presigned_query(&request.query)
        .map_err(|error| format!("SigV4 query malformed: {error}"))
        .map_err(refused(broker, "sigv4", "malformed"))?
    {
        let admin = broker
            .admin_key()
            .ok()
            .filter(|(id, _)| *id == presigned.access_key_id);
        let (secret, identity) = match admin {
            Some((_, secret)) => (secret.clone(), Identity::Administrator),
            None => {
                let credential = broker
                    .signing_credential(
                        &presigned.access_key_id,
                        presigned.security_token.as_deref(),
                    )
                    .map_err(refused(broker, "sigv4", "credentials"))?;
                let identity = Identity::Credentials {
                    principal: credential.principal,
                    cognito: credential.cognito,
                };
                (credential.secret, identity)
            }
        };
        let signed = SignedRequest {
            method: &request.method,
            path: &request.path,
            query: &request.query,
            headers: &headers,
        };
        sigv4::verify(
            &signed,
            &presigned,
            &secret,
            &broker.config.region,
            SystemTime::now(),
        )
        .map_err(|error| format!("SigV4 (access key {}): {error}", presigned.access_key_id))
        .map_err(refused(broker, "sigv4", "signature"))?;
        return Ok(Admission {
            identity,
            lifetime: ttl,
        });
    }
    let fields = custom_auth::from_http(&headers, &request.query);
    if broker.authorizers.wants(&fields) {
        let protocols = transport.protocols(true);
        let connection_id = peer.to_string();
        let identity = broker
            .authorizers
            .authorize(
                &fields,
                ConnectionFacts {
                    protocols: &protocols,
                    server_name: transport.server_name(),
                    http_headers: Some(&headers),
                    http_query: Some(&request.query),
                    mqtt_username: None,
                    mqtt_password: None,
                    mqtt_client_id: None,
                    connection_id: &connection_id,
                },
            )
            .await
            .map_err(refused(broker, "custom_authorizer", "refused"))?;
        let lifetime = shorter(
            ttl,
            (
                identity.disconnect_after,
                DisconnectReason::CustomAuthTtlExpiration,
            ),
        );
        return Ok(Admission {
            identity: Identity::Authorizer(identity),
            lifetime,
        });
    }
    Ok(Admission {
        identity: Identity::AtConnect {
            protocols: transport.protocols(true),
            server_name: transport.server_name().map(str::to_owned),
        },
        lifetime: ttl,
    })
}

/// Authenticates at CONNECT from the username's authorizer fields (ALPN `mqtt`, or a bare
/// WebSocket upgrade). `Err` is the reason for CONNACK 5.
pub async fn authenticate_connect(
    broker: &IdentityPlane,
    connect: &Connect,
    peer: SocketAddr,
    protocols: &[&str],
    server_name: Option<&str>,
) -> Result<(Identity, Option<(Duration, DisconnectReason)>), String> {
    broker.refresh_registry();
    let username = connect.username.as_deref().unwrap_or_default();
    let fields: AuthorizerFields = custom_auth::parse_username(username);
    if !broker.authorizers.wants(&fields) && broker.authorizers.default_name().is_none() {
        return Err(refused(broker, "custom_authorizer", "no_credentials")(
            "no credentials: no SigV4 signature, no authorizer fields and no default_authorizer"
                .into(),
        ));
    }
    let connection_id = peer.to_string();
    let identity = broker
        .authorizers
        .authorize(
            &fields,
            ConnectionFacts {
                protocols,
                server_name,
                http_headers: None,
                http_query: None,
                mqtt_username: connect.username.as_deref(),
                mqtt_password: connect.password.as_deref(),
                mqtt_client_id: Some(&connect.client_id),
                connection_id: &connection_id,
            },
        )
        .await
        .map_err(refused(broker, "custom_authorizer", "refused"))?;
    let lifetime = (
        identity.disconnect_after,
        DisconnectReason::CustomAuthTtlExpiration,
    );
    Ok((Identity::Authorizer(identity), Some(lifetime)))
}

/// Counts a refusal (`pubsub_auth_refusals_total`) and passes its reason on.
fn refused<'a>(
    broker: &'a IdentityPlane,
    method: &'static str,
    label: &'static str,
) -> impl FnOnce(String) -> String + 'a {
    move |reason| {
        broker.policies.metrics.auth_refused(method, label);
        reason
    }
}

/// The earlier of two forced disconnects.
pub fn shorter(
    current: Option<(Duration, DisconnectReason)>,
    other: (Duration, DisconnectReason),
) -> Option<(Duration, DisconnectReason)> {
    match current {
        Some(current) if current.0 <= other.0 => Some(current),
        _ => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::sync::Arc;

    fn plane() -> IdentityPlane {
        let dir = tempfile::tempdir().unwrap().keep();
        let text = format!(
            "data_dir = {:?}\nin_memory = true\n[[credentials]]\naccess_key_id = \"AKIAKNOWN\"\nsecret_access_key = \"secret\"\nprincipal = \"us-east-1:someone\"\n",
            dir.display().to_string()
        );
        IdentityPlane::open(Arc::new(Config::parse(&text).unwrap())).unwrap()
    }

    fn upgrade(query: &str) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            path: "/mqtt".into(),
            query: query.into(),
            headers: vec![("host".into(), "localhost:8443".into())],
        }
    }

    fn presigned(access_key: &str) -> String {
        format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={access_key}%2F20261201%2Fus-east-1%2Fiotdevicegateway%2Faws4_request&X-Amz-Date=20261201T000000Z&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
            "0".repeat(64)
        )
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[tokio::test]
    async fn a_bare_upgrade_authenticates_at_connect_within_the_websocket_ttl() {
        let plane = plane();
        let transport = Transport::Tls {
            server_name: Some("localhost".into()),
        };
        let admission = authenticate_upgrade(&plane, &upgrade(""), peer(), transport)
            .await
            .unwrap();
        match admission.identity {
            Identity::AtConnect {
                protocols,
                server_name,
            } => {
                assert_eq!(protocols, ["tls", "http", "mqtt"]);
                assert_eq!(server_name.as_deref(), Some("localhost"));
            }
            other => panic!("expected AtConnect, got {other:?}"),
        }
        assert_eq!(
            admission.lifetime,
            Some((
                plane.config.limits.websocket_ttl,
                DisconnectReason::WebsocketTtlExpiration
            ))
        );
    }

    #[tokio::test]
    async fn sigv4_refusals_name_the_key_and_the_reason() {
        let plane = plane();
        let unknown = authenticate_upgrade(
            &plane,
            &upgrade(&presigned("AKIANOBODY")),
            peer(),
            Transport::Plain,
        )
        .await
        .unwrap_err();
        assert!(
            unknown.contains("unknown access key AKIANOBODY"),
            "{unknown}"
        );
        let forged = authenticate_upgrade(
            &plane,
            &upgrade(&presigned("AKIAKNOWN")),
            peer(),
            Transport::Plain,
        )
        .await
        .unwrap_err();
        assert!(
            forged.starts_with("SigV4 (access key AKIAKNOWN)"),
            "{forged}"
        );
    }

    #[tokio::test]
    async fn a_connect_without_credentials_or_default_authorizer_is_refused() {
        let plane = plane();
        let connect = Connect {
            protocol: mqtt::Protocol::V311,
            keep_alive: 30,
            client_id: "c".into(),
            clean_session: true,
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        let refused = authenticate_connect(&plane, &connect, peer(), &["tls", "mqtt"], None)
            .await
            .unwrap_err();
        assert!(refused.contains("no default_authorizer"), "{refused}");
    }

    #[test]
    fn the_earlier_forced_disconnect_wins() {
        let ttl = (
            Duration::from_secs(60),
            DisconnectReason::WebsocketTtlExpiration,
        );
        let custom = (
            Duration::from_secs(30),
            DisconnectReason::CustomAuthTtlExpiration,
        );
        assert_eq!(shorter(Some(ttl), custom), Some(custom));
        assert_eq!(shorter(Some(custom), ttl), Some(custom));
        assert_eq!(shorter(None, ttl), Some(ttl));
    }
}
