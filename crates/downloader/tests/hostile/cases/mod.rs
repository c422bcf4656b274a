//! The table, in the order it runs: API rows, job rows, egress and confinement rows, then the
//! heavy rows on fresh agents.

mod api;
mod egress;
mod heavy;
mod jobs;

use super::Row;

/// Every row.
pub(crate) fn all() -> Vec<Row> {
    let mut rows = api::rows();
    rows.extend(jobs::rows());
    rows.extend(heavy::rows());
    rows
}
