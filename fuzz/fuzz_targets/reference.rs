//! Reference parsing in img-registry. Oracles: no panic; what parses prints a normalized form
//! that parses back to the same reference and prints the same again (a stored image's name is
//! that form, and `img` parses it again to find it).
#![no_main]

use img_registry::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(input) = img_fuzz::text(data) else {
        return;
    };
    let _ = Reference::is_qualified(input);
    let _ = Reference::is_image_id(input);
    let Ok(r) = Reference::parse(input) else {
        return;
    };
    let printed = r.to_string();
    let again = Reference::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} parses, its normal form {printed:?} does not: {e}"));
    assert_eq!(
        r, again,
        "{input:?} -> {printed:?} parses to something else"
    );
    assert_eq!(
        again.to_string(),
        printed,
        "{input:?}: printing is not stable"
    );
    assert!(
        Reference::is_qualified(&printed),
        "{printed:?} does not name its registry"
    );
    let _ = (r.name(), r.manifest_reference(), r.api_host());
    let _ = img_registry::is_loopback(r.registry());
    if let Some(tag) = r.tag() {
        let retagged = r
            .with_tag(tag)
            .unwrap_or_else(|e| panic!("{printed:?}: with_tag({tag:?}) fails: {e}"));
        assert_eq!(retagged.name(), r.name());
        assert_eq!(retagged.tag(), Some(tag));
    }
});
