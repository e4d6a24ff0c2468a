//! R6: runs a parsed legacy file through the sequencer, one command per row, so each row is
//! decided (and refused, when another CA holds the citizen) like any other issuance.

use crate::domain::event::Event;
use crate::domain::legacy::{LINE_MAX, LegacyRow, Parsed, Parser, RowError};
use crate::domain::{CaId, Command};
use crate::registrar::{CommandError, Registrar, Submission};
use crate::sequencer::{Sequencer, SubmitError};
use event_store::Metadata;

/// What happened to each row of a file.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
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

/// Rows submitted together while streaming: enough for full group commits, small enough
/// that a file of any size holds little memory.
const BATCH: usize = 1024;

/// Imports a legacy file as it arrives (R6): each chunk of bytes is split into lines,
/// parsed, and submitted a batch at a time, so neither the file nor its rows are ever held
/// whole. Rows decided before a later problem (a bad line, the size limit, a dropped
/// connection) stand; re-importing the same file is idempotent.
pub struct StreamingImport<'a> {
    sequencer: &'a Sequencer<Registrar>,
    meta: Metadata,
    ca: CaId,
    parser: Parser,
    /// The current line so far, at most `LINE_MAX + 1` bytes of it.
    partial: Vec<u8>,
    batch: Vec<LegacyRow>,
    report: ImportReport,
    received: usize,
    max_bytes: usize,
    stopped: bool,
}

impl<'a> StreamingImport<'a> {
    pub fn new(
        sequencer: &'a Sequencer<Registrar>,
        meta: Metadata,
        ca: CaId,
        current_year: u16,
        max_bytes: usize,
    ) -> Self {
        Self {
            sequencer,
            meta,
            ca,
            parser: Parser::new(current_year),
            partial: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            report: ImportReport::default(),
            received: 0,
            max_bytes,
            stopped: false,
        }
    }

    /// True once the file cannot go on (no header, too many rows, over the size limit): the
    /// caller may stop reading.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The file-level problem at line 1, if the file had no header: nothing was imported.
    pub fn refused(&self) -> Option<&RowError> {
        self.report.failed.first().filter(|e| e.line == 1 && self.stopped)
    }

    /// The next bytes of the file.
    pub async fn feed(&mut self, mut chunk: &[u8]) -> Result<(), SubmitError> {
        if self.stopped {
            return Ok(());
        }
        self.received += chunk.len();
        if self.received > self.max_bytes {
            self.stopped = true;
            self.report.failed.push(RowError {
                line: self.parser.lines_read() + 1,
                problem: format!(
                    "the file is over {} bytes: split it; the lines before this one were read",
                    self.max_bytes
                ),
            });
            return self.flush().await;
        }
        while let Some(at) = chunk.iter().position(|&b| b == b'\n') {
            self.keep(&chunk[..at]);
            let line = std::mem::take(&mut self.partial);
            self.parse(&line);
            self.partial = line;
            self.partial.clear();
            chunk = &chunk[at + 1..];
            if self.batch.len() >= BATCH {
                self.flush().await?;
            }
        }
        self.keep(chunk);
        Ok(())
    }

    /// The end of the file: its last line, if it has no newline.
    pub fn end(&mut self) {
        if !self.partial.is_empty() && !self.stopped {
            let line = std::mem::take(&mut self.partial);
            self.parse(&line);
        }
    }

    /// The last batch, and the report.
    pub async fn finish(mut self) -> Result<ImportReport, SubmitError> {
        self.end();
        self.flush().await?;
        self.report.failed.sort_by_key(|e| e.line);
        Ok(self.report)
    }

    fn keep(&mut self, part: &[u8]) {
        let room = (LINE_MAX + 1).saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn parse(&mut self, line: &[u8]) {
        match self.parser.line(line) {
            Parsed::Skip => {}
            Parsed::Row(row) => self.batch.push(row),
            Parsed::Bad(e) => self.report.failed.push(e),
            Parsed::Stop(e) => {
                self.stopped = true;
                self.report.failed.push(e);
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SubmitError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let report = std::mem::take(&mut self.report);
        self.report = import_legacy(self.sequencer, &self.meta, &self.ca, rows, report).await?;
        Ok(())
    }
}
