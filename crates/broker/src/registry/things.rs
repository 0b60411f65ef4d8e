//! Things, as IoT Core's registry keeps them: a name (the shadow crate's grammar), an id,
//! an optional thing type, attributes, a version (1 at creation, one more per update) and
//! the principals attached to it. The rules are functions of the registry's state
//! (unit-tested in `tests.rs`); `Registry`'s methods run them in `change`, which saves.

use std::collections::BTreeMap;

use super::{unix_now, Registry, RegistryError, RegistryState, ThingRecord};
use crate::config::ThingConfig;

/// Attributes a thing without a thing type may have (IoT Core: three; with a type, 50).
pub const MAX_ATTRIBUTES_UNTYPED: usize = 3;
pub const MAX_ATTRIBUTES_TYPED: usize = 50;
const MAX_ATTRIBUTE_NAME: usize = 128;
const MAX_ATTRIBUTE_VALUE: usize = 800;

/// What CreateThing asks for besides the name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewThing {
    pub thing_type_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// An attribute payload: attributes, merged into the current ones or replacing them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributePayload {
    pub attributes: BTreeMap<String, String>,
    pub merge: bool,
}

/// What UpdateThing asks for besides the name.
#[derive(Debug, Clone, Default)]
pub struct ThingUpdate {
    pub thing_type_name: Option<String>,
    pub remove_thing_type: bool,
    pub attributes: Option<AttributePayload>,
    pub expected_version: Option<u64>,
}

/// A certificate ARN names its certificate id; anything else (an identity id, a bare
/// certificate id) is the principal itself.
pub fn principal_of_target(target: &str) -> &str {
    match target.split_once(":cert/") {
        Some((_, id)) if target.starts_with("arn:") => id,
        _ => target,
    }
}

/// A principal that is a certificate id (64 lowercase or uppercase hex digits).
pub fn is_certificate_id(principal: &str) -> bool {
    principal.len() == 64 && principal.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn validate_thing_name(name: &str) -> Result<(), RegistryError> {
    shadow::topic::validate_thing_name(name)
        .map_err(|error| RegistryError::Invalid(format!("thingName {name:?}: {error}")))
}

/// Thing type names have the thing names' grammar (1–128 of `[a-zA-Z0-9:_-]`).
fn validate_type_name(name: &str) -> Result<(), RegistryError> {
    shadow::topic::validate_thing_name(name).map_err(|_| {
        RegistryError::Invalid(format!(
            "thingTypeName {name:?}: must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'"
        ))
    })
}

/// IoT Core's attribute grammar (names `[a-zA-Z0-9_.,@/:#-]+` up to 128, values
/// `[a-zA-Z0-9_.,@/:#=\[\]-]*` up to 800) and the count a thing of this kind may have.
fn validate_attributes(
    attributes: &BTreeMap<String, String>,
    typed: bool,
) -> Result<(), RegistryError> {
    let common = |b: u8| b.is_ascii_alphanumeric() || b"_.,@/:#-".contains(&b);
    for (name, value) in attributes {
        if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME || !name.bytes().all(common) {
            return Err(RegistryError::Invalid(format!(
                "attribute name {name:?}: must be 1 to {MAX_ATTRIBUTE_NAME} characters of a-z, A-Z, 0-9 and _.,@/:#-"
            )));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE
            || !value.bytes().all(|b| common(b) || b"=[]".contains(&b))
        {
            return Err(RegistryError::Invalid(format!(
                "attribute {name}: value must be at most {MAX_ATTRIBUTE_VALUE} characters of a-z, A-Z, 0-9 and _.,@/:#=[]-"
            )));
        }
    }
    let limit = if typed {
        MAX_ATTRIBUTES_TYPED
    } else {
        MAX_ATTRIBUTES_UNTYPED
    };
    if attributes.len() > limit {
        let kind = if typed {
            "a thing with a thing type"
        } else {
            "a thing without a thing type"
        };
        return Err(RegistryError::Invalid(format!(
            "{kind} can have at most {limit} attributes, not {}",
            attributes.len()
        )));
    }
    Ok(())
}

/// The attributes after an attribute payload: merged into the current ones, or replacing
/// them. An empty value removes its attribute (IoT Core's way to delete one).
pub fn apply_attributes(
    current: &BTreeMap<String, String>,
    payload: &BTreeMap<String, String>,
    merge: bool,
) -> BTreeMap<String, String> {
    let mut attributes = if merge {
        current.clone()
    } else {
        BTreeMap::new()
    };
    for (name, value) in payload {
        if value.is_empty() {
            attributes.remove(name);
        } else {
            attributes.insert(name.clone(), value.clone());
        }
    }
    attributes
}

fn missing(name: &str) -> RegistryError {
    RegistryError::NotFound(format!("thing {name}"))
}

fn check_version(record: &ThingRecord, expected: Option<u64>) -> Result<(), RegistryError> {
    match expected {
        Some(expected) if expected != record.version => {
            Err(RegistryError::VersionConflict(format!(
                "the version of thing {} is {}, not the expected {expected}",
                record.thing_name, record.version
            )))
        }
        _ => Ok(()),
    }
}

/// CreateThing: a repeated identical create answers the existing thing; one with another
/// type or other attributes is refused.
fn create(
    state: &mut RegistryState,
    name: &str,
    new: NewThing,
    thing_id: String,
) -> Result<ThingRecord, RegistryError> {
    validate_thing_name(name)?;
    if let Some(type_name) = &new.thing_type_name {
        validate_type_name(type_name)?;
    }
    let attributes = apply_attributes(&BTreeMap::new(), &new.attributes, false);
    validate_attributes(&attributes, new.thing_type_name.is_some())?;
    if let Some(existing) = state.things.get(name) {
        if existing.thing_type_name == new.thing_type_name && existing.attributes == attributes {
            return Ok(existing.clone());
        }
        return Err(RegistryError::AlreadyExists(format!(
            "thing {name} (with another thing type or other attributes)"
        )));
    }
    let record = ThingRecord {
        thing_name: name.to_owned(),
        thing_id,
        thing_type_name: new.thing_type_name,
        attributes,
        version: 1,
        principals: Vec::new(),
        creation_date: unix_now(),
    };
    state.things.insert(name.to_owned(), record.clone());
    Ok(record)
}

/// UpdateThing: type and attributes as asked, the version one more.
fn update(
    state: &mut RegistryState,
    name: &str,
    update: ThingUpdate,
) -> Result<ThingRecord, RegistryError> {
    let record = state.things.get_mut(name).ok_or_else(|| missing(name))?;
    check_version(record, update.expected_version)?;
    if update.remove_thing_type && update.thing_type_name.is_some() {
        return Err(RegistryError::Invalid(
            "give thingTypeName or removeThingType, not both".into(),
        ));
    }
    let mut type_name = record.thing_type_name.clone();
    if let Some(new_type) = update.thing_type_name {
        validate_type_name(&new_type)?;
        type_name = Some(new_type);
    }
    if update.remove_thing_type {
        type_name = None;
    }
    let attributes = match &update.attributes {
        Some(payload) => apply_attributes(&record.attributes, &payload.attributes, payload.merge),
        None => record.attributes.clone(),
    };
    validate_attributes(&attributes, type_name.is_some())?;
    record.thing_type_name = type_name;
    record.attributes = attributes;
    record.version += 1;
    Ok(record.clone())
}

/// DeleteThing: a thing that does not exist is no error; one with principals attached is
/// refused, as IoT Core refuses it.
fn delete(
    state: &mut RegistryState,
    name: &str,
    expected_version: Option<u64>,
) -> Result<(), RegistryError> {
    let Some(record) = state.things.get(name) else {
        return Ok(());
    };
    check_version(record, expected_version)?;
    if !record.principals.is_empty() {
        return Err(RegistryError::Invalid(format!(
            "Cannot delete. Thing {name} is still attached to one or more principals"
        )));
    }
    state.things.remove(name);
    Ok(())
}

/// AttachThingPrincipal: a certificate must be registered; other principals (Cognito
/// identity ids, …) are taken as given.
fn attach(state: &mut RegistryState, name: &str, principal: &str) -> Result<(), RegistryError> {
    let principal = principal_of_target(principal);
    if principal.is_empty() {
        return Err(RegistryError::Invalid("principal is required".into()));
    }
    if !state.things.contains_key(name) {
        return Err(missing(name));
    }
    if is_certificate_id(principal) && !state.certificates.contains_key(principal) {
        return Err(RegistryError::NotFound(format!("certificate {principal}")));
    }
    let record = state.things.get_mut(name).ok_or_else(|| missing(name))?;
    if !record.principals.iter().any(|p| p == principal) {
        record.principals.push(principal.to_owned());
    }
    Ok(())
}

/// DetachThingPrincipal; `false` when it was not attached.
fn detach(state: &mut RegistryState, name: &str, principal: &str) -> Result<bool, RegistryError> {
    let principal = principal_of_target(principal);
    let record = state.things.get_mut(name).ok_or_else(|| missing(name))?;
    let before = record.principals.len();
    record.principals.retain(|p| p != principal);
    Ok(record.principals.len() != before)
}

/// A `[[things]]` entry: the thing made if missing, its type and attributes set to the
/// config's (the version moves only when they change), its principals attached (never
/// detached: one attached through the API stays). `true` when the state changed.
pub(super) fn declare(
    state: &mut RegistryState,
    thing: &ThingConfig,
    thing_id: impl FnOnce() -> String,
) -> Result<bool, RegistryError> {
    let new = NewThing {
        thing_type_name: thing.thing_type_name.clone(),
        attributes: thing.attributes.clone(),
    };
    let mut changed = false;
    if !state.things.contains_key(&thing.name) {
        create(state, &thing.name, new.clone(), thing_id())?;
        changed = true;
    }
    let record = state
        .things
        .get(&thing.name)
        .ok_or_else(|| missing(&thing.name))?;
    let attributes = apply_attributes(&BTreeMap::new(), &new.attributes, false);
    if record.thing_type_name != new.thing_type_name || record.attributes != attributes {
        update(
            state,
            &thing.name,
            ThingUpdate {
                thing_type_name: new.thing_type_name.clone(),
                remove_thing_type: new.thing_type_name.is_none(),
                attributes: Some(AttributePayload {
                    attributes: new.attributes,
                    merge: false,
                }),
                expected_version: None,
            },
        )?;
        changed = true;
    }
    for principal in &thing.principals {
        let principal = principal_of_target(principal);
        let record = state
            .things
            .get_mut(&thing.name)
            .ok_or_else(|| missing(&thing.name))?;
        if !record.principals.iter().any(|p| p == principal) {
            record.principals.push(principal.to_owned());
            changed = true;
        }
    }
    Ok(changed)
}

impl Registry {
    pub fn create_thing(&self, name: &str, new: NewThing) -> Result<ThingRecord, RegistryError> {
        self.change(|state| create(state, name, new, crate::secrets::uuid_shaped()))
    }

    pub fn thing(&self, name: &str) -> Option<ThingRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.things.get(name).cloned()
    }

    /// Every thing, by name.
    pub fn things(&self) -> Vec<ThingRecord> {
        let _ = self.reload_if_changed();
        self.state.lock().0.things.values().cloned().collect()
    }

    pub fn update_thing(
        &self,
        name: &str,
        thing_update: ThingUpdate,
    ) -> Result<ThingRecord, RegistryError> {
        self.change(|state| update(state, name, thing_update))
    }

    pub fn delete_thing(
        &self,
        name: &str,
        expected_version: Option<u64>,
    ) -> Result<(), RegistryError> {
        self.change(|state| delete(state, name, expected_version))
    }

    pub fn attach_thing_principal(&self, name: &str, principal: &str) -> Result<(), RegistryError> {
        self.change(|state| attach(state, name, principal))
    }

    pub fn detach_thing_principal(
        &self,
        name: &str,
        principal: &str,
    ) -> Result<bool, RegistryError> {
        self.change(|state| detach(state, name, principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn new(pairs: &[(&str, &str)]) -> NewThing {
        NewThing {
            thing_type_name: None,
            attributes: attrs(pairs),
        }
    }

    fn with_thing(name: &str, pairs: &[(&str, &str)]) -> RegistryState {
        let mut state = RegistryState::default();
        create(&mut state, name, new(pairs), "id-1".into()).unwrap();
        state
    }

    #[test]
    fn merge_keeps_others_and_an_empty_value_removes() {
        let current = attrs(&[("a", "1"), ("b", "2")]);
        let payload = attrs(&[("b", ""), ("c", "3")]);
        assert_eq!(
            apply_attributes(&current, &payload, true),
            attrs(&[("a", "1"), ("c", "3")])
        );
        assert_eq!(
            apply_attributes(&current, &payload, false),
            attrs(&[("c", "3")])
        );
        assert_eq!(
            apply_attributes(&current, &BTreeMap::new(), false),
            BTreeMap::new()
        );
    }

    #[test]
    fn an_identical_create_answers_the_thing_a_different_one_is_refused() {
        let mut state = with_thing("t1", &[("room", "lab")]);
        let again = create(&mut state, "t1", new(&[("room", "lab")]), "id-2".into()).unwrap();
        assert_eq!(
            (again.thing_id.as_str(), again.version),
            ("id-1", 1),
            "same thing, not a new one"
        );
        let other = create(&mut state, "t1", new(&[("room", "hall")]), "id-3".into());
        assert!(
            matches!(other, Err(RegistryError::AlreadyExists(_))),
            "{other:?}"
        );
        let typed = NewThing {
            thing_type_name: Some("lamp".into()),
            ..new(&[("room", "lab")])
        };
        assert!(matches!(
            create(&mut state, "t1", typed, "id-4".into()),
            Err(RegistryError::AlreadyExists(_))
        ));
    }

    #[test]
    fn names_attributes_and_their_count_are_validated() {
        let mut state = RegistryState::default();
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(
                matches!(
                    create(&mut state, bad, new(&[]), "i".into()),
                    Err(RegistryError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        for bad in [&[("a b", "1")][..], &[("a", "x y")], &[("", "1")]] {
            assert!(matches!(
                create(&mut state, "t", new(bad), "i".into()),
                Err(RegistryError::Invalid(_))
            ));
        }
        let four = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
        let refused = create(&mut state, "t", new(&four), "i".into()).unwrap_err();
        assert!(refused.to_string().contains("at most 3"), "{refused}");
        let typed = NewThing {
            thing_type_name: Some("sensor".into()),
            ..new(&four)
        };
        assert_eq!(
            create(&mut state, "t", typed, "i".into())
                .unwrap()
                .attributes
                .len(),
            4
        );
        // Removing the type of a thing with four attributes would break the limit.
        let untype = ThingUpdate {
            remove_thing_type: true,
            ..ThingUpdate::default()
        };
        assert!(matches!(
            update(&mut state, "t", untype),
            Err(RegistryError::Invalid(_))
        ));
        assert!(create(
            &mut state,
            "ok:_-9",
            new(&[("k.,@/:#-", "v=[]")]),
            "i".into()
        )
        .is_ok());
    }

    #[test]
    fn update_moves_the_version_and_honours_expected_version() {
        let mut state = with_thing("t", &[("a", "1")]);
        let merged = update(
            &mut state,
            "t",
            ThingUpdate {
                attributes: Some(AttributePayload {
                    attributes: attrs(&[("b", "2")]),
                    merge: true,
                }),
                expected_version: Some(1),
                ..ThingUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(
            (merged.version, merged.attributes),
            (2, attrs(&[("a", "1"), ("b", "2")]))
        );
        let stale = update(
            &mut state,
            "t",
            ThingUpdate {
                expected_version: Some(1),
                ..ThingUpdate::default()
            },
        );
        assert!(
            matches!(stale, Err(RegistryError::VersionConflict(_))),
            "{stale:?}"
        );
        assert_eq!(
            state.things["t"].version, 2,
            "a refused update changes nothing"
        );
        let typed = update(
            &mut state,
            "t",
            ThingUpdate {
                thing_type_name: Some("lamp".into()),
                ..ThingUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(
            (typed.thing_type_name.as_deref(), typed.version),
            (Some("lamp"), 3)
        );
        let both = ThingUpdate {
            thing_type_name: Some("x".into()),
            remove_thing_type: true,
            ..ThingUpdate::default()
        };
        assert!(matches!(
            update(&mut state, "t", both),
            Err(RegistryError::Invalid(_))
        ));
        assert!(matches!(
            update(&mut state, "nope", ThingUpdate::default()),
            Err(RegistryError::NotFound(_))
        ));
    }

    #[test]
    fn principals_attach_once_and_block_deletion() {
        let mut state = with_thing("t", &[]);
        let arn = format!(
            "arn:aws:iot:us-east-1:123456789012:cert/{}",
            "ab".repeat(32)
        );
        assert!(
            matches!(
                attach(&mut state, "t", &arn),
                Err(RegistryError::NotFound(_))
            ),
            "an unregistered certificate"
        );
        attach(&mut state, "t", "us-east-1:identity").unwrap();
        attach(&mut state, "t", "us-east-1:identity").unwrap();
        assert_eq!(state.things["t"].principals, ["us-east-1:identity"]);
        assert!(matches!(
            attach(&mut state, "missing", "p"),
            Err(RegistryError::NotFound(_))
        ));
        let refused = delete(&mut state, "t", None).unwrap_err();
        assert!(refused.to_string().contains("still attached"), "{refused}");
        assert!(detach(&mut state, "t", "us-east-1:identity").unwrap());
        assert!(!detach(&mut state, "t", "us-east-1:identity").unwrap());
        assert!(matches!(
            delete(&mut state, "t", Some(7)),
            Err(RegistryError::VersionConflict(_))
        ));
        delete(&mut state, "t", Some(1)).unwrap();
        assert!(state.things.is_empty());
        delete(&mut state, "t", None).expect("deleting a missing thing is no error");
    }

    #[test]
    fn declaring_twice_changes_nothing_the_second_time() {
        let mut state = RegistryState::default();
        let declared = ThingConfig {
            name: "sensor-1".into(),
            thing_type_name: None,
            principals: vec![format!("arn:aws:iot:r:a:cert/{}", "cd".repeat(32))],
            attributes: attrs(&[("room", "lab")]),
        };
        assert!(declare(&mut state, &declared, || "id".into()).unwrap());
        assert!(!declare(&mut state, &declared, || "other".into()).unwrap());
        let thing = &state.things["sensor-1"];
        assert_eq!(
            (thing.version, thing.thing_id.as_str()),
            (1, "id"),
            "{thing:?}"
        );
        assert_eq!(thing.principals, ["cd".repeat(32)]);
        let moved = ThingConfig {
            attributes: attrs(&[("room", "hall")]),
            ..declared
        };
        assert!(declare(&mut state, &moved, || "x".into()).unwrap());
        assert_eq!(state.things["sensor-1"].version, 2);
        assert_eq!(
            state.things["sensor-1"].attributes,
            attrs(&[("room", "hall")])
        );
    }
}
