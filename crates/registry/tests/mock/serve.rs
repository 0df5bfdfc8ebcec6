//! Answering requests: routing, auth, the token endpoint, contents with ranges, and the
//! scripted faults.

use std::sync::Arc;

use base64::Engine as _;
use tokio::net::TcpStream;

use super::http::{Answer, Conn, Incoming, parse_range};
use super::{Auth, Bearer, Content, Fault, Grant, Inner, Request, Route, State};

/// Serve requests on one connection until either side closes it.
pub(super) async fn connection(state: Arc<State>, stream: TcpStream) {
    let mut conn = Conn::new(stream);
    loop {
        let incoming = match conn.read_request().await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => return,
            Err(reason) => {
                state.record(Request {
                    seq: 0,
                    method: String::new(),
                    path: reason,
                    query: Vec::new(),
                    headers: Vec::new(),
                    body_len: 0,
                    route: Route::NotHttp,
                    status: None,
                    fault: None,
                });
                let answer = Answer::error(400, "BAD_REQUEST", "not an HTTP/1.1 request");
                let _ = conn.send(&answer.head(false)).await;
                let _ = conn.send(&answer.body).await;
                conn.close().await;
                return;
            }
        };
        match respond(&state, conn, incoming).await {
            Some(kept) => conn = kept,
            None => return,
        }
    }
}

/// How an answer goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Whole,
    Cut(usize),
    CutChunked(usize),
    Stall(Option<usize>),
    Reset,
}

/// Answer one request; returns the connection when it stays open for the next.
async fn respond(state: &State, mut conn: Conn, incoming: Incoming) -> Option<Conn> {
    let route = Route::of(&incoming.path);
    let fault = state.take_fault(&route);
    let (answer, delivery) = decide(state, &incoming, &route, fault.as_ref());
    let sent_status = match delivery {
        Delivery::Reset | Delivery::Stall(None) => None,
        _ => Some(answer.status),
    };
    state.record(Request {
        seq: 0,
        method: incoming.method.clone(),
        path: incoming.path.clone(),
        query: incoming.query.clone(),
        headers: incoming.headers.clone(),
        body_len: incoming.body.len(),
        route,
        status: sent_status,
        fault,
    });
    let body: &[u8] = if answer.head_only { &[] } else { &answer.body };
    match delivery {
        Delivery::Whole => {
            let mut out = answer.head(false);
            out.extend_from_slice(body);
            conn.send(&out).await.ok()?;
            if incoming.wants_close() {
                conn.close().await;
                return None;
            }
            Some(conn)
        }
        Delivery::Cut(after) => {
            let mut out = answer.head(false);
            out.extend_from_slice(&body[..after.min(body.len())]);
            let _ = conn.send(&out).await;
            conn.close().await;
            None
        }
        Delivery::CutChunked(after) => {
            let mut out = answer.head(true);
            let part = &body[..after.min(body.len())];
            if !part.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            let _ = conn.send(&out).await;
            conn.close().await;
            None
        }
        Delivery::Stall(after) => {
            if let Some(after) = after {
                let mut out = answer.head(false);
                out.extend_from_slice(&body[..after.min(body.len())]);
                let _ = conn.send(&out).await;
            }
            conn.stall().await;
            None
        }
        Delivery::Reset => {
            conn.reset();
            None
        }
    }
}

/// Content changes a fault asks for.
#[derive(Debug, Default)]
struct Tweaks {
    ignore_range: bool,
    corrupt_at: Option<usize>,
    /// The `Docker-Content-Digest` to announce instead of the right one (`Some(None)`: none).
    announce: Option<Option<String>>,
}

/// The answer to `incoming` and how to deliver it, given the fault scripted for it.
fn decide(
    state: &State,
    incoming: &Incoming,
    route: &Route,
    fault: Option<&Fault>,
) -> (Answer, Delivery) {
    let mut tweaks = Tweaks::default();
    let mut delivery = Delivery::Whole;
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            code,
        }) => {
            let mut answer = Answer::error(*status, code, "injected fault");
            if let Some(after) = retry_after {
                answer = answer.with("Retry-After", after.as_str());
            }
            return (answer, Delivery::Whole);
        }
        Some(Fault::Answer {
            status,
            content_type,
            body,
        }) => return (Answer::new(*status, content_type, body.clone()), delivery),
        Some(Fault::Reset) => delivery = Delivery::Reset,
        Some(Fault::Cut { after }) => delivery = Delivery::Cut(*after),
        Some(Fault::CutChunked { after }) => delivery = Delivery::CutChunked(*after),
        Some(Fault::Stall { after }) => delivery = Delivery::Stall(*after),
        Some(Fault::IgnoreRange) => tweaks.ignore_range = true,
        Some(Fault::Corrupt { at }) => tweaks.corrupt_at = Some(*at),
        Some(Fault::AnnounceDigest(d)) => tweaks.announce = Some(d.clone()),
        None => {}
    }
    let mut inner = state.lock();
    let answer = if *route == Route::Token {
        token(&mut inner, incoming)
    } else if matches!(route, Route::Unknown | Route::NotHttp) {
        not_found(incoming)
    } else if let Some(refusal) = authorize(&inner, state, incoming, route) {
        refusal
    } else {
        dispatch(&inner, incoming, route, &tweaks)
    };
    let mut answer = answer;
    answer.head_only = incoming.method == "HEAD";
    (answer, delivery)
}

fn not_found(incoming: &Incoming) -> Answer {
    Answer::error(
        404,
        "NOT_FOUND",
        &format!("no route for {} {}", incoming.method, incoming.path),
    )
}

/// A request to a registry route, once authorized.
fn dispatch(inner: &Inner, incoming: &Incoming, route: &Route, tweaks: &Tweaks) -> Answer {
    let read = matches!(incoming.method.as_str(), "GET" | "HEAD");
    match route {
        Route::Ping if read => Answer::json(200, &serde_json::json!({})),
        Route::Manifest { repo, reference } if read => {
            let Some(r) = inner.repos.get(repo) else {
                return Answer::error(404, "NAME_UNKNOWN", "repository name not known to registry");
            };
            let digest = r.tags.get(reference).unwrap_or(reference);
            match r.manifests.get(digest) {
                Some(content) => serve_content(content, digest, incoming, tweaks, false),
                None => Answer::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            }
        }
        Route::Blob { repo, digest } if read => {
            match inner.repos.get(repo).and_then(|r| r.blobs.get(digest)) {
                Some(content) => serve_content(content, digest, incoming, tweaks, true),
                None => Answer::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            }
        }
        Route::Upload { .. } => upload(inner, incoming, route),
        _ => Answer::error(
            405,
            "UNSUPPORTED",
            &format!("{} is not supported here", incoming.method),
        ),
    }
}

/// Blob uploads (`POST`/`PATCH`/`PUT` on `/v2/NAME/blobs/uploads/…`): not implemented yet;
/// push tests add them here.
fn upload(_inner: &Inner, incoming: &Incoming, _route: &Route) -> Answer {
    Answer::error(
        404,
        "UNSUPPORTED",
        &format!(
            "{} {}: uploads are not implemented by the mock",
            incoming.method, incoming.path
        ),
    )
}

/// A manifest or blob, whole or the range asked for (`ranged`: blobs honour `Range`).
fn serve_content(
    content: &Content,
    digest: &str,
    incoming: &Incoming,
    tweaks: &Tweaks,
    ranged: bool,
) -> Answer {
    let mut bytes = content.bytes.as_ref().clone();
    if let Some(byte) = tweaks.corrupt_at.and_then(|at| bytes.get_mut(at)) {
        *byte ^= 0xff;
    }
    let announced = match &tweaks.announce {
        Some(instead) => instead.clone(),
        None => Some(digest.to_string()),
    };
    let len = bytes.len() as u64;
    let range = incoming
        .header("range")
        .filter(|_| ranged && !tweaks.ignore_range)
        .and_then(parse_range);
    let base = |status: u16, body: Vec<u8>| {
        let answer = Answer::new(status, &content.media_type, body);
        match &announced {
            Some(d) => answer.with("Docker-Content-Digest", d.as_str()),
            None => answer,
        }
    };
    let Some((start, end)) = range else {
        let answer = base(200, bytes);
        return if ranged {
            answer.with("Accept-Ranges", "bytes")
        } else {
            answer
        };
    };
    if start >= len {
        return Answer::error(416, "RANGE_INVALID", "requested range not satisfiable")
            .with("Content-Range", format!("bytes */{len}"));
    }
    let last = end.map_or(len - 1, |e| e.min(len - 1));
    if last < start {
        return Answer::error(416, "RANGE_INVALID", "requested range not satisfiable")
            .with("Content-Range", format!("bytes */{len}"));
    }
    // Both bounds are below `len`, which came from a Vec's length.
    let body = bytes[start as usize..=last as usize].to_vec();
    base(206, body).with("Content-Range", format!("bytes {start}-{last}/{len}"))
}

/// The scope a route needs: (repository, action).
fn needed_scope(route: &Route) -> Option<(&str, &'static str)> {
    match route {
        Route::Manifest { repo, .. } | Route::Blob { repo, .. } => Some((repo, "pull")),
        Route::Upload { repo, .. } => Some((repo, "push")),
        _ => None,
    }
}

/// `Basic base64(user:pass)`.
fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The 401 to answer when `incoming` is not authorized for `route`; `None` when it is.
fn authorize(inner: &Inner, state: &State, incoming: &Incoming, route: &Route) -> Option<Answer> {
    let given = incoming.header("authorization");
    let refuse = |challenge: String| {
        Some(
            Answer::error(401, "UNAUTHORIZED", "authentication required")
                .with("WWW-Authenticate", challenge),
        )
    };
    match &inner.auth {
        Auth::None => None,
        Auth::Basic { username, password } => {
            if given == Some(basic(username, password).as_str()) {
                None
            } else {
                refuse(r#"Basic realm="mock-registry""#.into())
            }
        }
        Auth::Bearer(bearer) => {
            let token = given.and_then(|v| v.strip_prefix("Bearer "));
            let grant = token.and_then(|t| inner.tokens.get(t));
            let needed = needed_scope(route);
            let granted = grant.is_some_and(|g| {
                g.valid
                    && needed.is_none_or(|(repo, action)| {
                        g.scopes.iter().any(|s| scope_allows(s, repo, action))
                    })
            });
            if granted {
                return None;
            }
            refuse(challenge(bearer, state, needed, token.is_some()))
        }
    }
}

/// A Bearer challenge pointing at this server's token endpoint.
fn challenge(
    bearer: &Bearer,
    state: &State,
    needed: Option<(&str, &str)>,
    token_refused: bool,
) -> String {
    let mut value = format!(
        r#"Bearer realm="http://{}/token",service="{}""#,
        state.addr, bearer.service
    );
    if let Some((repo, action)) = needed.filter(|_| bearer.scope_in_challenge) {
        value.push_str(&format!(r#",scope="repository:{repo}:{action}""#));
    }
    if token_refused {
        value.push_str(r#",error="invalid_token""#);
    }
    value
}

/// `repository:NAME:ACTIONS` as (name, actions).
fn parse_scope(scope: &str) -> Option<(&str, Vec<&str>)> {
    let (name, actions) = scope.strip_prefix("repository:")?.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    (!name.is_empty() && !actions.is_empty()).then_some((name, actions))
}

/// Whether `scope` grants `action` on `repo`.
fn scope_allows(scope: &str, repo: &str, action: &str) -> bool {
    parse_scope(scope).is_some_and(|(name, actions)| {
        name == repo && actions.iter().any(|a| *a == action || *a == "*")
    })
}

/// The token endpoint: checks `service`, each `scope` and the credentials, then gives out a
/// token for the scopes asked.
fn token(inner: &mut Inner, incoming: &Incoming) -> Answer {
    let Auth::Bearer(bearer) = &inner.auth else {
        return Answer::error(404, "NOT_FOUND", "this registry has no token service");
    };
    if incoming.method != "GET" {
        return Answer::error(
            405,
            "UNSUPPORTED",
            "the mock's token endpoint takes GET only",
        );
    }
    let query = |key: &'static str| {
        incoming
            .query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if query("service").next() != Some(bearer.service.as_str()) {
        return Answer::error(400, "INVALID_REQUEST", "unknown or missing service");
    }
    let scopes: Vec<String> = query("scope")
        .flat_map(|v| v.split(' '))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = scopes.iter().find(|s| parse_scope(s).is_none()) {
        return Answer::error(400, "INVALID_REQUEST", &format!("malformed scope {bad:?}"));
    }
    if let Some((username, password)) = &bearer.credentials
        && incoming.header("authorization") != Some(basic(username, password).as_str())
    {
        return Answer::error(401, "UNAUTHORIZED", "credentials required or refused")
            .with("WWW-Authenticate", r#"Basic realm="mock-token""#);
    }
    let expires_in = bearer.expires_in;
    let token = format!("mock-token-{}", inner.tokens.len() + 1);
    inner.tokens.insert(
        token.clone(),
        Grant {
            scopes,
            valid: true,
        },
    );
    let mut body = serde_json::json!({"token": token, "access_token": token});
    if let Some(seconds) = expires_in {
        body["expires_in"] = seconds.into();
    }
    Answer::json(200, &body)
}
