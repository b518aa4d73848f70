//! `acme_store::format::parse` on arbitrary bytes. Property: whatever the parser accepts, the
//! writer reproduces: `parse(write(parse(x))) == parse(x)`, and the written text is a fixed
//! point (`write(parse(write(d))) == write(d)`). Legacy (read-only) documents are checked
//! through `migrate_to_v2` instead.
#![no_main]

use acme_store::format::{parse, write};
use acme_store::{AcmeDocument, Format};
use libfuzzer_sys::fuzz_target;

fn round_trip(doc: &AcmeDocument) {
    let text =
        write(doc).unwrap_or_else(|e| panic!("{:?} document is unwritable: {e}", doc.format));
    let again = parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("the written document does not parse: {e}\n{text}"));
    assert_eq!(&again, doc, "parse(write(doc)) != doc; written:\n{text}");
    let text2 = write(&again).expect("re-parsed document is writable");
    assert_eq!(text2, text, "writing is not a fixed point");
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = parse(data) else {
        return;
    };
    if doc.format == Format::Legacy {
        assert!(write(&doc).is_err(), "legacy documents are read-only");
        round_trip(&doc.migrate_to_v2("resolver"));
    } else {
        round_trip(&doc);
    }
});
