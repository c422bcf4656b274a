//! A job's `body`: a string (templates allowed), `{"base64"}`, `{"form"}` or `{"multipart"}`.
//! Form fields and multipart parts are counted against `DOWNLOADER_MAX_PARTS` before any is
//! built.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{Fill, Rejection, decode, many, without_values};

/// The body bytes and a default Content-Type.
pub(super) fn bytes(body: &Value, fill: &Fill<'_>) -> Result<(Bytes, Option<String>), Rejection> {
    match body {
        Value::Null => Ok((Bytes::new(), None)),
        Value::String(text) => Ok((Bytes::from(fill.text(text, "body")?), None)),
        Value::Object(map) if map.len() == 1 => {
            let (kind, value) = map
                .iter()
                .next()
                .ok_or_else(|| Rejection::invalid("empty body object"))?;
            match kind.as_str() {
                "base64" => {
                    let text = value
                        .as_str()
                        .ok_or_else(|| Rejection::invalid("body.base64 must be a string"))?;
                    Ok((
                        decode(text)
                            .ok_or_else(|| Rejection::invalid("body.base64 is not valid base64"))?,
                        None,
                    ))
                }
                "form" => form(value, fill),
                "multipart" => multipart(value, fill),
                other => Err(Rejection::invalid(format!(
                    "unknown body kind '{other}': use a string, {{\"base64\"}}, {{\"form\"}} or {{\"multipart\"}}"
                ))),
            }
        }
        _ => Err(Rejection::invalid(
            "body must be a string, {\"base64\": ...}, {\"form\": {...}} or {\"multipart\": [...]}",
        )),
    }
}

fn form(value: &Value, fill: &Fill<'_>) -> Result<(Bytes, Option<String>), Rejection> {
    let fields = value
        .as_object()
        .ok_or_else(|| Rejection::invalid("body.form must be an object of fields"))?;
    let count: usize = fields
        .values()
        .map(|value| value.as_array().map_or(1, Vec::len))
        .sum();
    too_many(count, "body.form fields", fill)?;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        for value in many(value, "body.form", name)? {
            form.append_pair(name, &fill.text(&value, "body.form")?);
        }
    }
    Ok((
        Bytes::from(form.finish()),
        Some("application/x-www-form-urlencoded".to_owned()),
    ))
}

fn multipart(value: &Value, fill: &Fill<'_>) -> Result<(Bytes, Option<String>), Rejection> {
    let parts = value
        .as_array()
        .ok_or_else(|| Rejection::invalid("body.multipart must be a list of parts"))?;
    too_many(parts.len(), "body.multipart parts", fill)?;
    let parts = parts
        .iter()
        .map(|part| multipart_part(part, fill))
        .collect::<Result<Vec<_>, _>>()?;
    let encoded = engine::multipart(&parts);
    Ok((encoded.data, Some(encoded.content_type)))
}

/// Refuses more parts (or form fields) than `DOWNLOADER_MAX_PARTS`.
fn too_many(count: usize, what: &str, fill: &Fill<'_>) -> Result<(), Rejection> {
    let cap = fill.limits.parts;
    if count > cap {
        return Err(Rejection::too_large(
            format_args!("the job has {count} {what}"),
            cap,
            "DOWNLOADER_MAX_PARTS",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartJson {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    base64: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
}

/// One multipart part: `{"name", "value"}` (templates allowed) or `{"name", "base64",
/// "filename", "contentType"}`.
fn multipart_part(part: &Value, fill: &Fill<'_>) -> Result<engine::Part, Rejection> {
    // Deserialized from the borrowed value: no copy of the whole part is made first.
    let json = PartJson::deserialize(part).map_err(|error| {
        Rejection::invalid(format!(
            "body.multipart part: {}; known keys: name, value, base64, filename, contentType",
            without_values(&error.to_string())
        ))
    })?;
    let data = match (json.value, json.base64) {
        (Some(text), None) => Bytes::from(fill.text(&text, "body.multipart")?),
        (None, Some(text)) => decode(&text).ok_or_else(|| {
            Rejection::invalid(format!(
                "body.multipart part '{}': base64 is not valid",
                json.name
            ))
        })?,
        _ => {
            return Err(Rejection::invalid(format!(
                "body.multipart part '{}' needs exactly one of value and base64",
                json.name
            )));
        }
    };
    Ok(engine::Part {
        name: json.name,
        data,
        filename: json.filename,
        content_type: json.content_type,
    })
}
