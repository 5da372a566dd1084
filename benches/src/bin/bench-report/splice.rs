//! Replacing the generated section of a hand-written document: everything between the line
//! holding [`BEGIN`] and the line holding [`END`] is replaced; everything else, the two marker
//! lines included, stays byte for byte.

use std::fmt;

pub const BEGIN: &str = "<!-- make bench: begin -->";
pub const END: &str = "<!-- make bench: end -->";

#[derive(Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// The marker does not occur.
    Missing(&'static str),
    /// The marker occurs more than once.
    Repeated(&'static str, usize),
    /// The end marker comes before the begin marker, or on the same line.
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
                write!(f, "`{marker}` occurs {n} times; it must occur once")
            }
            SpliceError::OutOfOrder => {
                write!(f, "`{END}` must be on a line after the `{BEGIN}` line")
            }
        }
    }
}

/// `document` with the lines between the marker lines replaced by `section` (which should end
/// with a newline).
pub fn splice(document: &str, section: &str) -> Result<String, SpliceError> {
    let begin = once(document, BEGIN)?;
    let end = once(document, END)?;
    // The section starts after the newline that ends the begin marker's line, and ends where
    // the end marker's line starts.
    let after_begin = document[begin..]
        .find('\n')
        .map(|i| begin + i + 1)
        .ok_or(SpliceError::OutOfOrder)?;
    let end_line = document[..end].rfind('\n').map_or(0, |i| i + 1);
    if end_line < after_begin {
        return Err(SpliceError::OutOfOrder);
    }
    let mut out = String::with_capacity(document.len() + section.len());
    out.push_str(&document[..after_begin]);
    out.push_str(section);
    out.push_str(&document[end_line..]);
    Ok(out)
}

/// The offset of the only occurrence of `marker`.
fn once(document: &str, marker: &'static str) -> Result<usize, SpliceError> {
    let mut at = document.match_indices(marker).map(|(i, _)| i);
    let first = at.next().ok_or(SpliceError::Missing(marker))?;
    let more = at.count();
    if more > 0 {
        return Err(SpliceError::Repeated(marker, more + 1));
    }
    Ok(first)
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
    fn text_on_the_marker_lines_stays() {
        let old = format!("x\n  {BEGIN} keep\nold\n  {END} keep too\ny\n");
        let new = splice(&old, "new\n").unwrap();
        assert_eq!(
            new,
            format!("x\n  {BEGIN} keep\nnew\n  {END} keep too\ny\n")
        );
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
        let old = format!("{BEGIN} {END}\n");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::OutOfOrder));
        let old = format!("x\n{BEGIN}");
        assert_eq!(splice(&old, "s\n"), Err(SpliceError::Missing(END)));
    }
}
