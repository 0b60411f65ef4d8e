//! User pools' decisions: sign-in refusals, token claims, challenges' lifetime, and the
//! verification of ID tokens (for identity pools) and access tokens — on a registry in a
//! temporary directory, with a fixed signing key (generating one is slow in debug builds).

use super::*;
use crate::config::Config;

const KEY_PEM: &str = include_str!("../../../../iot/tests/fixtures/token-signing-2048.key.pem");
const POOL_ID: &str = "us-east-1_AbCdEf123";
const CLIENT_ID: &str = "client0000000000000000000a";
const PASSWORD: &str = "Passw0rd!";

fn plane(dir: &std::path::Path) -> IdentityPlane {
    let config = Config::parse(&format!(
        "data_dir = {:?}\nin_memory = true\n",
        dir.display().to_string()
    ))
    .unwrap();
    IdentityPlane::open(Arc::new(config)).unwrap()
}

fn client(prevent: &str) -> UserPoolClientRecord {
    UserPoolClientRecord {
        client_id: CLIENT_ID.into(),
        client_name: "app".into(),
        creation_date: 0,
        last_modified_date: 0,
        explicit_auth_flows: vec![
            "ALLOW_USER_SRP_AUTH".into(),
            "ALLOW_USER_PASSWORD_AUTH".into(),
            "ALLOW_REFRESH_TOKEN_AUTH".into(),
        ],
        access_token_validity_secs: 3600,
        id_token_validity_secs: 3600,
        refresh_token_validity_secs: 30 * 86400,
        prevent_user_existence_errors: prevent.into(),
    }
}

fn pool() -> UserPoolRecord {
    let mut pool = UserPoolRecord {
        id: POOL_ID.into(),
        name: "app-users".into(),
        creation_date: 0,
        last_modified_date: 0,
        signing_key_pem: KEY_PEM.into(),
        kid: "kid-1".into(),
        password_policy: Default::default(),
        auto_confirm: false,
        confirmation_code: "123456".into(),
        clients: BTreeMap::new(),
        users: BTreeMap::new(),
    };
    pool.clients.insert(CLIENT_ID.into(), client("LEGACY"));
    let attributes = BTreeMap::from([("email".to_owned(), "alice@example.com".to_owned())]);
    let alice = new_user(
        &pool,
        "alice",
        PASSWORD,
        attributes,
        UserStatus::Confirmed,
        0,
    );
    pool.users.insert("alice".into(), alice);
    pool
}

/// A plane with [`pool`] in its registry.
fn plane_with_pool(dir: &std::path::Path) -> IdentityPlane {
    let plane = plane(dir);
    plane.registry.create_user_pool(pool()).unwrap();
    plane
}

fn sign_in(plane: &IdentityPlane) -> Value {
    let parameters = json!({"USERNAME": "alice", "PASSWORD": PASSWORD});
    match plane
        .initiate_auth(CLIENT_ID, "USER_PASSWORD_AUTH", &parameters)
        .unwrap()
    {
        SignIn::Tokens(tokens) => tokens,
        other => panic!("expected tokens, got {other:?}"),
    }
}

fn provider() -> String {
    format!("cognito-idp.us-east-1.amazonaws.com/{POOL_ID}")
}

#[test]
fn the_password_is_kept_only_as_a_verifier_that_recomputes() {
    let pool = pool();
    let alice = &pool.users["alice"];
    assert!(!serde_json::to_string(alice).unwrap().contains(PASSWORD));
    assert!(password_matches(&pool, alice, PASSWORD));
    assert!(!password_matches(&pool, alice, "Passw0rd?"));
    let again = new_user(
        &pool,
        "alice",
        PASSWORD,
        BTreeMap::new(),
        UserStatus::Confirmed,
        0,
    );
    assert_ne!(again.salt, alice.salt, "every password gets its own salt");
    assert_ne!(again.verifier_hex, alice.verifier_hex);
}

#[test]
fn the_default_password_policy_names_what_is_missing() {
    let policy = crate::registry::PasswordPolicy::default();
    assert_eq!(policy.check(PASSWORD), Ok(()));
    let cases = [
        ("Pa0!", "Password not long enough"),
        ("PASSW0RD!", "Password must have lowercase characters"),
        ("passw0rd!", "Password must have uppercase characters"),
        ("Password!", "Password must have numeric characters"),
        ("Passw0rdX", "Password must have symbol characters"),
    ];
    for (password, why) in cases {
        assert_eq!(
            policy.check(password),
            Err(format!("Password did not conform with policy: {why}")),
            "{password}"
        );
    }
}

#[test]
fn an_unknown_user_is_named_unless_the_client_prevents_existence_errors() {
    let pool = pool();
    let legacy = user_for_sign_in(&pool, &client("LEGACY"), "bob").unwrap_err();
    assert_eq!(
        legacy,
        idp_error("UserNotFoundException", "User does not exist.")
    );
    let enabled = user_for_sign_in(&pool, &client("ENABLED"), "bob").unwrap_err();
    assert_eq!(enabled, not_authorized(INCORRECT_PASSWORD));
    let mut disabled = pool.clone();
    disabled.users.get_mut("alice").unwrap().enabled = false;
    let error = user_for_sign_in(&disabled, &client("LEGACY"), "alice").unwrap_err();
    assert_eq!(error.message, "User is disabled.");
}

#[test]
fn token_claims_are_cognitos() {
    let pool = pool();
    let alice = &pool.users["alice"];
    let (id, access) = token_claims(
        &pool,
        &client("LEGACY"),
        alice,
        "origin",
        100,
        200,
        "event",
        ("jti-id", "jti-access"),
    );
    let issuer = format!("https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}");
    assert_eq!(id["iss"], json!(issuer));
    assert_eq!(id["aud"], json!(CLIENT_ID));
    assert_eq!(id["token_use"], json!("id"));
    assert_eq!(id["cognito:username"], json!("alice"));
    assert_eq!(id["email"], json!("alice@example.com"));
    assert_eq!(id["sub"], json!(alice.sub));
    assert_eq!(
        (id["iat"].clone(), id["exp"].clone()),
        (json!(200), json!(3800))
    );
    assert_eq!(id["auth_time"], json!(100));
    assert_eq!(id["jti"], json!("jti-id"));
    assert_eq!(access["iss"], json!(issuer));
    assert_eq!(access["client_id"], json!(CLIENT_ID));
    assert_eq!(access["token_use"], json!("access"));
    assert_eq!(access["username"], json!("alice"));
    assert_eq!(access["origin_jti"], json!("origin"));
    assert_eq!(access["jti"], json!("jti-access"));
    assert!(
        access.get("aud").is_none(),
        "access tokens carry client_id, not aud"
    );
}

#[test]
fn a_challenge_is_answered_once_and_only_within_five_minutes() {
    let pending = Pending::<u8>::new();
    pending.put("a".into(), 1000, 1);
    assert_eq!(pending.take("a", 1000 + CHALLENGE_TTL_SECS - 1), Some(1));
    assert_eq!(pending.take("a", 1001), None, "taken");
    pending.put("b".into(), 1000, 2);
    assert_eq!(
        pending.take("b", 1000 + CHALLENGE_TTL_SECS),
        None,
        "expired"
    );
}

#[test]
fn an_id_token_verifies_for_its_pools_provider_name_until_signed_out() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_pool(dir.path());
    let tokens = sign_in(&plane);
    let id_token = tokens["IdToken"].as_str().unwrap();
    let login = plane
        .verify_user_pool_id_token(&provider(), id_token)
        .unwrap();
    let sub = plane.registry.user_pool(POOL_ID).unwrap().users["alice"]
        .sub
        .clone();
    assert_eq!(
        login,
        VerifiedLogin {
            provider: provider(),
            subject: sub
        }
    );
    // Another pool's provider name, an access token, a tampered token: refused.
    let foreign = plane
        .verify_user_pool_id_token(
            "cognito-idp.us-east-1.amazonaws.com/us-east-1_Other0000",
            id_token,
        )
        .unwrap_err();
    assert!(
        foreign.contains("Issuer doesn't match providerName"),
        "{foreign}"
    );
    let access = tokens["AccessToken"].as_str().unwrap();
    let wrong_use = plane
        .verify_user_pool_id_token(&provider(), access)
        .unwrap_err();
    assert!(wrong_use.starts_with("Invalid login token."), "{wrong_use}");
    let mut parts: Vec<&str> = id_token.split('.').collect();
    parts[2] = "AAAA";
    let tampered = parts.join(".");
    let bad = plane
        .verify_user_pool_id_token(&provider(), &tampered)
        .unwrap_err();
    assert!(bad.contains("Couldn't verify signed token"), "{bad}");
    // After GlobalSignOut the same token is refused.
    let grant = plane.verify_access_token(access).unwrap();
    assert_eq!(plane.global_sign_out(&grant).unwrap(), 1);
    let revoked = plane
        .verify_user_pool_id_token(&provider(), id_token)
        .unwrap_err();
    assert!(revoked.contains("revoked"), "{revoked}");
}

#[test]
fn after_global_sign_out_access_and_refresh_tokens_are_revoked_but_a_new_sign_in_works() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_pool(dir.path());
    let first = sign_in(&plane);
    let access = first["AccessToken"].as_str().unwrap();
    let refresh = json!({"REFRESH_TOKEN": first["RefreshToken"]});
    let refreshed = plane
        .initiate_auth(CLIENT_ID, "REFRESH_TOKEN_AUTH", &refresh)
        .unwrap();
    let SignIn::Tokens(refreshed) = refreshed else {
        panic!("refresh gives tokens")
    };
    assert!(refreshed.get("RefreshToken").is_none());
    let grant = plane.verify_access_token(access).unwrap();
    plane.global_sign_out(&grant).unwrap();
    let error = plane.verify_access_token(access).err().unwrap();
    assert_eq!(error, not_authorized("Access Token has been revoked"));
    let newer = refreshed["AccessToken"].as_str().unwrap();
    assert_eq!(
        plane.verify_access_token(newer).err().unwrap().message,
        "Access Token has been revoked",
        "tokens refreshed in a signed-out sign-in are revoked too"
    );
    let error = plane
        .initiate_auth(CLIENT_ID, "REFRESH_TOKEN_AUTH", &refresh)
        .unwrap_err();
    assert_eq!(error, not_authorized("Refresh Token has been revoked"));
    let unknown = json!({"REFRESH_TOKEN": "nope"});
    let error = plane
        .initiate_auth(CLIENT_ID, "REFRESH_TOKEN_AUTH", &unknown)
        .unwrap_err();
    assert_eq!(error, not_authorized("Invalid Refresh Token"));
    let second = sign_in(&plane);
    assert!(plane
        .verify_access_token(second["AccessToken"].as_str().unwrap())
        .is_ok());
}

#[test]
fn the_refresh_token_is_kept_only_as_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_pool(dir.path());
    let tokens = sign_in(&plane);
    let refresh = tokens["RefreshToken"].as_str().unwrap();
    let file = std::fs::read_to_string(plane.registry.path()).unwrap();
    assert!(!file.contains(refresh));
    assert!(file.contains(&refresh_token_digest(refresh)));
}

#[test]
fn a_wrong_password_and_an_unconfirmed_user_are_refused_as_cognito_does() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_pool(dir.path());
    let wrong = json!({"USERNAME": "alice", "PASSWORD": "Wr0ng!pass"});
    let error = plane
        .initiate_auth(CLIENT_ID, "USER_PASSWORD_AUTH", &wrong)
        .unwrap_err();
    assert_eq!(error, not_authorized(INCORRECT_PASSWORD));
    plane
        .registry
        .change_user_pool(POOL_ID, |pool| {
            pool.users.get_mut("alice").unwrap().status = UserStatus::Unconfirmed;
            Ok(())
        })
        .unwrap();
    // Cognito names an unconfirmed user whatever the password.
    for password in [PASSWORD, "Wr0ng!pass"] {
        let parameters = json!({"USERNAME": "alice", "PASSWORD": password});
        let error = plane
            .initiate_auth(CLIENT_ID, "USER_PASSWORD_AUTH", &parameters)
            .unwrap_err();
        assert_eq!(
            error,
            idp_error("UserNotConfirmedException", "User is not confirmed.")
        );
    }
}

#[test]
fn a_flow_the_client_does_not_allow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_pool(dir.path());
    plane
        .registry
        .change_user_pool(POOL_ID, |pool| {
            pool.clients.get_mut(CLIENT_ID).unwrap().explicit_auth_flows =
                vec!["ALLOW_USER_SRP_AUTH".into()];
            Ok(())
        })
        .unwrap();
    let parameters = json!({"USERNAME": "alice", "PASSWORD": PASSWORD});
    let error = plane
        .initiate_auth(CLIENT_ID, "USER_PASSWORD_AUTH", &parameters)
        .unwrap_err();
    assert_eq!(
        error,
        idp_error(
            "InvalidParameterException",
            "USER_PASSWORD_AUTH flow not enabled for this client"
        )
    );
}

#[test]
fn an_srp_sign_in_with_the_client_side_of_the_same_module_gets_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane_with_pool(dir.path());
    let a_random = [7u8; 32];
    let challenge = || {
        let parameters = json!({"USERNAME": "alice", "SRP_A": srp::client_public(&a_random)});
        match plane
            .initiate_auth(CLIENT_ID, "USER_SRP_AUTH", &parameters)
            .unwrap()
        {
            SignIn::Challenge {
                name: "PASSWORD_VERIFIER",
                parameters,
                session: None,
            } => parameters,
            other => panic!("a PASSWORD_VERIFIER challenge, not {other:?}"),
        }
    };
    let timestamp = srp::timestamp(now_secs());
    let answer = |parameters: &Value, password: &str| {
        let field = |name: &str| parameters[name].as_str().unwrap().to_owned();
        let signature = srp::client_claim(
            "AbCdEf123",
            &field("USER_ID_FOR_SRP"),
            password,
            &a_random,
            &field("SALT"),
            &field("SRP_B"),
            &field("SECRET_BLOCK"),
            &timestamp,
        )
        .unwrap();
        json!({
            "USERNAME": field("USER_ID_FOR_SRP"),
            "PASSWORD_CLAIM_SECRET_BLOCK": field("SECRET_BLOCK"),
            "PASSWORD_CLAIM_SIGNATURE": signature,
            "TIMESTAMP": timestamp,
        })
    };
    let first = challenge();
    let wrong = plane
        .respond_to_auth_challenge(
            CLIENT_ID,
            "PASSWORD_VERIFIER",
            &answer(&first, "Wr0ng!pass"),
            None,
        )
        .unwrap_err();
    assert_eq!(wrong, not_authorized(INCORRECT_PASSWORD));
    // The challenge was used up by the wrong answer.
    let again = plane
        .respond_to_auth_challenge(
            CLIENT_ID,
            "PASSWORD_VERIFIER",
            &answer(&first, PASSWORD),
            None,
        )
        .unwrap_err();
    assert_eq!(again.kind, "NotAuthorizedException");
    assert!(again.message.contains("session is expired"), "{again:?}");
    let second = challenge();
    let signed_in = plane
        .respond_to_auth_challenge(
            CLIENT_ID,
            "PASSWORD_VERIFIER",
            &answer(&second, PASSWORD),
            None,
        )
        .unwrap();
    let SignIn::Tokens(tokens) = signed_in else {
        panic!("tokens after the right answer")
    };
    let login = plane
        .verify_user_pool_id_token(&provider(), tokens["IdToken"].as_str().unwrap())
        .unwrap();
    assert_eq!(login.provider, provider());
}
