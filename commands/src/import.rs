//! R6: runs a parsed legacy file through the sequencer, one command per row, so each row is
//! decided (and refused, when another CA holds the citizen) like any other issuance.

use crate::domain::event::Event;
use crate::domain::legacy::{LegacyRow, RowError};
use crate::domain::{CaId, Command};
use crate::registrar::{CommandError, Registrar, Submission};
use crate::sequencer::{Sequencer, SubmitError};
use event_store::Metadata;

/// What happened to each row of a file.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub imported: usize,
    /// Rows already imported by an earlier run: nothing was appended for them.
    pub unchanged: usize,
    pub failed: Vec<RowError>,
}

/// Submits every row concurrently (group commit keeps this fast) and reports per row.
/// `Err` only if the registry stopped accepting commands; rows decided before that stand.
pub async fn import_legacy(
    sequencer: &Sequencer<Registrar>,
    meta: &Metadata,
    ca: &CaId,
    rows: Vec<LegacyRow>,
    mut report: ImportReport,
) -> Result<ImportReport, SubmitError> {
    let submissions = rows.into_iter().map(|row| {
        let command = Command::ImportLegacyIssuance {
            citizen: row.citizen,
            ca: ca.clone(),
            issued_at: row.issued_at,
            serial: row.serial,
        };
        let sub = Submission { meta: meta.clone(), command };
        async move { (row.line, sequencer.submit(sub).await) }
    });
    for (line, outcome) in futures::future::join_all(submissions).await {
        match outcome? {
            Ok(accepted) if accepted.events.iter().any(|e| matches!(e, Event::LegacyIssuanceImported { .. })) => {
                report.imported += 1
            }
            Ok(_) => report.unchanged += 1,
            Err(CommandError::Rejected { rejection, .. }) => {
                report.failed.push(RowError { line, problem: rejection.to_string() })
            }
            Err(CommandError::Storage(e)) => {
                report.failed.push(RowError { line, problem: format!("not recorded: {e}") })
            }
        }
    }
    report.failed.sort_by_key(|e| e.line);
    Ok(report)
}
