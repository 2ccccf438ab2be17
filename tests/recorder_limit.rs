//! The recorder limit, alone in its own process: while it holds every slot,
//! no other test could make a recorder.

use runmetrics::{Config, NewRecorderError, Recorder};

#[test]
fn too_many_recorders_is_an_error_not_a_panic() {
    let mut held = Vec::new();
    let err = loop {
        match Recorder::new(Config::new()) {
            Ok(r) => held.push(r),
            Err(e) => break e,
        }
        assert!(held.len() <= 16, "more than 16 recorders were allowed");
    };
    assert!(
        matches!(err, NewRecorderError::TooMany { max: 16 }),
        "{err:?}"
    );
    held.pop();
    // A freed slot can be used again.
    held.push(Recorder::new(Config::new()).unwrap());
}
