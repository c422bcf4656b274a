//! Output formatting: `human` for people, `json` for programs.

pub(crate) mod human;
pub(crate) mod json;
