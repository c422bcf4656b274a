//! `${name}` templates, resolved from a job's `vars`. `$${` writes a literal `${`.

use std::collections::BTreeMap;

/// Replaces every `${name}` in `text`; an unknown name is an error naming it.
pub(crate) fn render(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` is an escaped `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed template '${{{}'", truncate(after)))?;
        let name = after[..end].trim();
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unresolved template variable '{name}' (give it in vars)"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders every string inside a JSON value.
pub(crate) fn render_json(
    value: &mut serde_json::Value,
    vars: &BTreeMap<String, String>,
) -> Result<(), String> {
    match value {
        serde_json::Value::String(text) => *text = render(text, vars)?,
        serde_json::Value::Array(items) => {
            for item in items {
                render_json(item, vars)?;
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                render_json(item, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(20) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_resolve_escape_and_fail_loudly() {
        let vars: BTreeMap<String, String> = [
            ("domain".to_owned(), "api.test".to_owned()),
            ("id".to_owned(), "7".to_owned()),
        ]
        .into();
        assert_eq!(
            render("https://${domain}/x/${ id }", &vars).as_deref(),
            Ok("https://api.test/x/7")
        );
        assert_eq!(
            render("cost: $${domain}", &vars).as_deref(),
            Ok("cost: ${domain}")
        );
        assert!(render("${missing}", &vars).is_err_and(|e| e.contains("'missing'")));
        assert!(render("${open", &vars).is_err());
    }
}
