//! A JSON Lines file (or standard input) read a line at a time, whatever its size: what `rows
//! submit` and `rows sync` read their rows and records from.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use super::client::Failure;

pub(crate) struct JsonLines {
    /// The name errors give: the path, or `stdin`.
    name: PathBuf,
    reader: Box<dyn std::io::BufRead + Send>,
    /// The lines read so far.
    line: usize,
    buf: Vec<u8>,
}

impl JsonLines {
    /// The file at `path`, or standard input for `-`.
    pub(crate) fn open(path: &Path) -> Result<JsonLines, Failure> {
        let stdin = path == Path::new("-");
        let reader: Box<dyn std::io::BufRead + Send> = if stdin {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            Box::new(std::io::BufReader::with_capacity(64 * 1024, file))
        };
        Ok(JsonLines {
            name: if stdin {
                PathBuf::from("stdin")
            } else {
                path.to_owned()
            },
            reader,
            line: 0,
            buf: Vec::new(),
        })
    }

    /// The next non-blank line and its number (1-based, as editors count: blank lines
    /// included); `None` at the end.
    pub(crate) fn next(&mut self) -> Result<Option<(usize, &[u8])>, Failure> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Failure::Usage(format!("{}: {e}", self.name.display())))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((self.line, &self.buf)));
            }
        }
    }

    /// The lines read so far (blank ones included): at the end, the file's.
    pub(crate) fn lines(&self) -> usize {
        self.line
    }

    /// A file error at `line`: `NAME:LINE: message`.
    pub(crate) fn error_at(&self, line: usize, message: impl std::fmt::Display) -> Failure {
        Failure::Usage(format!("{}:{line}: {message}", self.name.display()))
    }

    /// A file error about the whole file: `NAME: message`.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> Failure {
        Failure::Usage(format!("{}: {message}", self.name.display()))
    }
}
