//! Reference parsing checked against the test vectors of distribution/reference (the Go
//! package docker, containerd and the distribution registry share): its
//! `reference_test.go`, `normalize_test.go` and `regexp_test.go`, plus img's own cases where
//! it deliberately differs or where it used to disagree (issue 10).
//!
//! Each vector is an input and what [`Reference::parse`] must make of it: the normalized
//! reference (docker's `ParseNormalizedNamed` followed by a default `latest` tag), or an
//! error whose one-line message quotes the input and contains the given words, which name
//! the bad part.

use img_registry::Reference;

/// What parsing an input must give.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// This normalized reference.
    Ok(&'static str),
    /// An error whose message contains this text (the bad part, or the rule it breaks).
    Err(&'static str),
}

use Want::{Err, Ok};

/// [`Want`] with an owned expected reference, for vectors built at run time.
#[derive(Debug, Clone)]
enum Expect {
    Ok(String),
    Err(&'static str),
}

impl From<Want> for Expect {
    fn from(w: Want) -> Expect {
        match w {
            Want::Ok(s) => Expect::Ok(s.to_string()),
            Want::Err(s) => Expect::Err(s),
        }
    }
}

const F64: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const BE: &str = "be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
const DBCC: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
const ID_1A3F: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
const DA30: &str = "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821";

/// Vectors whose input is a plain string.
const VECTORS: &[(&str, Want)] = &[
    // --- reference_test.go, TestReferenceParse (inputs with `${F64}` etc. are below) ---
    ("test_com", Ok("docker.io/library/test_com:latest")),
    ("test.com:tag", Ok("docker.io/library/test.com:tag")),
    ("test.com:5000", Ok("docker.io/library/test.com:5000")),
    ("test.com/repo:tag", Ok("test.com/repo:tag")),
    ("test:5000/repo", Ok("test:5000/repo:latest")),
    ("test:5000/repo:tag", Ok("test:5000/repo:tag")),
    ("", Err("empty reference")),
    (":justtag", Err("invalid repository component \"\": empty")),
    ("Uppercase:tag", Err("must be lowercase")),
    (
        "test:5000/Uppercase/lowercase:tag",
        Err("must be lowercase"),
    ),
    (
        "lowercase:Uppercase",
        Ok("docker.io/library/lowercase:Uppercase"),
    ),
    (
        "aa/asdf$$^/aa",
        Err("invalid repository component \"asdf$$^\""),
    ),
    (
        "sub-dom1.foo.com/bar/baz/quux",
        Ok("sub-dom1.foo.com/bar/baz/quux:latest"),
    ),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        Ok("sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        Ok("b.gcr.io/test.example.com/my-app:test.example.com"),
    ),
    (
        "xn--n3h.com/myimage:xn--n3h.com",
        Ok("xn--n3h.com/myimage:xn--n3h.com"),
    ),
    ("foo_bar.com:8080", Ok("docker.io/library/foo_bar.com:8080")),
    ("foo/foo_bar.com:8080", Ok("docker.io/foo/foo_bar.com:8080")),
    ("192.168.1.1", Ok("docker.io/library/192.168.1.1:latest")),
    ("192.168.1.1:tag", Ok("docker.io/library/192.168.1.1:tag")),
    ("192.168.1.1:5000", Ok("docker.io/library/192.168.1.1:5000")),
    ("192.168.1.1/repo", Ok("192.168.1.1/repo:latest")),
    ("192.168.1.1:5000/repo", Ok("192.168.1.1:5000/repo:latest")),
    (
        "192.168.1.1:5000/repo:5050",
        Ok("192.168.1.1:5000/repo:5050"),
    ),
    ("[2001:db8::1]", Err("IPv6 registry needs a repository")),
    (
        "[2001:db8::1]:5000",
        Err("IPv6 registry needs a repository"),
    ),
    ("[2001:db8::1]:tag", Err("IPv6 registry needs a repository")),
    ("[2001:db8::1]/repo", Ok("[2001:db8::1]/repo:latest")),
    (
        "[2001:db8:1:2:3:4:5:6]/repo:tag",
        Ok("[2001:db8:1:2:3:4:5:6]/repo:tag"),
    ),
    (
        "[2001:db8::1]:5000/repo",
        Ok("[2001:db8::1]:5000/repo:latest"),
    ),
    (
        "[2001:db8::1]:5000/repo:tag",
        Ok("[2001:db8::1]:5000/repo:tag"),
    ),
    (
        "[2001:db8::]:5000/repo",
        Ok("[2001:db8::]:5000/repo:latest"),
    ),
    ("[::1]:5000/repo", Ok("[::1]:5000/repo:latest")),
    (
        "[fe80::1%eth0]:5000/repo",
        Err("\"fe80::1%eth0\" is not an IPv6 address"),
    ),
    // the '@' makes the rest a (bad) digest
    ("[fe80::1%@invalidzone]:5000/repo", Err("invalid digest")),
    // --- normalize_test.go, TestValidateReferenceName: valid ---
    ("docker/docker", Ok("docker.io/docker/docker:latest")),
    ("library/debian", Ok("docker.io/library/debian:latest")),
    ("debian", Ok("docker.io/library/debian:latest")),
    (
        "docker.io/docker/docker",
        Ok("docker.io/docker/docker:latest"),
    ),
    (
        "docker.io/library/debian",
        Ok("docker.io/library/debian:latest"),
    ),
    ("docker.io/debian", Ok("docker.io/library/debian:latest")),
    (
        "index.docker.io/docker/docker",
        Ok("docker.io/docker/docker:latest"),
    ),
    (
        "index.docker.io/library/debian",
        Ok("docker.io/library/debian:latest"),
    ),
    (
        "index.docker.io/debian",
        Ok("docker.io/library/debian:latest"),
    ),
    (
        "127.0.0.1:5000/docker/docker",
        Ok("127.0.0.1:5000/docker/docker:latest"),
    ),
    (
        "127.0.0.1:5000/library/debian",
        Ok("127.0.0.1:5000/library/debian:latest"),
    ),
    ("127.0.0.1:5000/debian", Ok("127.0.0.1:5000/debian:latest")),
    ("192.168.0.1", Ok("docker.io/library/192.168.0.1:latest")),
    ("192.168.0.1:80", Ok("docker.io/library/192.168.0.1:80")),
    ("192.168.0.1:8/debian", Ok("192.168.0.1:8/debian:latest")),
    (
        "192.168.0.2:25000/debian",
        Ok("192.168.0.2:25000/debian:latest"),
    ),
    (
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        Ok(
            "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
        ),
    ),
    ("[fc00::1]:5000/docker", Ok("[fc00::1]:5000/docker:latest")),
    (
        "[fc00::1]:5000/docker/docker",
        Ok("[fc00::1]:5000/docker/docker:latest"),
    ),
    (
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        Ok("[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest"),
    ),
    ("Docker/docker", Ok("Docker/docker:latest")),
    ("DOCKER/docker", Ok("DOCKER/docker:latest")),
    // --- normalize_test.go, TestValidateReferenceName: invalid ---
    (
        "https://github.com/docker/docker",
        Err("invalid registry \"https:\""),
    ),
    ("docker/Docker", Err("must be lowercase")),
    ("-docker", Err("invalid repository component \"-docker\"")),
    (
        "-docker/docker",
        Err("invalid repository component \"-docker\""),
    ),
    (
        "-docker.io/docker/docker",
        Err("\"-docker.io\" is not a host name"),
    ),
    (
        "docker///docker",
        Err("invalid repository component \"\": empty"),
    ),
    ("docker.io/docker/Docker", Err("must be lowercase")),
    (
        "docker.io/docker///docker",
        Err("invalid repository component \"\": empty"),
    ),
    ("[fc00::1]", Err("IPv6 registry needs a repository")),
    ("[fc00::1]:5000", Err("IPv6 registry needs a repository")),
    (
        "fc00::1:5000/debian",
        Err("\":1:5000\" is not a port number"),
    ),
    (
        "[fe80::1%eth0]:5000/debian",
        Err("\"fe80::1%eth0\" is not an IPv6 address"),
    ),
    (
        "[2001:db8:3:4::192.0.2.33]:5000/debian",
        Err("\"2001:db8:3:4::192.0.2.33\" is not an IPv6 address"),
    ),
    // --- normalize_test.go, TestValidateRemoteName ---
    (
        "docker-rules/docker",
        Ok("docker.io/docker-rules/docker:latest"),
    ),
    (
        "docker---rules/docker",
        Ok("docker.io/docker---rules/docker:latest"),
    ),
    ("doc/docker", Ok("docker.io/doc/docker:latest")),
    ("d/docker", Ok("docker.io/d/docker:latest")),
    ("jess/t", Ok("docker.io/jess/t:latest")),
    ("dock__er/docker", Ok("docker.io/dock__er/docker:latest")),
    (
        "docker-/docker",
        Err("invalid repository component \"docker-\""),
    ),
    (
        "-docker-/docker",
        Err("invalid repository component \"-docker-\""),
    ),
    ("____/____", Err("invalid repository component \"____\"")),
    (
        "_docker/_docker",
        Err("invalid repository component \"_docker\""),
    ),
    ("dock..er/docker", Err("\"dock..er\" is not a host name")),
    ("dock_.er/docker", Err("\"dock_.er\" is not a host name")),
    ("dock-.er/docker", Err("\"dock-.er\" is not a host name")),
    ("docker/", Err("invalid repository component \"\": empty")),
    (
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
        Err("longer than 255 characters"),
    ),
    // --- normalize_test.go, TestParseRepositoryInfo (familiar, full and ambiguous names) ---
    ("fooo/bar", Ok("docker.io/fooo/bar:latest")),
    ("docker.io/fooo/bar", Ok("docker.io/fooo/bar:latest")),
    ("index.docker.io/fooo/bar", Ok("docker.io/fooo/bar:latest")),
    ("ubuntu", Ok("docker.io/library/ubuntu:latest")),
    (
        "docker.io/library/ubuntu",
        Ok("docker.io/library/ubuntu:latest"),
    ),
    ("library/ubuntu", Ok("docker.io/library/ubuntu:latest")),
    (
        "nonlibrary/ubuntu",
        Ok("docker.io/nonlibrary/ubuntu:latest"),
    ),
    ("other/library", Ok("docker.io/other/library:latest")),
    (
        "127.0.0.1:8000/private/moonbase",
        Ok("127.0.0.1:8000/private/moonbase:latest"),
    ),
    (
        "127.0.0.1:8000/privatebase",
        Ok("127.0.0.1:8000/privatebase:latest"),
    ),
    (
        "example.com/private/moonbase",
        Ok("example.com/private/moonbase:latest"),
    ),
    (
        "example.com/privatebase",
        Ok("example.com/privatebase:latest"),
    ),
    (
        "example.com:8000/private/moonbase",
        Ok("example.com:8000/private/moonbase:latest"),
    ),
    (
        "example.com:8000/privatebasee",
        Ok("example.com:8000/privatebasee:latest"),
    ),
    (
        "ubuntu-12.04-base",
        Ok("docker.io/library/ubuntu-12.04-base:latest"),
    ),
    (
        "docker.io/library/ubuntu-12.04-base",
        Ok("docker.io/library/ubuntu-12.04-base:latest"),
    ),
    (
        "index.docker.io/library/ubuntu-12.04-base",
        Ok("docker.io/library/ubuntu-12.04-base:latest"),
    ),
    ("foo", Ok("docker.io/library/foo:latest")),
    ("docker.io/library/foo", Ok("docker.io/library/foo:latest")),
    ("docker.io/foo", Ok("docker.io/library/foo:latest")),
    ("library/foo/bar", Ok("docker.io/library/foo/bar:latest")),
    (
        "docker.io/library/foo/bar",
        Ok("docker.io/library/foo/bar:latest"),
    ),
    ("store/foo/bar", Ok("docker.io/store/foo/bar:latest")),
    ("Foo/bar", Ok("Foo/bar:latest")),
    ("FOO/bar", Ok("FOO/bar:latest")),
    // --- normalize_test.go, TestParseAnyReference (names; IDs are below) ---
    ("redis", Ok("docker.io/library/redis:latest")),
    ("redis:latest", Ok("docker.io/library/redis:latest")),
    (
        "docker.io/library/redis:latest",
        Ok("docker.io/library/redis:latest"),
    ),
    ("dmcgowan/myapp", Ok("docker.io/dmcgowan/myapp:latest")),
    (
        "dmcgowan/myapp:latest",
        Ok("docker.io/dmcgowan/myapp:latest"),
    ),
    (
        "docker.io/mcgowan/myapp:latest",
        Ok("docker.io/mcgowan/myapp:latest"),
    ),
    (
        "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
        Ok(
            "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9:latest",
        ),
    ),
    ("dbcc1", Ok("docker.io/library/dbcc1:latest")),
    // --- normalize_test.go, TestNormalizedSplitHostname ---
    ("test.com/foo", Ok("test.com/foo:latest")),
    ("test_com/foo", Ok("docker.io/test_com/foo:latest")),
    ("docker/migrator", Ok("docker.io/docker/migrator:latest")),
    ("test.com:8080/foo", Ok("test.com:8080/foo:latest")),
    ("test-com:8080/foo", Ok("test-com:8080/foo:latest")),
    ("xn--n3h.com/foo", Ok("xn--n3h.com/foo:latest")),
    ("xn--n3h.com:18080/foo", Ok("xn--n3h.com:18080/foo:latest")),
    // --- regexp_test.go, TestDomainRegexp (each domain as the registry of `/app`) ---
    ("test.com/app", Ok("test.com/app:latest")),
    ("test.com:10304/app", Ok("test.com:10304/app:latest")),
    ("test.com:http/app", Err("\"http\" is not a port number")),
    ("localhost/app", Ok("localhost/app:latest")),
    ("localhost:8080/app", Ok("localhost:8080/app:latest")),
    ("a.b/app", Ok("a.b/app:latest")),
    ("ab.cd.com/app", Ok("ab.cd.com/app:latest")),
    ("a-b.com/app", Ok("a-b.com/app:latest")),
    ("-ab.com/app", Err("\"-ab.com\" is not a host name")),
    ("ab-.com/app", Err("\"ab-.com\" is not a host name")),
    ("ab.c-om/app", Ok("ab.c-om/app:latest")),
    ("ab.-com/app", Err("\"ab.-com\" is not a host name")),
    ("ab.com-/app", Err("\"ab.com-\" is not a host name")),
    ("0101.com/app", Ok("0101.com/app:latest")),
    ("001a.com/app", Ok("001a.com/app:latest")),
    ("b.gbc.io:443/app", Ok("b.gbc.io:443/app:latest")),
    ("xn--n3h.com/app", Ok("xn--n3h.com/app:latest")),
    ("Asdf.com/app", Ok("Asdf.com/app:latest")),
    // the grammar takes any digits as a port; img refuses what no port can be
    (
        "192.168.1.1:75050/app",
        Err("\"75050\" is not a port number"),
    ),
    (
        "192.168.1.1:750050/app",
        Err("\"750050\" is not a port number"),
    ),
    (
        "[fd00:1:2::3]:75050/app",
        Err("\"75050\" is not a port number"),
    ),
    ("[fd00:1:2::3]75050/app", Err("\"75050\" after ']'")),
    (
        "[fd00:1:2::3]::75050/app",
        Err("\":75050\" is not a port number"),
    ),
    (
        "[fd00:1:2::3%eth0]:75050/app",
        Err("\"fd00:1:2::3%eth0\" is not an IPv6 address"),
    ),
    (
        "[fd00123123123]:75050/app",
        Err("\"fd00123123123\" is not an IPv6 address"),
    ),
    (
        "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050/app",
        Err("\"75050\" is not a port number"),
    ),
    (
        "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505/app",
        Err("\"750505\" is not a port number"),
    ),
    (
        "[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:5000/app",
        Ok("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:5000/app:latest"),
    ),
    (
        "fd00:1:2::3:75050/app",
        Err("\"1:2::3:75050\" is not a port number"),
    ),
    // --- regexp_test.go, TestFullNameRegexp ---
    ("short", Ok("docker.io/library/short:latest")),
    ("simple/name", Ok("docker.io/simple/name:latest")),
    (
        "docker/stevvooe/app",
        Ok("docker.io/docker/stevvooe/app:latest"),
    ),
    (
        "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
        Ok("docker.io/aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb:latest"),
    ),
    ("a/a/a/a", Ok("docker.io/a/a/a/a:latest")),
    ("a/a/a/a/", Err("invalid repository component \"\": empty")),
    ("a//a/a", Err("invalid repository component \"\": empty")),
    ("a", Ok("docker.io/library/a:latest")),
    ("a/aa", Ok("docker.io/a/aa:latest")),
    ("a/aa/a", Ok("docker.io/a/aa/a:latest")),
    ("foo.com", Ok("docker.io/library/foo.com:latest")),
    ("foo.com/", Err("invalid repository component \"\": empty")),
    ("foo.com:8080/bar", Ok("foo.com:8080/bar:latest")),
    ("foo.com:http/bar", Err("\"http\" is not a port number")),
    ("foo.com/bar", Ok("foo.com/bar:latest")),
    ("foo.com/bar/baz", Ok("foo.com/bar/baz:latest")),
    ("localhost:8080/bar", Ok("localhost:8080/bar:latest")),
    ("blog.foo.com/bar/baz", Ok("blog.foo.com/bar/baz:latest")),
    ("a^a", Err("separator \"^\" is not allowed")),
    (
        "asdf$$^/aa",
        Err("invalid repository component \"asdf$$^\""),
    ),
    ("aa-a/a", Ok("docker.io/aa-a/a:latest")),
    ("a-/a/a/a", Err("invalid repository component \"a-\"")),
    ("foo.com/a-/a/a", Err("invalid repository component \"a-\"")),
    ("-foo/bar", Err("invalid repository component \"-foo\"")),
    ("foo/bar-", Err("invalid repository component \"bar-\"")),
    ("foo-/bar", Err("invalid repository component \"foo-\"")),
    ("foo/-bar", Err("invalid repository component \"-bar\"")),
    ("_foo/bar", Err("invalid repository component \"_foo\"")),
    ("foo_bar", Ok("docker.io/library/foo_bar:latest")),
    ("foo_bar.com", Ok("docker.io/library/foo_bar.com:latest")),
    (
        "foo_bar.com:8080/app",
        Err("\"foo_bar.com\" is not a host name"),
    ),
    ("foo.com/foo_bar", Ok("foo.com/foo_bar:latest")),
    (
        "docker_/docker_",
        Err("invalid repository component \"docker_\""),
    ),
    (
        "example.com/some_separator__underscore/myimage",
        Ok("example.com/some_separator__underscore/myimage:latest"),
    ),
    (
        "example.com/__underscore/myimage",
        Err("invalid repository component \"__underscore\""),
    ),
    (
        "example.com/..dots/myimage",
        Err("invalid repository component \"..dots\""),
    ),
    (
        "example.com/.dots/myimage",
        Err("invalid repository component \".dots\""),
    ),
    (
        "example.com/nodouble..dots/myimage",
        Err("separator \"..\" is not allowed"),
    ),
    ("docker./docker", Err("\"docker.\" is not a host name")),
    (".docker/docker", Err("\".docker\" is not a host name")),
    ("do..cker/docker", Err("\"do..cker\" is not a host name")),
    (
        "do__cker:8080/docker",
        Err("\"do__cker\" is not a host name"),
    ),
    ("do__cker/docker", Ok("docker.io/do__cker/docker:latest")),
    (
        "b.gcr.io/test.example.com/my-app",
        Ok("b.gcr.io/test.example.com/my-app:latest"),
    ),
    (
        "registry.io/foo/project--id.module--name.ver---sion--name",
        Ok("registry.io/foo/project--id.module--name.ver---sion--name:latest"),
    ),
    ("Asdf.com/foo/bar", Ok("Asdf.com/foo/bar:latest")),
    ("Foo/FarB", Err("invalid repository component \"FarB\"")),
    // --- regexp_test.go, TestReferenceRegexp (without digests; those are below) ---
    (
        "registry.com:8080/myapp:tag",
        Ok("registry.com:8080/myapp:tag"),
    ),
    (
        "registry.com:8080/myapp:invalid~tag",
        Err("invalid tag \"invalid~tag\""),
    ),
    (
        "bad_hostname.com:8080/myapp:tag",
        Err("\"bad_hostname.com\" is not a host name"),
    ),
    (
        "registry.com:8080/myapp@sha256:badbadbadbad",
        Err("sha256 takes 64 hex digits, not 12"),
    ),
    (
        "registry.com:8080/myapp@bad",
        Err("invalid digest \"bad\": expected ALGORITHM:HEX"),
    ),
    (
        "registry.com:8080/myapp@2bad",
        Err("invalid digest \"2bad\": expected ALGORITHM:HEX"),
    ),
    // --- img: the classes issue 10 found, and ports ---
    (
        "[::1]junk/app",
        Err("\"junk\" after ']': only \":PORT\" may follow"),
    ),
    ("[::1]:/app", Err("\"\" is not a port number")),
    ("[::1]:5000/app:1", Ok("[::1]:5000/app:1")),
    ("[::1]/app", Ok("[::1]/app:latest")),
    ("[]:5000/app", Err("\"\" is not an IPv6 address")),
    ("[::1:5000/app", Err("unclosed '['")),
    ("[::ffff:127.0.0.1]:5000/app", Err("is not an IPv6 address")),
    ("host:65535/app", Ok("host:65535/app:latest")),
    ("host:0/app", Ok("host:0/app:latest")),
    ("host:65536/app", Err("\"65536\" is not a port number")),
    ("host:99999/app", Err("\"99999\" is not a port number")),
    ("host:+80/app", Err("\"+80\" is not a port number")),
    ("host:/app", Err("\"\" is not a port number")),
    ("redis@", Err("invalid digest \"\": expected ALGORITHM:HEX")),
    ("redis@:abc", Err("empty algorithm")),
    ("redis@sha256:abc", Err("sha256 takes 64 hex digits, not 3")),
    (
        "redis@md5:d41d8cd98f00b204e9800998ecf8427e",
        Err("algorithm \"md5\" is not supported (supported: sha256, sha512)"),
    ),
    ("redis:7@foo:bar", Err("algorithm \"foo\" is not supported")),
];

/// Vectors built from long or repeated parts.
fn built_vectors() -> Vec<(String, Expect)> {
    let f128 = F64.repeat(2);
    let owned = |s: &str| s.to_string();
    let mut v: Vec<(String, Expect)> = vec![
        // reference_test.go, TestReferenceParse
        (
            format!("test:5000/repo@sha256:{F64}"),
            Expect::Ok(format!("test:5000/repo@sha256:{F64}")),
        ),
        (
            format!("test:5000/repo:tag@sha256:{F64}"),
            Expect::Ok(format!("test:5000/repo:tag@sha256:{F64}")),
        ),
        (
            format!("@sha256:{F64}"),
            Expect::Err("invalid repository component \"\": empty"),
        ),
        (
            format!("repo@sha256:{}", &F64[..34]),
            Expect::Err("sha256 takes 64 hex digits, not 34"),
        ),
        (
            format!("validname@invaliddigest:{F64}"),
            Expect::Err("algorithm \"invaliddigest\" is not supported (supported: sha256, sha512)"),
        ),
        (
            format!("{}a:tag", "a/".repeat(128)),
            Expect::Err("longer than 255 characters"),
        ),
        // 255 characters as typed, which the grammar allows; docker.io/ makes it too long
        (
            format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
            Expect::Err("longer than 255 characters"),
        ),
        (
            format!("xn--7o8h.com/myimage:xn--7o8h.com@sha512:{f128}"),
            Expect::Ok(format!("xn--7o8h.com/myimage:xn--7o8h.com@sha512:{f128}")),
        ),
        (
            format!("[2001:db8::1]:5000/repo@sha256:{F64}"),
            Expect::Ok(format!("[2001:db8::1]:5000/repo@sha256:{F64}")),
        ),
        (
            format!("[2001:db8::1]:5000/repo:tag@sha256:{F64}"),
            Expect::Ok(format!("[2001:db8::1]:5000/repo:tag@sha256:{F64}")),
        ),
        // normalize_test.go: hex names are IDs, unless qualified
        (
            owned(ID_1A3F),
            Expect::Err("64 hex digits are an image ID, not a repository name"),
        ),
        (
            format!("docker.io/{ID_1A3F}"),
            Expect::Ok(format!("docker.io/library/{ID_1A3F}:latest")),
        ),
        (
            format!(
                "busybox:latest@sha256:{}",
                "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
            ),
            Expect::Ok(owned(
                "docker.io/library/busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
            )),
        ),
        // TestParseAnyReference
        (
            format!("redis@sha256:{DBCC}"),
            Expect::Ok(format!("docker.io/library/redis@sha256:{DBCC}")),
        ),
        (
            format!("docker.io/library/redis@sha256:{DBCC}"),
            Expect::Ok(format!("docker.io/library/redis@sha256:{DBCC}")),
        ),
        (
            format!("dmcgowan/myapp@sha256:{DBCC}"),
            Expect::Ok(format!("docker.io/dmcgowan/myapp@sha256:{DBCC}")),
        ),
        (owned(DBCC), Expect::Err("64 hex digits are an image ID")),
        // ParseAnyReference takes this as an ID; as a name it is the tag of library/sha256
        // (img's commands look it up as an ID first and never pull it)
        (
            format!("sha256:{DBCC}"),
            Expect::Ok(format!("docker.io/library/sha256:{DBCC}")),
        ),
        // regexp_test.go, TestReferenceRegexp
        (
            format!("registry.com:8080/myapp@sha256:{BE}"),
            Expect::Ok(format!("registry.com:8080/myapp@sha256:{BE}")),
        ),
        (
            format!("registry.com:8080/myapp:tag2@sha256:{BE}"),
            Expect::Ok(format!("registry.com:8080/myapp:tag2@sha256:{BE}")),
        ),
        (
            format!("localhost:8080@sha256:{BE}"),
            Expect::Ok(format!("docker.io/library/localhost:8080@sha256:{BE}")),
        ),
        (
            format!("localhost:8080/name@sha256:{BE}"),
            Expect::Ok(format!("localhost:8080/name@sha256:{BE}")),
        ),
        (
            format!("localhost:http/name@sha256:{BE}"),
            Expect::Err("\"http\" is not a port number"),
        ),
        (
            format!("localhost@sha256:{BE}"),
            Expect::Ok(format!("docker.io/library/localhost@sha256:{BE}")),
        ),
        // regexp_test.go, TestIdentifierRegexp
        (owned(DA30), Expect::Err("64 hex digits are an image ID")),
        (DA30.to_uppercase(), Expect::Err("must be lowercase")),
        (
            owned(&DA30[..60]),
            Expect::Ok(format!("docker.io/library/{}:latest", &DA30[..60])),
        ),
        (
            format!("sha256:{DA30}"),
            Expect::Ok(format!("docker.io/library/sha256:{DA30}")),
        ),
        (
            format!("{DA30}8482"),
            Expect::Ok(format!("docker.io/library/{DA30}8482:latest")),
        ),
        // img: digests of registered algorithms only, with the right length and case
        (
            format!("name@foo:{F64}"),
            Expect::Err("algorithm \"foo\" is not supported (supported: sha256, sha512)"),
        ),
        (
            format!("name@sha384:{}", &f128[..96]),
            Expect::Err("algorithm \"sha384\" is not supported"),
        ),
        (
            format!("name@sha512:{F64}"),
            Expect::Err("sha512 takes 128 hex digits, not 64"),
        ),
        (
            format!("name@sha256:{f128}"),
            Expect::Err("sha256 takes 64 hex digits, not 128"),
        ),
        (
            format!("name@sha256:{}", BE.to_uppercase()),
            Expect::Err("'B' is not a lower-case hex digit"),
        ),
        (
            format!("name@sha256:{}", "g".repeat(64)),
            Expect::Err("'g' is not a lower-case hex digit"),
        ),
        // a 64-hex name with a tag is a name (docker refuses only the bare ID)
        (
            format!("{DBCC}:tag"),
            Expect::Ok(format!("docker.io/library/{DBCC}:tag")),
        ),
        // 255 characters with docker.io/ is the limit
        (
            format!("{}a", "a/".repeat(122)),
            Expect::Ok(format!("docker.io/{}a:latest", "a/".repeat(122))),
        ),
        (
            format!("{}abc", "a/".repeat(122)),
            Expect::Err("longer than 255 characters"),
        ),
        (
            format!("a:{}", "t".repeat(128)),
            Expect::Ok(format!("docker.io/library/a:{}", "t".repeat(128))),
        ),
        (
            format!("a:{}", "t".repeat(129)),
            Expect::Err("longer than 128 characters"),
        ),
    ];
    v.extend(VECTORS.iter().map(|&(i, w)| (i.to_string(), w.into())));
    v
}

#[test]
fn reference_vectors() {
    let vectors = built_vectors();
    let mut failures = Vec::new();
    for (input, want) in &vectors {
        let got = Reference::parse(input);
        match (want, &got) {
            (Expect::Ok(expected), Result::Ok(r)) => {
                if r.to_string() != *expected {
                    failures.push(format!("{input:?}: got {r}, want {expected}"));
                    continue;
                }
                // the normalized form is a fixed point
                match Reference::parse(expected) {
                    Result::Ok(again) if again == *r => {}
                    other => failures.push(format!("{expected:?} does not parse back: {other:?}")),
                }
            }
            (Expect::Err(part), Result::Err(e)) => {
                let msg = e.to_string();
                if !msg.contains(part) {
                    failures.push(format!("{input:?}: error {msg:?} lacks {part:?}"));
                }
                if !msg.contains(&format!("{input:?}")) {
                    failures.push(format!("{input:?}: error {msg:?} does not quote the input"));
                }
                if msg.contains('\n') || msg.contains('\r') {
                    failures.push(format!("{input:?}: error {msg:?} is not one line"));
                }
                if msg.chars().next().is_some_and(char::is_uppercase) {
                    failures.push(format!("{input:?}: error {msg:?} starts upper-case"));
                }
            }
            (Expect::Ok(expected), Result::Err(e)) => {
                failures.push(format!("{input:?}: want {expected}, got error: {e}"));
            }
            (Expect::Err(part), Result::Ok(r)) => {
                failures.push(format!("{input:?}: want an error with {part:?}, got {r}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
    // printed with --nocapture: how many vectors ran
    println!("{} reference vectors", vectors.len());
}

#[test]
fn image_ids_are_recognized_exactly() {
    assert!(Reference::is_image_id(DBCC));
    assert!(!Reference::is_image_id(&DBCC[..63]));
    assert!(!Reference::is_image_id(&format!("sha256:{DBCC}")));
    assert!(!Reference::is_image_id(&DBCC.to_uppercase()));
    assert!(!Reference::is_image_id(&format!("{DBCC}0")));
}
