//! Certificates and CA certificates (create, register, describe, list, update, delete), and our `access-keys` (create-access-key).

use crate::pki;

use super::*;

pub(super) async fn route(
    broker: &Plane<'_>,
    request @ &ApiRequest {
        method,
        query,
        body,
        ..
    }: &ApiRequest<'_>,
    parts: &[&str],
) -> ApiResult {
    let set_as_active = query_param(query, "setAsActive").as_deref() == Some("true");
    match (method, parts) {
        ("POST", ["keys-and-certificate"]) => {
            let issued = pki::issue_device_certificate(&broker.config.data_dir, "pubsub device")
                .map_err(|error| ApiError::invalid(error.to_string()))?;
            let status = if set_as_active {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            };
            let record = broker.registry.register(&issued.certificate_pem, status)?;
            Ok(json!({
                "certificateArn": arn(broker, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
                "certificatePem": issued.certificate_pem,
                "keyPair": {"PublicKey": issued.public_key_pem, "PrivateKey": issued.private_key_pem},
            }))
        }
        ("POST", ["certificates"]) => {
            let body = json_body(body)?;
            let csr = string_field(&body, "certificateSigningRequest")?;
            let pem = pki::issue_from_csr(&broker.config.data_dir, &csr).map_err(|error| {
                ApiError::invalid(format!("certificateSigningRequest: {error}"))
            })?;
            let status = if set_as_active {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            };
            let record = broker.registry.register(&pem, status)?;
            Ok(json!({
                "certificateArn": arn(broker, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
                "certificatePem": pem,
            }))
        }
        ("POST", ["certificate", "register"]) | ("POST", ["certificate", "register-no-ca"]) => {
            let body = json_body(body)?;
            let pem = string_field(&body, "certificatePem")?;
            let active = set_as_active
                || body["setAsActive"].as_bool() == Some(true)
                || body["status"].as_str() == Some("ACTIVE");
            let status = match body["status"].as_str() {
                Some(status) => parse_status(status)?,
                None if active => CertificateStatus::Active,
                None => CertificateStatus::Inactive,
            };
            let record = broker.registry.register(&pem, status)?;
            Ok(json!({
                "certificateArn": arn(broker, "cert", &record.certificate_id),
                "certificateId": record.certificate_id,
            }))
        }
        ("POST", ["cacertificate"]) => {
            let body = json_body(body)?;
            let pem = string_field(&body, "caCertificate")?;
            let status = if set_as_active || body["setAsActive"].as_bool() == Some(true) {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            };
            let auto = query_param(query, "allowAutoRegistration").as_deref() == Some("true")
                || body["allowAutoRegistration"].as_bool() == Some(true);
            let record = broker.registry.register_ca(&pem, status, auto)?;
            Ok(json!({
                "certificateArn": arn(broker, "cacert", &record.certificate_id),
                "certificateId": record.certificate_id,
            }))
        }
        ("PUT", ["cacertificate", id]) => {
            let status = query_param(query, "newStatus")
                .map(|s| parse_status(&s))
                .transpose()?;
            let auto = query_param(query, "newAutoRegistrationStatus").map(|s| s == "ENABLE");
            broker.registry.update_ca(id, status, auto)?;
            Ok(json!({}))
        }
        ("PUT", ["certificates", id]) => {
            let status = query_param(query, "newStatus")
                .ok_or_else(|| ApiError::invalid("newStatus is required"))?;
            set_certificate_status(broker, id, parse_status(&status)?)
        }
        ("GET", ["certificates", id]) => {
            let record = broker.registry.describe(id)?;
            Ok(json!({ "certificateDescription": describe_certificate(&broker.config, &record) }))
        }
        ("GET", ["certificates"]) => {
            let certificates: Vec<Value> = broker
                .registry
                .list()
                .iter()
                .map(|record| certificate_summary(&broker.config, record))
                .collect();
            Ok(json!({ "certificates": certificates }))
        }
        ("DELETE", ["certificates", id]) => {
            broker.registry.delete_certificate(id)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("POST", ["access-keys"]) => {
            let body = json_body(body)?;
            let principal = string_field(&body, "principal")?;
            let record = broker.registry.create_access_key(&principal)?;
            Ok(json!({
                "AccessKey": {
                    "AccessKeyId": record.access_key_id,
                    "SecretAccessKey": record.secret_access_key,
                    "Principal": record.principal,
                    "Status": "Active",
                }
            }))
        }
        _ => Err(unknown_operation(request)),
    }
}
