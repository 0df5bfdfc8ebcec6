//! HTTP/1.1 by hand: reading one request off a connection, writing an answer whole or in
//! the broken ways the faults ask for, and the small parsers the mock needs.
//!
//! Hand-written rather than hyper's server so that a response can be cut after any byte,
//! stalled, or reset, and so that a TLS hello sent to this plain port is refused at once.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes a request's line and headers may take.
const MAX_HEAD: usize = 64 * 1024;
/// The largest request body read (for upload tests).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request as read off the wire.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` or chunked).
    pub body: Vec<u8>,
}

impl Incoming {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the client asked to close the connection after this answer.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// The first value of header `name` (any case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Buffered reading from a connection; bytes read past one request stay for the next.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Wrap an accepted connection.
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Read more bytes into the buffer; `Ok(false)` at end of stream.
    async fn more(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Take the buffered bytes up to and including the first `pattern`, reading as needed;
    /// fails past `limit` bytes or at end of stream.
    async fn until(&mut self, pattern: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        loop {
            if let Some(at) = find(&self.buf, pattern) {
                return Ok(self.buf.drain(..at + pattern.len()).collect());
            }
            if self.buf.len() > limit {
                return Err(format!("no {pattern:?} within {limit} bytes"));
            }
            if !self.more().await.map_err(|e| e.to_string())? {
                return Err("the connection closed mid-request".into());
            }
        }
    }

    /// Take exactly `n` bytes, reading as needed.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.more().await.map_err(|e| e.to_string())? {
                return Err("the connection closed mid-body".into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Read the next request. `Ok(None)`: the client closed the connection between requests.
    /// Anything that is not HTTP/1.x (a TLS hello, garbage) is an error at its first byte.
    pub async fn read_request(&mut self) -> Result<Option<Incoming>, String> {
        while self.buf.is_empty() {
            if !self.more().await.map_err(|e| e.to_string())? {
                return Ok(None);
            }
        }
        if !self.buf[0].is_ascii_uppercase() {
            return Err(format!(
                "not an HTTP request (first byte {:#04x})",
                self.buf[0]
            ));
        }
        let head = self.until(b"\r\n\r\n", MAX_HEAD).await?;
        let head = String::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad request line {line:?}"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(format!("unsupported version {version:?}"));
        }
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut incoming = Incoming {
            method: method.to_string(),
            path: path.to_string(),
            query: parse_query(query),
            headers,
            body: Vec::new(),
        };
        incoming.body = self.read_body(&incoming).await?;
        Ok(Some(incoming))
    }

    /// The body of `request`, by `Content-Length` or chunked.
    async fn read_body(&mut self, request: &Incoming) -> Result<Vec<u8>, String> {
        if request
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let line = self.until(b"\r\n", 1024).await?;
                let line = String::from_utf8_lossy(&line[..line.len() - 2]).to_string();
                let hex = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while self.until(b"\r\n", MAX_HEAD).await?.len() > 2 {}
                    return Ok(body);
                }
                if body.len() + size > MAX_BODY {
                    return Err("request body too large".into());
                }
                body.extend(self.exact(size).await?);
                self.exact(2).await?;
            }
        }
        let len = match request.header("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length {v:?}"))?,
            None => 0,
        };
        if len > MAX_BODY {
            return Err("request body too large".into());
        }
        self.exact(len).await
    }

    /// Write bytes and flush them to the socket.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Close our side (FIN) once everything written has gone.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Close with a TCP reset (RST), as a crashing peer or a middlebox does.
    pub fn reset(self) {
        let _ = self.stream.set_zero_linger();
        drop(self.stream);
    }

    /// Send nothing more; return once the client has closed the connection.
    pub async fn stall(mut self) {
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    }
}

/// An answer about to be written.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Headers besides `Content-Length` / `Transfer-Encoding`.
    pub headers: Vec<(String, String)>,
    /// The body (announced but not sent for a HEAD request).
    pub body: Vec<u8>,
    /// A HEAD request: headers only.
    pub head_only: bool,
}

impl Answer {
    /// An answer with a body of `content_type`.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            head_only: false,
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Answer {
        Answer::new(status, "application/json", value.to_string().into_bytes())
    }

    /// A registry-style error: `{"errors":[{"code":…,"message":…}]}`.
    pub fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer::json(
            status,
            &serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]}),
        )
    }

    /// Add a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status line and headers; `chunked` announces a chunked body instead of its length.
    pub fn head(&self, chunked: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if chunked {
            out.push_str("Transfer-Encoding: chunked\r\n");
        } else {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// The reason phrase of the statuses the mock answers.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// `Range: bytes=START-` or `bytes=START-END` (inclusive end); `None` for anything else.
pub fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start, end))
}

/// `a=1&b=x%2Fy` as decoded pairs (`+` is a space).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Undo form URL encoding; a malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(u8::try_from(b).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
