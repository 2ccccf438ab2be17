//! The run file's JSON Schema (feature `schema`), generated from this
//! crate's types with `schemars`: what `docs/run-file.schema.json` is.
//! Regenerate that file after changing a type:
//! `RUNMETRICS_BLESS=1 cargo test --all-features --test schema`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::{
    Bucket, CountsEvent, Entry, Event, FuncTiming, Kind, Meta, PhaseTiming, ProcessSample,
};

/// A run file: `meta`, then `events`.
#[derive(JsonSchema)]
#[schemars(
    title = "runmetrics run file",
    description = "One run of a program recorded by runmetrics (or the Python `metrics` module it \
                   comes from): `<log_dir>/<run_id>.json`. Keys are added, never renamed; \
                   `meta.layout_version` goes up only when an old reader would misread a file."
)]
#[allow(dead_code)] // only its schema is used
struct RunFileSchema {
    meta: Meta,
    events: Vec<Event>,
}

/// The run file's JSON Schema (draft 2020-12), as `docs/run-file.schema.json`
/// holds it.
///
/// ```
/// let schema = runmetrics_format::schema();
/// assert_eq!(schema["title"], "runmetrics run file");
/// assert!(schema["required"].as_array().unwrap().contains(&"meta".into()));
/// ```
///
/// Beyond the types: a file of layout 2 or later must have every key
/// runmetrics writes (in `meta` and in each entry), as the reader demands.
pub fn schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<RunFileSchema>();
    let mut value = schema.to_value();
    let entries =
        |kind| serde_json::json!({"items": {"required": Entry::keys(kind).collect::<Vec<_>>()}});
    value["$defs"]["Meta"]["if"] = serde_json::json!({
        "properties": {"layout_version": {"type": "integer", "minimum": 2}},
        "required": ["layout_version"]
    });
    let required: Vec<&str> = Meta::KEYS
        .iter()
        .copied()
        .filter(|k| !Meta::OPTIONAL_KEYS.contains(k))
        .collect();
    value["$defs"]["Meta"]["then"] = serde_json::json!({
        "required": required,
        "properties": {
            "phase_durations_seconds_total": entries(Kind::Phase),
            "function_durations_seconds_total": entries(Kind::Function),
        }
    });
    value
}

pub(crate) fn timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "RFC 3339, with microseconds and the offset",
        "type": "string",
        "format": "date-time"
    })
}

pub(crate) fn optional_timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "RFC 3339, with microseconds and the offset; null when not (yet) known",
        "type": ["string", "null"],
        "format": "date-time"
    })
}

impl JsonSchema for Bucket {
    fn schema_name() -> Cow<'static, str> {
        "Bucket".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "[lower_ns, count, width_ns] (layout 2), or [lower_ns, count] (layout 1, \
                            widths implied): `count` regions lasted from lower_ns to less than \
                            lower_ns + width_ns",
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 2,
            "maxItems": 3
        })
    }
}

impl JsonSchema for Event {
    fn schema_name() -> Cow<'static, str> {
        "Event".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let kinds = [
            ("process_sample", generator.subschema_for::<ProcessSample>()),
            ("phase_timing", generator.subschema_for::<PhaseTiming>()),
            ("func_timing", generator.subschema_for::<FuncTiming>()),
            ("counts", generator.subschema_for::<CountsEvent>()),
        ];
        let checks: Vec<serde_json::Value> = kinds
            .into_iter()
            .map(|(kind, schema)| {
                serde_json::json!({
                    "if": {"properties": {"event": {"const": kind}}, "required": ["event"]},
                    "then": schema
                })
            })
            .collect();
        json_schema!({
            "description": "One element of `events`, of the kind its `event` key names; a kind \
                            this layout does not know (a newer writer's) is any value",
            "allOf": checks
        })
    }
}
