//! Auth: Basic and Bearer challenges, token scope, reuse and expiry, refusals, failing token
//! endpoints, and secrets kept out of errors and `Debug` output.

use super::*;

/// `Basic base64(USER:password)`'s encoded part.
fn basic_token(password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"))
}

#[tokio::test]
async fn a_basic_challenge_is_answered_once_with_the_credentials() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let pulled = f.pull(&f.client_with_creds(PASSWORD)).await.unwrap();
    f.assert_pulled(&pulled);
    let requests = f.mock.requests();
    let challenged: Vec<&Request> = requests.iter().filter(|r| r.status == Some(401)).collect();
    assert_eq!(challenged.len(), 1, "{requests:#?}");
    assert_eq!(challenged[0].seq, 0);
    assert_eq!(challenged[0].auth_scheme(), None);
    for r in &requests[1..] {
        assert_eq!(
            (r.auth_scheme(), r.status),
            (Some("Basic"), Some(200)),
            "{r:#?}"
        );
    }
    assert!(f.mock.requests_to(&When::Token).is_empty());
}

/// Assert one token request, anonymous or not, for `lib/app`'s pull scope of `service`;
/// that only the first request was challenged; and that every later one bore the token.
fn assert_one_token(requests: &[Request], service: &str, token_auth: Option<&str>) {
    let tokens: Vec<&Request> = requests
        .iter()
        .filter(|r| r.route == mock::Route::Token)
        .collect();
    assert_eq!(tokens.len(), 1, "{requests:#?}");
    assert_eq!(tokens[0].scopes(), [format!("repository:{REPO}:pull")]);
    assert_eq!(tokens[0].query("service"), Some(service));
    assert_eq!(tokens[0].auth_scheme(), token_auth);
    assert_eq!(tokens[0].status, Some(200));
    let challenged: Vec<&Request> = requests.iter().filter(|r| r.status == Some(401)).collect();
    assert_eq!(challenged.len(), 1, "{requests:#?}");
    assert_eq!(challenged[0].seq, 0);
    for r in requests.iter().filter(|r| r.seq > tokens[0].seq) {
        assert_eq!(
            (r.auth_scheme(), r.status),
            (Some("Bearer"), Some(200)),
            "{r:#?}"
        );
    }
}

#[tokio::test]
async fn a_bearer_token_is_fetched_for_the_scope_and_reused() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    assert_one_token(&f.mock.requests(), "mock-service", None);
}

#[tokio::test]
async fn a_bearer_challenge_without_a_scope_gets_the_clients_own() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        scope_in_challenge: false,
        ..Bearer::anonymous("mock-service")
    }));
    let pulled = f.pull(&f.client()).await.unwrap();
    f.assert_pulled(&pulled);
    assert_one_token(&f.mock.requests(), "mock-service", None);
}

#[tokio::test]
async fn a_token_endpoint_wanting_credentials_gets_them() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), PASSWORD.into())),
        expires_in: Some(300),
        ..Bearer::anonymous("mock-service")
    }));
    let pulled = f.pull(&f.client_with_creds(PASSWORD)).await.unwrap();
    f.assert_pulled(&pulled);
    assert_one_token(&f.mock.requests(), "mock-service", Some("Basic"));
}

#[tokio::test]
async fn an_expired_token_is_fetched_again() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    let registry = f.registry(&f.client());
    registry.manifest(REPO, TAG, None).await.unwrap();
    assert_eq!(f.mock.requests_to(&When::Token).len(), 1);

    f.mock.expire_tokens();
    let config = Descriptor::new(
        mock::image::OCI_CONFIG.into(),
        f.image.config.len() as u64,
        f.image.config_digest(),
    );
    fetch_blob(&registry, &f.store, REPO, &config, &Recorder::default())
        .await
        .unwrap();
    assert!(f.store.has_blob(&f.image.config_digest(), None));
    let tokens = f.mock.requests_to(&When::Token);
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[1].scopes(), [format!("repository:{REPO}:pull")]);
    let blobs = f.mock.requests_to(&When::Blobs);
    assert_eq!(statuses(&blobs), [Some(401), Some(200)]);
    assert_eq!(
        blobs[0].header("authorization"),
        Some("Bearer mock-token-1")
    );
    assert_eq!(
        blobs[1].header("authorization"),
        Some("Bearer mock-token-2")
    );
}

#[tokio::test]
async fn anonymous_access_refused_says_so() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let err = f.pull(&f.client()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "anonymous access",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.contains(&format!("manifest {}/{REPO}:{TAG}", f.mock.host())),
        "{message}"
    );
    assert!(message.contains("refused anonymous access"), "{message}");
    assert_eq!(f.mock.requests().len(), 1, "{:#?}", f.mock.requests());

    // The same when it is the token endpoint that wants credentials.
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), PASSWORD.into())),
        ..Bearer::anonymous("mock-service")
    }));
    let err = f.pull(&f.client()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "anonymous access",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains("token for manifest"), "{message}");
    assert_eq!(f.mock.requests_to(&When::Token).len(), 1);
}

#[tokio::test]
async fn a_failing_token_endpoint_gives_a_clear_error() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    f.mock.inject(When::Token, Fault::status(500), ALWAYS);
    let registry = f.registry(&f.client());
    let err = registry.manifest(REPO, TAG, None).await.unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, Error::Status { status, .. } if *status == StatusCode::INTERNAL_SERVER_ERROR),
        "{err:?}"
    );
    let what = format!("token for manifest {}/{REPO}:{TAG}", f.mock.host());
    assert!(message.starts_with(&what), "{message}");
    assert_eq!(f.mock.requests_to(&When::Token).len(), TRIES as usize);

    // A token answer without a token.
    f.mock.clear_faults();
    f.mock.inject(
        When::Token,
        Fault::Answer {
            status: 200,
            content_type: "application/json".into(),
            body: br#"{"expires_in": 60}"#.to_vec(),
        },
        1,
    );
    let err = registry.manifest(REPO, TAG, None).await.unwrap_err();
    assert!(matches!(&err, Error::Protocol { .. }), "{err:?}");
    assert!(
        err.to_string().contains("neither token nor access_token"),
        "{err}"
    );
}

#[tokio::test]
async fn the_password_never_appears_in_errors_or_debug_output() {
    let encoded = basic_token(PASSWORD);
    let mut seen: Vec<String> = Vec::new();
    let mut keep = |s: String| seen.push(s);

    // Basic: a wrong password refused, then the right one accepted and cached.
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: "another".into(),
    });
    let client = f.client_with_creds(PASSWORD);
    let err = f.pull(&client).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "the credentials",
                ..
            }
        ),
        "{err:?}"
    );
    keep(format!("{err} {err:?}"));
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let client = f.client_with_creds(PASSWORD);
    f.pull(&client).await.unwrap();
    keep(format!(
        "{client:?} {:?} {:?}",
        f.registry(&client),
        client.options()
    ));
    keep(f.notes.all().join("\n"));
    // The mock did see it (so the checks below look for the right thing).
    assert!(
        f.mock
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Basic {encoded}")))
    );

    // Bearer: the token endpoint refusing the credentials, then failing.
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), "another".into())),
        ..Bearer::anonymous("mock-service")
    }));
    let client = f.client_with_creds(PASSWORD);
    let err = f.pull(&client).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "the credentials",
                ..
            }
        ),
        "{err:?}"
    );
    keep(format!("{err} {err:?}"));
    f.mock.inject(When::Token, Fault::status(503), ALWAYS);
    let err = f.pull(&client).await.unwrap_err();
    keep(format!("{err} {err:?} {client:?}"));
    keep(f.notes.all().join("\n"));

    for text in &seen {
        assert!(!text.contains(PASSWORD), "the password shows in: {text}");
        assert!(
            !text.contains(&encoded),
            "the encoded credentials show in: {text}"
        );
    }
}

#[tokio::test]
async fn a_rate_limited_token_endpoint_is_retried() {
    let f = Fixture::new();
    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    f.mock.inject(When::Token, Fault::retry_after(429, "0"), 1);
    let fetched = f
        .registry(&f.client())
        .manifest(REPO, TAG, None)
        .await
        .unwrap();
    assert_eq!(fetched.digest, f.image.manifest_digest());
    assert_eq!(
        statuses(&f.mock.requests_to(&When::Token)),
        [Some(429), Some(200)]
    );
}

#[tokio::test]
async fn login_checks_the_credentials() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    let client = f.client();
    let right = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    client.check_login(&f.mock.host(), &right).await.unwrap();
    let wrong = Credentials {
        password: "another".into(),
        ..right
    };
    let err = client
        .check_login(&f.mock.host(), &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Unauthorized {
                refused: "the credentials",
                ..
            }
        ),
        "{err:?}"
    );
    let pings = f.mock.requests_to(&When::Ping);
    assert_eq!(
        statuses(&pings),
        [Some(401), Some(200), Some(401), Some(401)]
    );
}

#[tokio::test]
async fn login_to_a_token_registry_sends_the_credentials_to_its_endpoint() {
    let f = Fixture::new();
    f.mock.set_auth(Auth::Bearer(Bearer {
        credentials: Some((USER.into(), PASSWORD.into())),
        ..Bearer::anonymous("mock-service")
    }));
    let right = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    f.client()
        .check_login(&f.mock.host(), &right)
        .await
        .unwrap();
    let tokens = f.mock.requests_to(&When::Token);
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].auth_scheme(), Some("Basic"));
    assert_eq!(tokens[0].scopes(), Vec::<&str>::new());
    assert_eq!(
        statuses(&f.mock.requests_to(&When::Ping)),
        [Some(401), Some(200)]
    );
}
