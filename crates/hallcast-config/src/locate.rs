//! Where things are in a configuration's text: the `toml` parser's byte spans turned into
//! lines, columns and key paths (`upstream.parent`, `conferences[1].stream_key`), so that every
//! problem — a syntax error, an unknown key, a wrong type, a failed check — names its key and
//! the line it is on.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A place in a file: line and column, both counted from 1 (the column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// The path of a syntax error that is in no table.
pub const DOCUMENT: &str = "(document)";

/// One key written in a file.
struct Entry {
    /// `section.key`, `array[i]`, `array[i].key`.
    path: String,
    /// Where the key is written (for an array element: the element itself; for a table:
    /// its name in the header).
    key: Range<usize>,
    /// Where its value is (for a `[table]` or `[[array]]` element: the header).
    value: Range<usize>,
    is_table: bool,
}

/// Every key of one document, flattened.
pub(crate) struct Keys {
    entries: Vec<Entry>,
}

/// A problem found in the text alone (not yet tied to a file name).
pub(crate) struct Located {
    pub key: String,
    pub message: String,
    pub at: Position,
}

impl Keys {
    /// Parses `text`'s syntax; a syntax error comes back with its place and the table (or
    /// key) it is in.
    pub fn parse(text: &str) -> Result<Keys, Located> {
        let (table, errors) = DeTable::parse_recoverable(text);
        let keys = Keys::of(table.get_ref());
        match errors.into_iter().next() {
            None => Ok(keys),
            Some(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                Err(Located {
                    key: keys.enclosing(text, offset),
                    message: e.message().trim().to_string(),
                    at: Position::of_offset(text, offset),
                })
            }
        }
    }

    fn of(table: &DeTable<'_>) -> Keys {
        let mut entries = Vec::new();
        collect(table, "", &mut entries);
        Keys { entries }
    }

    /// Ties a deserialization error (unknown key, wrong type, missing key) to its key.
    pub fn locate_error(&self, text: &str, e: &toml::de::Error) -> Located {
        let span = e.span().unwrap_or(0..0);
        let key = self
            .entries
            .iter()
            .filter(|en| contains(&en.key, span.start) || contains(&en.value, span.start))
            .max_by_key(|en| en.path.len())
            .map_or_else(|| DOCUMENT.to_string(), |en| en.path.clone());
        Located {
            key,
            message: e.message().trim().to_string(),
            at: Position::of_offset(text, span.start),
        }
    }

    /// Where `path` is written: its key, or when the file does not have it (a default
    /// value), its nearest ancestor that it has. None: not even the section is written.
    pub fn offset_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(en) = self.entries.iter().find(|en| en.path == path) {
                return Some(en.key.start);
            }
            path = parent(path)?;
        }
    }

    /// The key path a syntax error at `offset` is in: the key on the error's line if there
    /// is one, else the table the line belongs to.
    fn enclosing(&self, text: &str, offset: usize) -> String {
        let line = Position::of_offset(text, offset).line;
        let Some(last) = self
            .entries
            .iter()
            .filter(|en| en.key.start <= offset)
            .max_by_key(|en| (en.key.start, en.path.len()))
        else {
            return DOCUMENT.to_string();
        };
        if last.is_table || Position::of_offset(text, last.key.start).line == line {
            return last.path.clone();
        }
        parent(&last.path).unwrap_or(DOCUMENT).to_string()
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.is_empty() && offset == span.start)
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → None.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

fn collect(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        let path = format!("{prefix}{}", k.get_ref());
        let is_table = matches!(v.get_ref(), DeValue::Table(_));
        out.push(Entry {
            path: path.clone(),
            key: k.span(),
            value: v.span(),
            is_table,
        });
        match v.get_ref() {
            DeValue::Table(t) => collect(t, &format!("{path}."), out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    let is_table = matches!(item.get_ref(), DeValue::Table(_));
                    out.push(Entry {
                        path: item_path.clone(),
                        key: item.span(),
                        value: item.span(),
                        is_table,
                    });
                    if let DeValue::Table(t) = item.get_ref() {
                        collect(t, &format!("{item_path}."), out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nb = \"hội\" x\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        let x = text.find('x').unwrap();
        // "b = \"hội\" " is 10 characters (12 bytes): x is in column 11.
        assert_eq!(
            Position::of_offset(text, x),
            Position {
                line: 2,
                column: 11
            }
        );
        assert_eq!(Position::of_offset(text, 10_000).line, 3);
    }

    #[test]
    fn paths_name_tables_arrays_and_their_keys() {
        let text = "[http]\nlisten = \"a\"\n[[conferences]]\nid = \"x\"\n[[conferences]]\nid = \"y\"\n[upstream]\nfallbacks = [\"a\", \"b\"]\n";
        let keys = Keys::parse(text).ok().unwrap();
        let line = |p: &str| Position::of_offset(text, keys.offset_of(p).unwrap()).line;
        assert_eq!(line("http"), 1);
        assert_eq!(line("http.listen"), 2);
        assert_eq!(line("conferences[1].id"), 6);
        // A key the file does not write is placed at its nearest written ancestor.
        assert_eq!(line("conferences[1].stream_key"), 5);
        assert_eq!(line("upstream.fallbacks[1]"), 8);
        assert_eq!(keys.offset_of("media.udp"), None);
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a"), None);
    }
}
