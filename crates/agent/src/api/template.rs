//! `${name}` templates, resolved from a job's `vars`. `$${` writes a literal `${`.
//!
//! What substitutions add to a job is capped (`DOWNLOADER_MAX_TEMPLATE_OUTPUT`): the bytes of
//! the values put in place of `${name}`, summed over every field of the job. Text without
//! templates does not count (the request body limit bounds it). The cap is checked before each
//! value is copied, so a 1 MB variable used 1,000 times stops at the cap instead of allocating
//! a gigabyte.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

/// Renders templates for one job, counting what substitutions add against the job's cap.
pub(crate) struct Templates<'a> {
    vars: &'a BTreeMap<String, String>,
    cap: usize,
    /// Bytes substitutions may still add to the job.
    left: Cell<usize>,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// `${` without a closing `}`; carries the start of what follows it.
    Unclosed(String),
    /// `${name}` for a name that `vars` does not give.
    Unresolved(String),
    /// Substitutions would add more than the cap (in bytes) to the job.
    TooLarge {
        /// The cap.
        cap: usize,
    },
}

impl<'a> Templates<'a> {
    /// Templates from `vars`, adding at most `cap` bytes to the job in all.
    pub(crate) fn new(vars: &'a BTreeMap<String, String>, cap: usize) -> Self {
        Self {
            vars,
            cap,
            left: Cell::new(cap),
        }
    }

    /// Replaces every `${name}` in `text`; an unknown name is an error naming it.
    pub(crate) fn render(&self, text: &str) -> Result<String, TemplateError> {
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
                .ok_or_else(|| TemplateError::Unclosed(truncate(after).to_owned()))?;
            let name = after[..end].trim();
            let value = self
                .vars
                .get(name)
                .ok_or_else(|| TemplateError::Unresolved(truncate(name).to_owned()))?;
            self.spend(value.len())?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Renders every string inside a JSON value.
    pub(crate) fn render_json(&self, value: &mut serde_json::Value) -> Result<(), TemplateError> {
        match value {
            serde_json::Value::String(text) => *text = self.render(text)?,
            serde_json::Value::Array(items) => {
                for item in items {
                    self.render_json(item)?;
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values_mut() {
                    self.render_json(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn spend(&self, bytes: usize) -> Result<(), TemplateError> {
        let left = self
            .left
            .get()
            .checked_sub(bytes)
            .ok_or(TemplateError::TooLarge { cap: self.cap })?;
        self.left.set(left);
        Ok(())
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(20) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unclosed(after) => write!(f, "unclosed template '${{{after}'"),
            Self::Unresolved(name) => {
                write!(f, "unresolved template variable '{name}' (give it in vars)")
            }
            Self::TooLarge { cap } => write!(
                f,
                "templates would add more than {cap} bytes to the job (the template output cap)"
            ),
        }
    }
}

impl fmt::Debug for Templates<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("cap", &self.cap)
            .field("left", &self.left.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [
            ("domain".to_owned(), "api.test".to_owned()),
            ("id".to_owned(), "7".to_owned()),
        ]
        .into()
    }

    #[test]
    fn templates_resolve_escape_and_fail_loudly() {
        let vars = vars();
        let templates = Templates::new(&vars, 1024);
        assert_eq!(
            templates.render("https://${domain}/x/${ id }").as_deref(),
            Ok("https://api.test/x/7")
        );
        assert_eq!(
            templates.render("cost: $${domain}").as_deref(),
            Ok("cost: ${domain}")
        );
        assert_eq!(
            templates.render("${missing}"),
            Err(TemplateError::Unresolved("missing".into()))
        );
        assert!(templates.render("${open").is_err());
    }

    #[test]
    fn the_cap_counts_substitutions_across_fields_before_copying() {
        let big: BTreeMap<String, String> = [("v".to_owned(), "x".repeat(1000))].into();
        let templates = Templates::new(&big, 2500);
        // Text without templates is free.
        assert!(templates.render(&"y".repeat(10_000)).is_ok());
        assert_eq!(
            templates.render("${v}${v}").map(|text| text.len()),
            Ok(2000)
        );
        // The budget is shared: the third use anywhere in the job is over.
        assert_eq!(
            templates.render("a ${v} b ${v}"),
            Err(TemplateError::TooLarge { cap: 2500 })
        );
        // A field that uses the variable 1,000 times stops at the cap.
        let templates = Templates::new(&big, 2500);
        let text = "${v}".repeat(1000);
        assert_eq!(
            templates.render(&text),
            Err(TemplateError::TooLarge { cap: 2500 })
        );
        let mut json = serde_json::json!({"a": ["${v}", {"b": "${v}"}], "c": "${v}"});
        assert_eq!(
            Templates::new(&big, 2500).render_json(&mut json),
            Err(TemplateError::TooLarge { cap: 2500 })
        );
    }
}
