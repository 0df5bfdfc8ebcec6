//! The mock itself, on the wire, so that the tests above do not pass thanks to a mock bug.

use super::*;

/// Send `request` (with `Connection: close`) and read the whole answer: (head, body).
async fn raw(mock: &MockRegistry, request: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(answer[..at].to_vec()).unwrap();
    (head, answer[at + 4..].to_vec())
}

#[tokio::test]
async fn the_mock_answers_as_a_registry_does() {
    let f = Fixture::new();
    let host = f.mock.host();
    let layer = f.image.layer_digest(0);
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };

    let (head, body) = raw(
        &f.mock,
        &get(&format!("/v2/{REPO}/blobs/{layer}"), "Range: bytes=10-\r\n"),
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "Content-Range: bytes 10-{}/{}",
            LAYERS[0] - 1,
            LAYERS[0]
        )),
        "{head}"
    );
    assert!(
        head.contains(&format!("Docker-Content-Digest: {layer}")),
        "{head}"
    );
    assert_eq!(body, f.image.layers[0][10..]);

    let beyond = format!("Range: bytes={}-\r\n", LAYERS[0]);
    let (head, _) = raw(&f.mock, &get(&format!("/v2/{REPO}/blobs/{layer}"), &beyond)).await;
    assert!(head.starts_with("HTTP/1.1 416 "), "{head}");

    let head_request =
        format!("HEAD /v2/{REPO}/manifests/{TAG} HTTP/1.1\r\nConnection: close\r\n\r\n");
    let (head, body) = raw(&f.mock, &head_request).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Type: {}", mock::image::OCI_MANIFEST)),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "Docker-Content-Digest: {}",
            f.image.manifest_digest()
        )),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", f.image.manifest.len())),
        "{head}"
    );
    assert!(body.is_empty());

    let (head, body) = raw(&f.mock, &get("/v2/_catalog", "")).await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "NOT_FOUND");

    let upload = format!(
        "POST /v2/{REPO}/blobs/uploads/ HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    let (head, body) = raw(&f.mock, &upload).await;
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
    let uploads: Vec<Request> = f
        .mock
        .requests()
        .into_iter()
        .filter(|r| matches!(r.route, mock::Route::Upload { .. }))
        .collect();
    assert_eq!(
        (
            uploads.len(),
            uploads[0].method.as_str(),
            uploads[0].body_len
        ),
        (1, "POST", 3)
    );

    f.mock
        .set_auth(Auth::Bearer(Bearer::anonymous("mock-service")));
    let (head, _) = raw(&f.mock, &get(&format!("/v2/{REPO}/manifests/{TAG}"), "")).await;
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    let challenge = format!(
        r#"WWW-Authenticate: Bearer realm="http://{host}/token",service="mock-service",scope="repository:{REPO}:pull""#
    );
    assert!(head.contains(&challenge), "{head}");
    let (head, _) = raw(
        &f.mock,
        &get(
            "/token?service=other&scope=repository%3Alib%2Fapp%3Apull",
            "",
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let (head, body) = raw(
        &f.mock,
        &get(
            "/token?service=mock-service&scope=repository%3Alib%2Fapp%3Apull",
            "",
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!(
        "Authorization: Bearer {}\r\n",
        token["token"].as_str().unwrap()
    );
    let (head, body) = raw(
        &f.mock,
        &get(&format!("/v2/{REPO}/manifests/{TAG}"), &bearer),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, f.image.manifest);
    let tokens = f.mock.requests_to(&When::Token);
    assert_eq!(tokens[1].scopes(), [format!("repository:{REPO}:pull")]);

    // Not HTTP (a TLS hello): refused at once.
    let (head, _) = raw(&f.mock, "\u{16}\u{3}\u{1}hello").await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(
        f.mock.requests().last().unwrap().route,
        mock::Route::NotHttp
    );
}
