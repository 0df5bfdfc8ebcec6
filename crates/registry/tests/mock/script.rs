//! What a test tells the mock and reads back from it: the faults to script ([`Fault`],
//! [`When`]), the authentication to ask for ([`Auth`], [`Bearer`]), and the record of each
//! request ([`Request`], [`Route`]).

use img_store::Digest;

use super::http;

/// `times` for a fault that applies to every matching request.
pub const ALWAYS: usize = usize::MAX;

/// Something to do to one response instead of answering it normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `status` with a registry-style JSON error (`{"errors":[{"code":…}]}`) and, if
    /// given, `Retry-After`. Applied before auth, as a front proxy or load balancer would.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` value (seconds or an HTTP date), if any.
        retry_after: Option<String>,
        /// The error code in the body (`UNAVAILABLE`, `TOOMANYREQUESTS`, …).
        code: String,
    },
    /// Answer this instead (a malformed token answer, say). Applied before auth.
    Answer {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type`.
        content_type: String,
        /// The body.
        body: Vec<u8>,
    },
    /// Send the headers (announcing the whole length) and the first `after` bytes of the
    /// body, then close the connection.
    Cut {
        /// Body bytes sent before the cut.
        after: usize,
    },
    /// Send the body chunked, and close the connection after its first `after` bytes,
    /// without the final empty chunk. `after` may be the whole body: every byte arrives, and
    /// still the response never ends properly.
    CutChunked {
        /// Body bytes sent before the cut.
        after: usize,
    },
    /// Send the headers and the first `after` bytes of the body (`None`: not even the
    /// headers), then nothing until the client closes the connection.
    Stall {
        /// Body bytes sent before the stall; `None`: stall before the status line.
        after: Option<usize>,
    },
    /// Answer a range request with `200` and the whole content, as servers without range
    /// support do.
    IgnoreRange,
    /// Flip every bit of the content's byte at offset `at` (counted from the content's
    /// start, whatever range is asked).
    Corrupt {
        /// The offset of the byte.
        at: usize,
    },
    /// Announce this `Docker-Content-Digest` instead of the content's; `None`: announce
    /// none, as some proxies do.
    AnnounceDigest(Option<String>),
    /// Read the request, then reset the connection (RST) without answering.
    Reset,
}

impl Fault {
    /// `status` with a JSON error body whose code fits the status.
    pub fn status(status: u16) -> Fault {
        let code = match status {
            401 => "UNAUTHORIZED",
            403 => "DENIED",
            404 => "NOT_FOUND",
            429 => "TOOMANYREQUESTS",
            _ => "UNAVAILABLE",
        };
        Fault::Status {
            status,
            retry_after: None,
            code: code.into(),
        }
    }

    /// `status` with `Retry-After: value`.
    pub fn retry_after(status: u16, value: &str) -> Fault {
        match Fault::status(status) {
            Fault::Status { status, code, .. } => Fault::Status {
                status,
                retry_after: Some(value.into()),
                code,
            },
            other => other,
        }
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Every request.
    Any,
    /// `GET /v2/`.
    Ping,
    /// Every manifest request.
    Manifests,
    /// Requests for the manifest with this reference (a tag or a digest, as requested).
    Manifest(String),
    /// Every blob request (not uploads).
    Blobs,
    /// Requests for the blob with this digest.
    Blob(String),
    /// Requests to the token endpoint.
    Token,
}

impl When {
    /// Requests for the blob `digest`.
    pub fn blob(digest: &Digest) -> When {
        When::Blob(digest.to_string())
    }

    /// Whether a request to `route` matches.
    pub fn matches(&self, route: &Route) -> bool {
        match (self, route) {
            (When::Any, _) | (When::Ping, Route::Ping) | (When::Token, Route::Token) => true,
            (When::Manifests, Route::Manifest { .. }) | (When::Blobs, Route::Blob { .. }) => true,
            (When::Manifest(want), Route::Manifest { reference, .. }) => want == reference,
            (When::Blob(want), Route::Blob { digest, .. }) => want == digest,
            _ => false,
        }
    }
}

/// What a request asked for, by method-independent path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`.
    Ping,
    /// `/v2/NAME/manifests/REFERENCE`.
    Manifest {
        /// The repository.
        repo: String,
        /// The tag or digest.
        reference: String,
    },
    /// `/v2/NAME/blobs/DIGEST`.
    Blob {
        /// The repository.
        repo: String,
        /// The digest.
        digest: String,
    },
    /// `/v2/NAME/blobs/uploads/…` (push).
    Upload {
        /// The repository.
        repo: String,
        /// What follows `uploads/` (a session id, or nothing).
        session: String,
    },
    /// The token endpoint, `/token`.
    Token,
    /// Anything else (answered 404).
    Unknown,
    /// Bytes that were not an HTTP request (a TLS hello sent to this plain port).
    NotHttp,
}

impl Route {
    /// The route of `path`.
    pub fn of(path: &str) -> Route {
        if path == "/token" {
            return Route::Token;
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Route::Unknown;
        };
        if rest.is_empty() {
            return Route::Ping;
        }
        if let Some((repo, session)) = rest.split_once("/blobs/uploads") {
            let session = session.trim_start_matches('/').to_string();
            return Route::Upload {
                repo: repo.into(),
                session,
            };
        }
        let split = |marker: &str| {
            rest.rsplit_once(marker)
                .filter(|(repo, what)| !repo.is_empty() && !what.is_empty() && !what.contains('/'))
                .map(|(repo, what)| (repo.to_string(), what.to_string()))
        };
        if let Some((repo, reference)) = split("/manifests/") {
            return Route::Manifest { repo, reference };
        }
        if let Some((repo, digest)) = split("/blobs/") {
            return Route::Blob { repo, digest };
        }
        Route::Unknown
    }

    /// The repository this route is about, if any.
    pub fn repo(&self) -> Option<&str> {
        match self {
            Route::Manifest { repo, .. }
            | Route::Blob { repo, .. }
            | Route::Upload { repo, .. } => Some(repo),
            _ => None,
        }
    }
}

/// One request as the mock saw it, and what it answered.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its number, from 0, in arrival order.
    pub seq: usize,
    /// `GET`, `HEAD`, … (empty for [`Route::NotHttp`]).
    pub method: String,
    /// The path, without the query (for [`Route::NotHttp`]: why it is not HTTP).
    pub path: String,
    /// The query's pairs, decoded (`scope`, `service` of a token request).
    pub query: Vec<(String, String)>,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The request body's length.
    pub body_len: usize,
    /// What it asked for.
    pub route: Route,
    /// The status answered; `None` when no status line was sent (a reset, a stall before
    /// the headers, not HTTP).
    pub status: Option<u16>,
    /// The scripted fault applied to it, if any.
    pub fault: Option<Fault>,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    /// The `Range` header.
    pub fn range(&self) -> Option<&str> {
        self.header("range")
    }

    /// The scheme of the `Authorization` header (`Basic`, `Bearer`), if one was sent.
    pub fn auth_scheme(&self) -> Option<&str> {
        self.header("authorization")
            .map(|v| v.split(' ').next().unwrap_or(v))
    }

    /// The first query value of `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The scopes a token request asked for (each `scope` parameter, split at spaces).
    pub fn scopes(&self) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// The authentication the registry asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// None: everything is public.
    #[default]
    None,
    /// HTTP Basic with this user name and password on every `/v2/` request.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// Bearer tokens from the token endpoint at `/token` on this server.
    Bearer(Bearer),
}

/// How the token service behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    /// The `service` the challenge names; a token request for another is refused (400).
    pub service: String,
    /// The user name and password the token endpoint wants (Basic); `None`: it gives
    /// tokens to anyone.
    pub credentials: Option<(String, String)>,
    /// The `expires_in` of its answers, if it gives one.
    pub expires_in: Option<u64>,
    /// Whether challenges name the scope (distribution's do; some registries' do not).
    pub scope_in_challenge: bool,
}

impl Bearer {
    /// A token service for `service` that gives tokens to anyone, named in challenges with
    /// their scope.
    pub fn anonymous(service: &str) -> Bearer {
        Bearer {
            service: service.into(),
            credentials: None,
            expires_in: None,
            scope_in_challenge: true,
        }
    }
}
