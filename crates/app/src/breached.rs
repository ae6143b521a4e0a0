//! The offline breached-password check: Have I Been Pwned's "ordered by hash" SHA-1 file
//! (`HASH:COUNT` lines, sorted), searched by binary search on disk. Nothing leaves the
//! machine, and the file (tens of GB) is never loaded into memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

#[derive(Debug, Clone)]
pub struct BreachedFile {
    path: PathBuf,
}

impl BreachedFile {
    /// Checks that the file exists and looks like the HIBP format.
    pub fn open(path: &Path) -> Result<Self, String> {
        let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut first = String::new();
        BufReader::new(f)
            .read_line(&mut first)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let hash = first.trim().split(':').next().unwrap_or("");
        if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{} is not a Pwned Passwords SHA-1 file (lines like 000000005AD76BD555C1D6D771DE417A4B87E4B4:10, sorted by hash)",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Whether the password's SHA-1 is in the file. Blocking: call from a blocking thread.
    pub fn contains(&self, password: &str) -> Result<bool, String> {
        let want = crate::crypto_hex_upper(&Sha1::digest(password.as_bytes()));
        let mut f = File::open(&self.path).map_err(|e| e.to_string())?;
        let len = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        // Invariant: every line starting before `lo` sorts below `want`; lines starting at or
        // after `hi` sort above it.
        let (mut lo, mut hi) = (0u64, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (start, line) = line_at_or_after(&mut f, mid)?;
            let Some((start, line)) = start.zip(line) else {
                hi = mid;
                continue;
            };
            let hash = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase();
            match hash.as_str().cmp(want.as_str()) {
                std::cmp::Ordering::Equal => return Ok(true),
                std::cmp::Ordering::Less => lo = start + line.len() as u64 + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        // The first line is never "after" a newline: check it directly.
        let (_, first) = line_at_or_after(&mut f, 0)?;
        Ok(first.is_some_and(|l| {
            l.split(':')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(&want)
        }))
    }
}

/// The first whole line starting at or after `pos` (a line starts at 0 or after a newline).
fn line_at_or_after(f: &mut File, pos: u64) -> Result<(Option<u64>, Option<String>), String> {
    let start_search = pos.saturating_sub(1);
    f.seek(SeekFrom::Start(start_search))
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(&mut *f);
    let mut start = start_search;
    if pos > 0 {
        let mut skip = Vec::new();
        let n = r.read_until(b'\n', &mut skip).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok((None, None));
        }
        start += n as u64;
    }
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok((None, None));
    }
    Ok((
        Some(start),
        Some(line.trim_end_matches(['\n', '\r']).to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(passwords: &[&str], dir: &Path) -> PathBuf {
        let mut lines: Vec<String> = passwords
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    crate::crypto_hex_upper(&Sha1::digest(p.as_bytes())),
                    p.len()
                )
            })
            .collect();
        lines.sort();
        let p = dir.join("pwned.txt");
        std::fs::write(&p, lines.join("\r\n") + "\r\n").unwrap();
        p
    }

    #[test]
    fn finds_every_listed_password_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("sspr-pwned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listed: Vec<String> = (0..500).map(|i| format!("breached-{i}")).collect();
        let refs: Vec<&str> = listed.iter().map(String::as_str).collect();
        let f = BreachedFile::open(&file_with(&refs, &dir)).unwrap();
        for p in &listed {
            assert!(f.contains(p).unwrap(), "{p}");
        }
        for p in ["never-breached", "", "breached-500", "Breached-1"] {
            assert!(!f.contains(p).unwrap(), "{p}");
        }
        let one = BreachedFile::open(&file_with(&["only"], &dir)).unwrap();
        assert!(one.contains("only").unwrap());
        assert!(!one.contains("other").unwrap());
        std::fs::write(dir.join("bad.txt"), "hello\n").unwrap();
        assert!(
            BreachedFile::open(&dir.join("bad.txt"))
                .unwrap_err()
                .contains("not a Pwned Passwords")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
