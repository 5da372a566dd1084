//! Replacing the generated section of a hand-written document: everything between the line
//! [`BEGIN`] and the line [`END`] is replaced; everything else, the two marker lines included,
//! stays byte for byte. A marker line holds the marker alone (spaces around it aside), so that
//! prose can name the markers.

use std::fmt;

pub const BEGIN: &str = "<!-- make bench: begin -->";
pub const END: &str = "<!-- make bench: end -->";

#[derive(Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// No line holds the marker.
    Missing(&'static str),
    /// More than one line holds the marker.
    Repeated(&'static str, usize),
    /// The end marker's line comes before the begin marker's.
    OutOfOrder,
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpliceError::Missing(marker) => write!(
                f,
                "no `{marker}` line: the generated section goes between a `{BEGIN}` line and \
                 a `{END}` line; add them where it belongs"
            ),
            SpliceError::Repeated(marker, n) => {
                write!(f, "{n} `{marker}` lines; there must be one")
            }
            SpliceError::OutOfOrder => {
                write!(f, "the `{END}` line must come after the `{BEGIN}` line")
            }
        }
    }
}

/// `document` with the lines between the marker lines replaced by `section` (which should end
/// with a newline).
pub fn splice(document: &str, section: &str) -> Result<String, SpliceError> {
    let begin = line(document, BEGIN)?;
    let end = line(document, END)?;
    if end.start < begin.end {
        return Err(SpliceError::OutOfOrder);
    }
    let mut out = String::with_capacity(document.len() + section.len());
    out.push_str(&document[..begin.end]);
    out.push_str(section);
    out.push_str(&document[end.start..]);
    Ok(out)
}

/// Where the only line holding `marker` starts, and where the next line starts.
struct Line {
    start: usize,
    end: usize,
}

fn line(document: &str, marker: &'static str) -> Result<Line, SpliceError> {
    let mut found = Vec::new();
    let mut start = 0;
    for text in document.split_inclusive('\n') {
        if text.trim() == marker {
            found.push(Line {
                start,
                end: start + text.len(),
            });
        }
        start += text.len();
    }
    match found.len() {
        0 => Err(SpliceError::Missing(marker)),
        1 => Ok(found.remove(0)),
        n => Err(SpliceError::Repeated(marker, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(before: &str, inside: &str, after: &str) -> String {
        format!("{before}{BEGIN}\n{inside}{END}\n{after}")
    }

    #[test]
    fn replaces_only_between_the_markers() {
        let before = "# Title\r\n\nHand-written, with trailing spaces   \n\n";
        let after = "\n## Later\n\nno final newline";
        let old = doc(before, "old line 1\nold line 2\n", after);
        let new = splice(&old, "new section\n").unwrap();
        assert_eq!(new, doc(before, "new section\n", after));
        // Splicing again with the same section changes nothing.
        assert_eq!(splice(&new, "new section\n").unwrap(), new);
    }

    #[test]
    fn content_outside_is_preserved_byte_for_byte() {
        let before = "a\u{a0}b µs ≥ 0.95\t\n<!-- other comment -->\n";
        let after = "x\r\n\r\n| t | u |\n";
        let spliced = splice(&doc(before, "", after), "S\n").unwrap();
        assert!(spliced.starts_with(&format!("{before}{BEGIN}\n")));
        assert!(spliced.ends_with(&format!("{END}\n{after}")));
        assert_eq!(
            spliced.len(),
            before.len() + after.len() + BEGIN.len() + END.len() + 4
        );
    }

    #[test]
    fn marker_lines_stay_as_they_are() {
        let old = format!("x\n  {BEGIN}\t\r\nold\n {END}  \ny\n");
        let new = splice(&old, "new\n").unwrap();
        assert_eq!(new, format!("x\n  {BEGIN}\t\r\nnew\n {END}  \ny\n"));
    }

    #[test]
    fn prose_naming_the_markers_is_not_a_marker() {
        let prose = format!("Between the `{BEGIN}` and `{END}` lines.\n");
        let old = format!("{prose}{BEGIN}\nold\n{END}\n{prose}");
        let new = splice(&old, "new\n").unwrap();
        assert_eq!(new, format!("{prose}{BEGIN}\nnew\n{END}\n{prose}"));
        assert_eq!(splice(&prose, "s\n"), Err(SpliceError::Missing(BEGIN)));
    }

    #[test]
    fn an_end_marker_without_a_final_newline() {
        let old = format!("{BEGIN}\nold\n{END}");
        assert_eq!(splice(&old, "s\n").unwrap(), format!("{BEGIN}\ns\n{END}"));
    }

    #[test]
    fn empty_section_between_adjacent_markers() {
        let old = format!("{BEGIN}\n{END}\n");
        assert_eq!(splice(&old, "s\n").unwrap(), format!("{BEGIN}\ns\n{END}\n"));
        assert_eq!(splice(&old, "").unwrap(), old);
    }

    #[test]
    fn missing_markers_are_errors() {
        assert_eq!(
            splice("no markers\n", "s\n"),
            Err(SpliceError::Missing(BEGIN))
        );
        assert_eq!(
            splice(&format!("{BEGIN}\nonly begin\n"), "s\n"),
            Err(SpliceError::Missing(END))
        );
        assert_eq!(
            splice(&format!("only end\n{END}\n"), "s\n"),
            Err(SpliceError::Missing(BEGIN))
        );
        let message = SpliceError::Missing(BEGIN).to_string();
        assert!(
            message.contains(BEGIN) && message.contains(END),
            "{message}"
        );
    }

    #[test]
    fn repeated_markers_are_errors() {
        let old = format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::Repeated(BEGIN, 2)));
        let old = format!("{BEGIN}\n{END}\n{END}\n");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::Repeated(END, 2)));
    }

    #[test]
    fn markers_out_of_order_are_errors() {
        let old = format!("{END}\nx\n{BEGIN}\n");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::OutOfOrder));
        // On one line, neither is a marker line.
        let old = format!("{BEGIN} {END}\n");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::Missing(BEGIN)));
        let old = format!("x\n{BEGIN}");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::Missing(END)));
    }
}
