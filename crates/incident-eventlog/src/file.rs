//! The record file: records as frames (length, value), written at the end the head names and
//! synced before sled's batch is written; read with positioned reads, so readers never disturb
//! the writer. See [`crate::layout`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::LogError;
use crate::layout::{FRAME_HEADER_LEN, MAX_RECORD_LEN, RECORD_FILE};

/// The open record file of one log.
pub(crate) struct RecordFile {
    file: File,
}

impl RecordFile {
    /// Opens (or creates) the record file in the log folder `dir`. A new file's directory entry
    /// is synced, so the file itself survives a crash.
    pub(crate) fn open(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(RECORD_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LogError::storage(dir, "opening the record file of", e))?;
        // on every open, not only on creation: a process killed between creating the file and
        // syncing its folder leaves a file whose name a power loss could still take away
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::storage(dir, "syncing the folder of", e))?;
        Ok(RecordFile { file })
    }

    /// The file's length in bytes.
    pub(crate) fn len(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }

    /// Cuts the file to `len` bytes and syncs it.
    pub(crate) fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }

    /// Writes `bytes` at `offset` and syncs the data.
    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        self.file.sync_data()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// What stops a [`FrameReader`].
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The file ends before the log's end.
    Truncated {
        at: u64,
    },
    /// A frame's length runs past the log's end (`None`: not even the length fits).
    Overrun {
        at: u64,
        len: Option<u32>,
    },
    /// A frame's length is larger than any record can be.
    TooLong {
        at: u64,
        len: u32,
    },
    Io(io::Error),
}

/// Reads frames one after another from `pos` up to `end`, through a buffer of a few hundred
/// kilobytes.
pub(crate) struct FrameReader<'a> {
    file: &'a RecordFile,
    /// Offset of the next frame.
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
}

/// How much a refill reads at least.
const READ_AHEAD: usize = 256 * 1024;

impl<'a> FrameReader<'a> {
    pub(crate) fn new(file: &'a RecordFile, pos: u64, end: u64) -> Self {
        FrameReader {
            file,
            pos,
            end,
            buf: Vec::new(),
            buf_at: pos,
        }
    }

    /// Offset of the next frame.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// The bytes `at..at + n` (within `end`), from the buffer or read into it (with up to
    /// [`READ_AHEAD`] bytes more, as far as the file goes).
    fn bytes(&mut self, at: u64, n: usize) -> Result<&[u8], FrameError> {
        let buffered_end = self.buf_at + self.buf.len() as u64;
        if at < self.buf_at || at + n as u64 > buffered_end {
            let want = (n.max(READ_AHEAD) as u64).min(self.end - at).max(n as u64);
            self.buf.resize(want as usize, 0);
            self.buf_at = at;
            let mut got = 0;
            while got < self.buf.len() {
                match self.file.read_at(&mut self.buf[got..], at + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.clear();
                        return Err(FrameError::Io(e));
                    }
                }
            }
            self.buf.truncate(got);
            if got < n {
                return Err(FrameError::Truncated { at });
            }
        }
        let start = (at - self.buf_at) as usize;
        Ok(&self.buf[start..start + n])
    }

    /// The next frame's offset and record value; `None` at the end.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, FrameError> {
        let at = self.pos;
        if at >= self.end {
            return Ok(None);
        }
        let header = FRAME_HEADER_LEN as u64;
        if self.end - at < header {
            return Err(FrameError::Overrun { at, len: None });
        }
        let head = self.bytes(at, FRAME_HEADER_LEN)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if len as usize > MAX_RECORD_LEN {
            return Err(FrameError::TooLong { at, len });
        }
        if self.end - at - header < u64::from(len) {
            return Err(FrameError::Overrun { at, len: Some(len) });
        }
        self.pos = at + header + u64::from(len);
        let value = self.bytes(at + header, len as usize)?;
        Ok(Some((at, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_back_across_buffer_refills() {
        let dir = tempfile::tempdir().unwrap();
        let file = RecordFile::open(dir.path()).unwrap();
        let mut bytes = Vec::new();
        let values: Vec<Vec<u8>> = (0..40u8)
            .map(|i| vec![i; 1000 * usize::from(i) + 1])
            .collect();
        for v in &values {
            bytes.extend_from_slice(&(v.len() as u32).to_be_bytes());
            bytes.extend_from_slice(v);
        }
        file.write_at(&bytes, 0).unwrap();
        let end = bytes.len() as u64;
        let mut r = FrameReader::new(&file, 0, end);
        for v in &values {
            let (_, got) = r.next_frame().unwrap().unwrap();
            assert_eq!(got, &v[..]);
        }
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.position(), end);

        // an end past the file's length: the file is truncated
        let mut r = FrameReader::new(&file, 0, end + 10);
        for _ in &values {
            r.next_frame().unwrap();
        }
        assert!(matches!(r.next_frame(), Err(FrameError::Truncated { .. })));
        // a length that runs past the end
        let mut r = FrameReader::new(&file, 0, 500);
        assert!(matches!(r.next_frame(), Ok(Some(_))));
        assert!(matches!(
            r.next_frame(),
            Err(FrameError::Overrun {
                at: 5,
                len: Some(1001)
            })
        ));
        file.truncate(end - 5).unwrap();
        let mut r = FrameReader::new(&file, 0, end);
        let mut n = 0;
        let err = loop {
            match r.next_frame() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("read past a truncation"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, values.len() - 1);
        assert!(matches!(err, FrameError::Truncated { .. }), "{err:?}");
        assert_eq!(file.len().unwrap(), end - 5);
    }
}
