//! JSON-lines export for log shippers: one record per line in `<dir>/<name>`, rotated by size.
//!
//! When writing a batch would take the current file past `max_bytes` (and it is not empty), the
//! file is closed and renamed `<name>.1`, older files shift up (`.1` → `.2`, …) and the one past
//! `keep` is deleted; a new `<name>` is started. A batch is written whole to one file, so a line is
//! never split across files. Defaults follow Calico's flow-log files (100 MB × 5).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::pipeline::FlowSink;
use crate::record::FlowRecord;

/// Export settings.
#[derive(Clone, Debug)]
pub struct JsonlOptions {
    pub dir: PathBuf,
    /// File name of the current file. Default `flows.jsonl`.
    pub name: String,
    /// Rotate before a file passes this size. Default 100 MiB.
    pub max_bytes: u64,
    /// Rotated files kept (`<name>.1` … `<name>.<keep>`). Default 5.
    pub keep: usize,
}

impl JsonlOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), name: "flows.jsonl".into(), max_bytes: 100 << 20, keep: 5 }
    }
}

/// The rotating writer.
#[derive(Debug)]
pub struct JsonlExporter {
    opts: JsonlOptions,
    file: Option<BufWriter<File>>,
    size: u64,
    buf: Vec<u8>,
}

impl JsonlExporter {
    /// Opens (appending to) `<dir>/<name>`, creating the directory.
    pub fn open(opts: JsonlOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(&opts.dir).map_err(|source| Error::Io { what: "creating export directory", path: opts.dir.clone(), source })?;
        let mut me = Self { opts, file: None, size: 0, buf: Vec::new() };
        me.open_current()?;
        Ok(me)
    }

    fn current(&self) -> PathBuf {
        self.opts.dir.join(&self.opts.name)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.opts.dir.join(format!("{}.{n}", self.opts.name))
    }

    fn open_current(&mut self) -> Result<(), Error> {
        let path = self.current();
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io { what: "opening export file", path: path.clone(), source })?;
        self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(BufWriter::new(f));
        Ok(())
    }

    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io { what, path: path.to_path_buf(), source }
    }

    fn rotate(&mut self) -> Result<(), Error> {
        if let Some(mut f) = self.file.take() {
            f.flush().map_err(|source| Error::Io { what: "flushing export file", path: self.current(), source })?;
        }
        if self.opts.keep == 0 {
            let cur = self.current();
            std::fs::remove_file(&cur).map_err(Self::io("removing export file", &cur))?;
        } else {
            let last = self.rotated(self.opts.keep);
            if last.exists() {
                std::fs::remove_file(&last).map_err(Self::io("removing old export file", &last))?;
            }
            for n in (1..self.opts.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    let to = self.rotated(n + 1);
                    std::fs::rename(&from, &to).map_err(Self::io("rotating export file", &from))?;
                }
            }
            let cur = self.current();
            std::fs::rename(&cur, self.rotated(1)).map_err(Self::io("rotating export file", &cur))?;
        }
        self.open_current()
    }

    /// Paths of the current and rotated files that exist, newest first.
    pub fn files(&self) -> Vec<PathBuf> {
        std::iter::once(self.current()).chain((1..=self.opts.keep).map(|n| self.rotated(n))).filter(|p| p.exists()).collect()
    }

    /// Appends one batch.
    pub fn append(&mut self, records: &[FlowRecord]) -> Result<(), Error> {
        self.buf.clear();
        for r in records {
            serde_json::to_writer(&mut self.buf, r)?;
            self.buf.push(b'\n');
        }
        if self.size > 0 && self.size + self.buf.len() as u64 > self.opts.max_bytes {
            self.rotate()?;
        }
        let path = self.current();
        let f = self.file.as_mut().expect("open");
        f.write_all(&self.buf).and_then(|()| f.flush()).map_err(|source| Error::Io { what: "writing export file", path, source })?;
        self.size += self.buf.len() as u64;
        Ok(())
    }
}

impl FlowSink for JsonlExporter {
    fn write(&mut self, records: &[FlowRecord]) -> Result<(), Error> {
        self.append(records)
    }
}
