//! Nothing here: the test is in tests/api.rs.
