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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub line: usize,
    pub problem: String,
}

/// Splits a legacy CSV into good rows and row errors. `issued_at` is `YYYY-MM-DD` (UTC
/// midnight) or RFC 3339. A file-level problem (no header, too many rows) is one error at line 1.
pub fn parse(text: &str, current_year: u16) -> (Vec<LegacyRow>, Vec<RowError>) {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let file_error = |problem: String| (Vec::new(), vec![RowError { line: 1, problem }]);
    match lines.next() {
        Some((_, header)) if header.trim().eq_ignore_ascii_case(HEADER) => {}
        _ => return file_error(format!("the first line must be the header `{HEADER}`")),
    }
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for (line, text) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        if rows.len() + errors.len() == ROWS_MAX {
            errors.push(RowError { line, problem: format!("more than {ROWS_MAX} rows; split the file") });
            break;
        }
        match parse_row(text, current_year) {
            Ok((citizen, issued_at, serial)) => rows.push(LegacyRow { line, citizen, issued_at, serial }),
            Err(problem) => errors.push(RowError { line, problem }),
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
}
