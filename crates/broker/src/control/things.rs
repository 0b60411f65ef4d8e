//! Things (CreateThing, DescribeThing, ListThings, UpdateThing, DeleteThing) and the
//! principals attached to them (AttachThingPrincipal, DetachThingPrincipal,
//! ListThingPrincipals, ListPrincipalThings), at IoT Core's paths with its shapes.

use std::collections::BTreeMap;

use crate::registry::{validate_thing_name, AttributePayload, NewThing, ThingRecord, ThingUpdate};

use super::*;

/// A list's page size when the request gives no `maxResults` (IoT Core's default is not
/// documented; clients page on `nextToken` anyway).
const DEFAULT_PAGE_SIZE: usize = 50;
/// `maxResults` of the registry's lists: 1–250 (`RegistryMaxResults`).
const MAX_PAGE_SIZE: usize = 250;

pub(super) async fn route(
    broker: &Plane<'_>,
    request @ &ApiRequest {
        method,
        query,
        headers,
        ..
    }: &ApiRequest<'_>,
    parts: &[&str],
) -> ApiResult {
    match (method, parts) {
        ("GET", ["things"]) => list_things(broker, query),
        ("GET", ["principals", "things"]) => {
            let principal = principal_header(headers)?;
            let principal = principal_of_target(&principal);
            if crate::registry::is_certificate_id(principal)
                && broker.registry.describe(principal).is_err()
            {
                return Err(ApiError::not_found(format!(
                    "certificate {principal} does not exist"
                )));
            }
            let names: Vec<String> = broker
                .registry
                .things()
                .into_iter()
                .filter(|thing| thing.principals.iter().any(|p| p == principal))
                .map(|thing| thing.thing_name)
                .collect();
            let (names, next) = page(names, String::as_str, query)?;
            Ok(with_next(json!({ "things": names }), next))
        }
        (_, ["things", name, ..]) => {
            validate_thing_name(name)?;
            thing_operation(broker, request, name, &parts[2..])
        }
        _ => Err(unknown_operation(request)),
    }
}

/// The operations on one thing (`rest`: the path after `/things/{name}`).
fn thing_operation(
    broker: &Plane<'_>,
    request @ &ApiRequest {
        method,
        query,
        headers,
        body,
        ..
    }: &ApiRequest<'_>,
    name: &str,
    rest: &[&str],
) -> ApiResult {
    match (method, rest) {
        ("POST", []) => {
            let body = json_body(body)?;
            let attributes = attribute_payload(&body)?.map(|payload| payload.attributes);
            let record = broker.registry.create_thing(
                name,
                NewThing {
                    thing_type_name: optional_string(&body, "thingTypeName")?,
                    attributes: attributes.unwrap_or_default(),
                },
            )?;
            broker.sync_registry();
            Ok(json!({
                "thingName": record.thing_name,
                "thingArn": arn(broker, "thing", &record.thing_name),
                "thingId": record.thing_id,
            }))
        }
        ("GET", []) => {
            let record = broker
                .registry
                .thing(name)
                .ok_or_else(|| ApiError::not_found(format!("thing {name} does not exist")))?;
            let mut described = thing_summary(broker, &record);
            described["defaultClientId"] = json!(record.thing_name);
            described["thingId"] = json!(record.thing_id);
            Ok(described)
        }
        ("PATCH", []) => {
            let body = json_body(body)?;
            let expected_version = match &body["expectedVersion"] {
                Value::Null => None,
                value => Some(value.as_u64().ok_or_else(|| {
                    ApiError::invalid("expectedVersion must be a non-negative integer")
                })?),
            };
            broker.registry.update_thing(
                name,
                ThingUpdate {
                    thing_type_name: optional_string(&body, "thingTypeName")?,
                    remove_thing_type: body["removeThingType"].as_bool().unwrap_or(false),
                    attributes: attribute_payload(&body)?,
                    expected_version,
                },
            )?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("DELETE", []) => {
            let expected_version = query_param(query, "expectedVersion")
                .map(|text| {
                    text.parse::<u64>().map_err(|_| {
                        ApiError::invalid(format!(
                            "expectedVersion {text:?} is not a non-negative integer"
                        ))
                    })
                })
                .transpose()?;
            broker.registry.delete_thing(name, expected_version)?;
            broker.sync_registry();
            Ok(json!({}))
        }
        ("PUT", ["principals"]) => {
            let principal = principal_header(headers)?;
            match query_param(query, "thingPrincipalType").as_deref() {
                None | Some("NON_EXCLUSIVE_THING") => {}
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                    "thingPrincipalType {other:?} is not supported here (only NON_EXCLUSIVE_THING)"
                )))
                }
            }
            broker.registry.attach_thing_principal(name, &principal)?;
            broker.sync_registry();
            info!(thing = name, %principal, "principal attached to thing");
            Ok(json!({}))
        }
        ("DELETE", ["principals"]) => {
            let principal = principal_header(headers)?;
            let detached = broker.registry.detach_thing_principal(name, &principal)?;
            broker.sync_registry();
            info!(thing = name, %principal, detached, "principal detached from thing");
            Ok(json!({}))
        }
        ("GET", ["principals"]) => {
            let record = broker
                .registry
                .thing(name)
                .ok_or_else(|| ApiError::not_found(format!("thing {name} does not exist")))?;
            let mut principals: Vec<String> = record
                .principals
                .iter()
                .map(|principal| target_of_principal(broker, principal))
                .collect();
            principals.sort();
            let (principals, next) = page(principals, String::as_str, query)?;
            Ok(with_next(json!({ "principals": principals }), next))
        }
        _ => Err(unknown_operation(request)),
    }
}

/// ListThings, filtered by attribute (exact value, or prefix with
/// `usePrefixAttributeValue=true`) and thing type.
fn list_things(broker: &Plane<'_>, query: &str) -> ApiResult {
    let attribute_name = query_param(query, "attributeName");
    let attribute_value = query_param(query, "attributeValue");
    let type_name = query_param(query, "thingTypeName");
    let prefix = query_param(query, "usePrefixAttributeValue").as_deref() == Some("true");
    if attribute_value.is_some() && attribute_name.is_none() {
        return Err(ApiError::invalid(
            "attributeValue needs attributeName to filter on",
        ));
    }
    let matches = |thing: &ThingRecord| {
        let attribute_ok = match (&attribute_name, &attribute_value) {
            (Some(name), Some(value)) => thing.attributes.get(name).is_some_and(|have| {
                if prefix {
                    have.starts_with(value.as_str())
                } else {
                    have == value
                }
            }),
            (Some(name), None) => thing.attributes.contains_key(name),
            _ => true,
        };
        attribute_ok
            && type_name
                .as_ref()
                .is_none_or(|wanted| thing.thing_type_name.as_ref() == Some(wanted))
    };
    let things: Vec<ThingRecord> = broker
        .registry
        .things()
        .into_iter()
        .filter(matches)
        .collect();
    let (things, next) = page(things, |thing| thing.thing_name.as_str(), query)?;
    let things: Vec<Value> = things
        .iter()
        .map(|thing| thing_summary(broker, thing))
        .collect();
    Ok(with_next(json!({ "things": things }), next))
}

/// One entry of ListThings (DescribeThing adds `defaultClientId` and `thingId`); no
/// `thingTypeName` for a thing without a type, as AWS.
fn thing_summary(broker: &Plane<'_>, record: &ThingRecord) -> Value {
    let mut summary = json!({
        "thingName": record.thing_name,
        "thingArn": arn(broker, "thing", &record.thing_name),
        "attributes": record.attributes,
        "version": record.version,
    });
    if let Some(type_name) = &record.thing_type_name {
        summary["thingTypeName"] = json!(type_name);
    }
    summary
}

/// One page of `items` (sorted by `key`): [`page_after`] the request's `nextToken`, at
/// most its `maxResults`.
fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> &str,
    query: &str,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = max_results(query, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE).map_err(ApiError::invalid)?;
    let after = query_param(query, "nextToken").filter(|token| !token.is_empty());
    Ok(page_after(items, key, after.as_deref(), max))
}

fn with_next(mut answer: Value, next: Option<String>) -> Value {
    if let Some(next) = next {
        answer["nextToken"] = json!(next);
    }
    answer
}

/// The `x-amzn-principal` header of the principal operations.
fn principal_header(headers: &[(&str, &str)]) -> Result<String, ApiError> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amzn-principal"))
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::invalid("x-amzn-principal header is required"))
}

fn optional_string(body: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match &body[name] {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        _ => Err(ApiError::invalid(format!("{name} must be a string"))),
    }
}

/// `attributePayload`: `{"attributes": {name: value}, "merge": bool}` (`None` when absent).
fn attribute_payload(body: &Value) -> Result<Option<AttributePayload>, ApiError> {
    let payload = &body["attributePayload"];
    if payload.is_null() {
        return Ok(None);
    }
    let mut attributes = BTreeMap::new();
    match &payload["attributes"] {
        Value::Null => {}
        Value::Object(given) => {
            for (name, value) in given {
                let value = value.as_str().ok_or_else(|| {
                    ApiError::invalid(format!("attribute {name}: the value must be a string"))
                })?;
                attributes.insert(name.clone(), value.to_owned());
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "attributePayload.attributes must be an object of strings",
            ))
        }
    }
    Ok(Some(AttributePayload {
        attributes,
        merge: payload["merge"].as_bool().unwrap_or(false),
    }))
}
