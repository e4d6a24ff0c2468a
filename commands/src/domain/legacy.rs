//! R6: certificates a CA issued before the campaign, as CSV rows to import. Parsing is pure
//! and reports every bad row with its line number; good rows go on regardless.

use super::cccd::Cccd;
use event_store::RegistryTime;

/// The header a legacy file starts with.
pub const HEADER: &str = "cccd,issued_at,serial";
/// Rows per file; a larger import is split by the caller.
pub const ROWS_MAX: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRow {
    /// 1-based line in the file (the header is line 1).
    pub line: usize,
    pub citizen: Cccd,
    pub issued_at: RegistryTime,
    pub serial: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub line: usize,
    pub problem: String,
}

/// What one line of a legacy file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The header or a blank line.
    Skip,
    Row(LegacyRow),
    /// A bad row: reported, and the rows after it go on.
    Bad(RowError),
    /// The file cannot go on (no header, too many rows): nothing after this line is read.
    Stop(RowError),
}

/// Reads a legacy file a line at a time, so an import can start before the whole file has
/// arrived and never holds more than a line of it. `issued_at` is `YYYY-MM-DD` (UTC
/// midnight) or RFC 3339.
#[derive(Debug)]
pub struct Parser {
    current_year: u16,
    line: usize,
    rows: usize,
    stopped: bool,
}

/// The longest line read; a longer one is a bad row (a legacy row is ~50 bytes).
pub const LINE_MAX: usize = 1024;

impl Parser {
    pub fn new(current_year: u16) -> Self {
        Self { current_year, line: 0, rows: 0, stopped: false }
    }

    /// The next line, without its `\n` (a trailing `\r` is dropped); a reader may pass only
    /// the first `LINE_MAX + 1` bytes of a longer line. After a `Stop`, every line is `Skip`.
    pub fn line(&mut self, bytes: &[u8]) -> Parsed {
        self.line += 1;
        let line = self.line;
        if self.stopped {
            return Parsed::Skip;
        }
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if line == 1 {
            return match std::str::from_utf8(bytes) {
                Ok(header) if header.trim().eq_ignore_ascii_case(HEADER) => Parsed::Skip,
                _ => self.stop(format!("the first line must be the header `{HEADER}` (UTF-8)")),
            };
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Parsed::Skip;
        }
        if self.rows == ROWS_MAX {
            return self.stop(format!("more than {ROWS_MAX} rows; split the file"));
        }
        self.rows += 1;
        // Before the UTF-8 check: a reader may have cut a long line inside a character.
        if bytes.len() > LINE_MAX {
            return Parsed::Bad(RowError { line, problem: format!("longer than {LINE_MAX} bytes") });
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Parsed::Bad(RowError { line, problem: "not UTF-8".into() });
        };
        match parse_row(text, self.current_year) {
            Ok((citizen, issued_at, serial)) => Parsed::Row(LegacyRow { line, citizen, issued_at, serial }),
            Err(problem) => Parsed::Bad(RowError { line, problem }),
        }
    }

    /// Lines read so far (the header included).
    pub fn lines_read(&self) -> usize {
        self.line
    }

    fn stop(&mut self, problem: String) -> Parsed {
        self.stopped = true;
        Parsed::Stop(RowError { line: self.line, problem })
    }
}

/// Splits a whole legacy CSV into good rows and row errors. A file-level problem (no
/// header, too many rows) is one error at its line, and nothing after it is read.
pub fn parse(text: &str, current_year: u16) -> (Vec<LegacyRow>, Vec<RowError>) {
    let mut parser = Parser::new(current_year);
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for l in text.split('\n') {
        match parser.line(l.as_bytes()) {
            Parsed::Skip => {}
            Parsed::Row(r) => rows.push(r),
            Parsed::Bad(e) => errors.push(e),
            Parsed::Stop(e) => {
                errors.push(e);
                break;
            }
        }
    }
    (rows, errors)
}

fn parse_row(text: &str, current_year: u16) -> Result<(Cccd, RegistryTime, Option<String>), String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let [cccd, issued_at, serial] = fields[..] else {
        return Err(format!("expected 3 fields ({HEADER}), got {}", fields.len()));
    };
    let citizen = Cccd::parse(cccd, current_year).map_err(|e| format!("cccd: {e}"))?;
    let issued_at =
        parse_time(issued_at).ok_or_else(|| format!("issued_at: {issued_at:?} is neither YYYY-MM-DD nor RFC 3339"))?;
    let serial = (!serial.is_empty()).then(|| serial.to_string());
    if serial.as_ref().is_some_and(|s| s.len() > 64) {
        return Err("serial: at most 64 characters".into());
    }
    Ok((citizen, issued_at, serial))
}

fn parse_time(s: &str) -> Option<RegistryTime> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(RegistryTime(t.timestamp_millis()));
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(RegistryTime(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r6_bad_rows_are_reported_by_line_and_good_rows_go_on() {
        let csv = "cccd,issued_at,serial\n046196000001,2023-05-01,S-1\n04619600000X,2023-05-01,\n\n046196000002,2023-05-02T10:00:00+07:00,\n046196000003,yesterday,S\n046196000004,2023-05-01\n";
        let (rows, errors) = parse(csv, 2023);
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(rows[0].serial.as_deref(), Some("S-1"));
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3, 6, 7]);
        assert!(errors[0].problem.starts_with("cccd:"), "{}", errors[0].problem);
        assert!(errors[1].problem.starts_with("issued_at:"));
        assert!(errors[2].problem.contains("3 fields"));
    }

    #[test]
    fn a_file_without_the_header_is_one_clear_error() {
        let (rows, errors) = parse("046196000001,2023-05-01,S-1\n", 2023);
        assert!(rows.is_empty());
        assert_eq!((errors[0].line, errors.len()), (1, 1));
        assert!(errors[0].problem.contains(HEADER));
    }

    #[test]
    fn a_line_at_a_time_bad_bytes_are_a_row_error_and_the_cap_stops_the_file() {
        let mut p = Parser::new(2023);
        assert_eq!(p.line(b"cccd,issued_at,serial\r"), Parsed::Skip);
        assert!(matches!(p.line(b"046196000001,2023-05-01,\xff"), Parsed::Bad(RowError { line: 2, .. })));
        let long = format!("046196000001,2023-05-01,{}", "S".repeat(LINE_MAX));
        assert!(matches!(p.line(long.as_bytes()), Parsed::Bad(RowError { line: 3, .. })));
        assert!(matches!(p.line(b"046196000001,2023-05-01,S-1"), Parsed::Row(LegacyRow { line: 4, .. })));
        for _ in 3..ROWS_MAX {
            assert!(matches!(p.line(b"046196000001,2023-05-01,S-1"), Parsed::Row(_)));
        }
        let at = ROWS_MAX + 2;
        assert!(matches!(p.line(b"046196000002,2023-05-01,S-2"), Parsed::Stop(RowError { line, .. }) if line == at));
        assert_eq!(p.line(b"046196000003,2023-05-01,S-3"), Parsed::Skip);
        let mut bad_header = Parser::new(2023);
        assert!(matches!(bad_header.line(b"\xff\xfe"), Parsed::Stop(RowError { line: 1, .. })));
    }
}
