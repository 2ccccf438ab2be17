//! The attribute's error messages, checked with trybuild: each points at the
//! wrong token and says what is expected.

#[test]
fn measure_rejects_bad_input_with_clear_messages() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/measure_*.rs");
}
