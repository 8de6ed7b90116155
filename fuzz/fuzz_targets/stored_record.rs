//! The stored record: `StoredEvent::decode` of any bytes read back from sled (a corrupt or
//! foreign value must be an error, never a panic or a huge allocation).
#![no_main]

use hookgate::event::Seq;
use hookgate::store::StoredEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = StoredEvent::decode(Seq(7), data) {
        assert_eq!(event.seq, 7);
    }
});
