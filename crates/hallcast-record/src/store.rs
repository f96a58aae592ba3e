//! The recorder's I/O: one thread owning the recording files, the listing and the limits.
//!
//! Files: `{dir}/{conference}/{start}-{broadcast}.{mkv|webm}` with a small sidecar
//! `….meta` (`key=value` lines: what the listing shows without opening the media file),
//! written at the start and rewritten at the end. A recording whose sidecar has no end was
//! cut off (the relay was killed): it is listed as `interrupted`, its file plays up to the
//! cut.
//!
//! Limits: after each recording ends, at start and every minute, finished recordings older
//! than `max_age` are deleted, then the oldest ones while the total exceeds `max_bytes` —
//! never one being recorded, and never the newest finished one (a single broadcast larger
//! than the limit is kept, and a warning says so).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hallcast_core::{Codec, SessionId};
use tracing::{info, warn};

use crate::Item;
use crate::mkv::{Container, Metadata, Op, iso8601};
use crate::recording::Recording;

/// How often the limits are applied while recording, and open files flushed.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// `{data_dir}/recordings`.
    pub dir: PathBuf,
    /// Total size of the recordings kept (0: no limit).
    pub max_bytes: u64,
    /// Recordings older than this are deleted (`None`: kept).
    pub max_age: Option<Duration>,
    /// Items queued between the media shards and the recorder.
    pub capacity: usize,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RecorderStats {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Items a full queue refused (the media threads never wait).
    pub dropped_items: AtomicU64,
    pub write_errors: AtomicU64,
    pub deleted: AtomicU64,
    /// Video frames left out (lost packets up to the next keyframe) and packets that did
    /// not parse.
    pub video_frames_dropped: AtomicU64,
    pub bad_packets: AtomicU64,
    pub active: AtomicU64,
}

enum Msg {
    Item(Item),
    Stop(mpsc::Sender<()>),
}

/// The media shards' end of the queue to the recorder.
#[derive(Clone)]
pub struct RecordTx {
    tx: SyncSender<Msg>,
    stats: Arc<RecorderStats>,
}

impl RecordTx {
    /// Never waits: a full queue drops the item and counts it.
    pub fn send(&self, item: Item) {
        match self.tx.try_send(Msg::Item(item)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped_items.fetch_add(1, Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for RecordTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordTx")
    }
}

/// A conference's display name, looked up when a recording starts.
pub type Names = Box<dyn Fn(&str) -> Option<String> + Send>;

/// The recorder: its thread, its queue's sending end, its counters.
pub struct Recorder {
    tx: RecordTx,
    stats: Arc<RecorderStats>,
    active: Arc<Mutex<HashSet<String>>>,
    dir: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// Creates the directory and starts the thread.
    pub fn spawn(config: RecorderConfig, names: Names) -> io::Result<Recorder> {
        fs::create_dir_all(&config.dir)?;
        let (tx, rx) = mpsc::sync_channel(config.capacity.max(16));
        let stats = Arc::new(RecorderStats::default());
        let active = Arc::new(Mutex::new(HashSet::new()));
        let worker = Worker {
            config: config.clone(),
            names,
            stats: stats.clone(),
            active: active.clone(),
            open: HashMap::new(),
            ops: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("hallcast-recorder".into())
            .spawn(move || worker.run(rx))?;
        info!(dir = %config.dir.display(), max_bytes = config.max_bytes,
            max_age_s = config.max_age.map(|a| a.as_secs()), "recording every broadcast");
        Ok(Recorder {
            tx: RecordTx {
                tx,
                stats: stats.clone(),
            },
            stats,
            active,
            dir: config.dir,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn sender(&self) -> RecordTx {
        self.tx.clone()
    }

    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every recording on disk, newest first (blocking file system reads).
    pub fn list(&self) -> Vec<RecordingInfo> {
        let active = self.active.lock().map(|a| a.clone()).unwrap_or_default();
        let mut v = list(&self.dir, &active);
        v.sort_by(|a, b| b.start_ms.cmp(&a.start_ms).then(b.id.cmp(&a.id)));
        v
    }

    /// One recording by id.
    pub fn find(&self, id: &str) -> Option<RecordingInfo> {
        SessionId::parse(id).ok()?;
        self.list().into_iter().find(|r| r.id == id)
    }

    /// Finishes the recordings in progress (their cues and duration) and stops the thread;
    /// waits at most `timeout`.
    pub fn stop(&self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.tx.send(Msg::Stop(done_tx)).is_ok() && done_rx.recv_timeout(timeout).is_ok() {
            if let Ok(mut t) = self.thread.lock()
                && let Some(t) = t.take()
            {
                let _ = t.join();
            }
        } else {
            warn!("the recorder did not finish its files in time");
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("dir", &self.dir).finish()
    }
}

/// A recording as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The broadcast's publisher session id (32 hex digits).
    pub id: String,
    pub conference: String,
    pub conference_name: Option<String>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// The media's duration (from the file's timestamps), once finished.
    pub duration_ms: Option<i64>,
    pub audio: Option<String>,
    pub video: Option<String>,
    pub bytes: u64,
    pub state: State,
    pub container: Container,
    pub path: PathBuf,
    meta_path: PathBuf,
    /// Last modification of the media file (Unix ms).
    pub modified_ms: i64,
}

impl RecordingInfo {
    /// The download's file name.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Recording,
    Complete,
    /// Cut off: the relay stopped without finishing the file.
    Interrupted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Recording => "recording",
            State::Complete => "complete",
            State::Interrupted => "interrupted",
        }
    }
}

struct Open {
    rec: Recording,
    file: BufWriter<File>,
    path: PathBuf,
    meta_path: PathBuf,
    meta: Metadata,
    start_ms: i64,
    id: String,
    failed: bool,
    last_flush: Instant,
}

struct Worker {
    config: RecorderConfig,
    names: Names,
    stats: Arc<RecorderStats>,
    active: Arc<Mutex<HashSet<String>>>,
    open: HashMap<SessionId, Open>,
    ops: Vec<Op>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        self.enforce_limits();
        let mut next_housekeeping = Instant::now() + HOUSEKEEPING;
        loop {
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(Msg::Item(item)) => self.on_item(item),
                Ok(Msg::Stop(done)) => {
                    self.finish_all();
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish_all();
                    return;
                }
            }
            let now = Instant::now();
            for o in self.open.values_mut() {
                if now.duration_since(o.last_flush) >= FLUSH_EVERY {
                    o.last_flush = now;
                    if !o.failed && o.file.flush().is_err() {
                        o.failed = true;
                        self.stats.write_errors.fetch_add(1, Relaxed);
                    }
                }
            }
            if now >= next_housekeeping {
                next_housekeeping = now + HOUSEKEEPING;
                self.enforce_limits();
            }
        }
    }

    fn on_item(&mut self, item: Item) {
        match item {
            Item::Started {
                broadcast,
                conference,
                audio,
                video,
                at,
            } => {
                if let Some(old) = self.open.remove(&broadcast) {
                    self.finish(old);
                }
                // The wall clock of `at`: now, less the time the item spent queued.
                let start = SystemTime::now() - at.elapsed();
                let meta = Metadata {
                    conference_id: conference.to_string(),
                    conference_name: (self.names)(&conference),
                    start,
                    audio,
                    video,
                };
                match self.open_file(broadcast, meta, at) {
                    Ok(o) => {
                        info!(%conference, broadcast = %broadcast, path = %o.path.display(),
                            "recording the broadcast");
                        self.stats.started.fetch_add(1, Relaxed);
                        self.stats.active.fetch_add(1, Relaxed);
                        if let Ok(mut a) = self.active.lock() {
                            a.insert(o.id.clone());
                        }
                        self.open.insert(broadcast, o);
                    }
                    Err(e) => {
                        self.stats.write_errors.fetch_add(1, Relaxed);
                        warn!(%conference, "cannot start the broadcast's recording: {e}");
                    }
                }
            }
            Item::Packet { broadcast, packet } => {
                let Some(o) = self.open.get_mut(&broadcast) else {
                    return;
                };
                if o.failed {
                    return;
                }
                let before = (o.rec.n_video_dropped(), o.rec.n_bad_packets());
                let mut ops = std::mem::take(&mut self.ops);
                if let Err(e) = o.rec.push(&packet, &mut ops) {
                    tracing::debug!(broadcast = %broadcast, "recording: bad video packet: {e}");
                }
                let after = (o.rec.n_video_dropped(), o.rec.n_bad_packets());
                self.stats
                    .video_frames_dropped
                    .fetch_add(after.0 - before.0, Relaxed);
                self.stats
                    .bad_packets
                    .fetch_add(after.1 - before.1, Relaxed);
                let r = apply(&mut o.file, &mut ops, &self.stats);
                self.ops = ops;
                if let Err(e) = r {
                    o.failed = true;
                    self.stats.write_errors.fetch_add(1, Relaxed);
                    warn!(broadcast = %broadcast, path = %o.path.display(),
                        "recording stopped: cannot write the file: {e}");
                }
            }
            Item::Ended { broadcast, at } => {
                if let Some(o) = self.open.remove(&broadcast) {
                    let end = SystemTime::now() - at.elapsed();
                    self.finish_at(o, unix_ms(end));
                    self.enforce_limits();
                }
            }
        }
    }

    fn open_file(&mut self, broadcast: SessionId, meta: Metadata, at: Instant) -> io::Result<Open> {
        let conf_dir = self.config.dir.join(safe_component(&meta.conference_id));
        fs::create_dir_all(&conf_dir)?;
        let stamp: String = iso8601(meta.start)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let stem = format!("{stamp}-{broadcast}");
        let path = conf_dir.join(format!("{stem}.{}", meta.container().extension()));
        let meta_path = conf_dir.join(format!("{stem}.meta"));
        let file = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
        let mut o = Open {
            rec: Recording::new(meta.clone(), at, &mut self.ops),
            file,
            path,
            meta_path,
            start_ms: unix_ms(meta.start),
            meta,
            id: broadcast.to_string(),
            failed: false,
            last_flush: Instant::now(),
        };
        write_meta(&o, None, None)?;
        let mut ops = std::mem::take(&mut self.ops);
        let r = apply(&mut o.file, &mut ops, &self.stats);
        self.ops = ops;
        r?;
        Ok(o)
    }

    fn finish(&mut self, o: Open) {
        let end = unix_ms(SystemTime::now());
        self.finish_at(o, end);
    }

    fn finish_at(&mut self, mut o: Open, end_ms: i64) {
        if let Ok(mut a) = self.active.lock() {
            a.remove(&o.id);
        }
        self.stats.active.fetch_sub(1, Relaxed);
        self.stats.finished.fetch_add(1, Relaxed);
        let mut ops = std::mem::take(&mut self.ops);
        o.rec.finish(&mut ops);
        let r = if o.failed {
            Ok(())
        } else {
            apply(&mut o.file, &mut ops, &self.stats).and_then(|()| o.file.flush())
        };
        self.ops = ops;
        if let Err(e) = r {
            self.stats.write_errors.fetch_add(1, Relaxed);
            warn!(path = %o.path.display(), "finishing the recording: {e}");
        }
        let duration = o.rec.muxer().duration_ms();
        if let Err(e) = write_meta(&o, Some(end_ms), Some(duration)) {
            warn!(path = %o.meta_path.display(), "writing the recording's sidecar: {e}");
        }
        info!(conference = %o.meta.conference_id, broadcast = %o.id, path = %o.path.display(),
            duration_ms = duration, bytes = o.rec.muxer().len(),
            video_frames_dropped = o.rec.n_video_dropped(),
            "recording finished");
    }

    fn finish_all(&mut self) {
        let open: Vec<Open> = self.open.drain().map(|(_, o)| o).collect();
        for o in open {
            self.finish(o);
        }
    }

    fn enforce_limits(&mut self) {
        let active = self.active.lock().map(|a| a.clone()).unwrap_or_default();
        let list = list(&self.config.dir, &active);
        let doomed = to_delete(
            &list,
            self.config.max_bytes,
            self.config.max_age,
            unix_ms(SystemTime::now()),
        );
        for i in doomed {
            let r = &list[i];
            let res = fs::remove_file(&r.path).and_then(|()| fs::remove_file(&r.meta_path));
            match res {
                Ok(()) => {
                    self.stats.deleted.fetch_add(1, Relaxed);
                    info!(conference = %r.conference, recording = %r.id, bytes = r.bytes,
                        "recording deleted (recording.max_bytes / max_age_days)");
                }
                Err(e) => warn!(path = %r.path.display(), "cannot delete a recording: {e}"),
            }
        }
        let kept: u64 = list.iter().map(|r| r.bytes).sum();
        if self.config.max_bytes > 0 && kept > self.config.max_bytes && list.len() <= 2 {
            warn!(
                bytes = kept,
                max_bytes = self.config.max_bytes,
                "the newest recordings alone exceed recording.max_bytes: they are kept"
            );
        }
    }
}

/// Which recordings the limits delete (indices into `list`): finished ones older than
/// `max_age` (by their end, or start), then the oldest while the total exceeds
/// `max_bytes` — never one in progress, never the newest finished one.
pub fn to_delete(
    list: &[RecordingInfo],
    max_bytes: u64,
    max_age: Option<Duration>,
    now_ms: i64,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| (list[i].start_ms, list[i].id.clone()));
    let newest_finished = order
        .iter()
        .rev()
        .copied()
        .find(|&i| list[i].state != State::Recording);
    let deletable = |i: usize| list[i].state != State::Recording && Some(i) != newest_finished;
    let mut total: u64 = list.iter().map(|r| r.bytes).sum();
    let mut doomed = Vec::new();
    for &i in &order {
        if !deletable(i) {
            continue;
        }
        let r = &list[i];
        let age_ms = now_ms - r.end_ms.unwrap_or(r.modified_ms.max(r.start_ms));
        let too_old = max_age.is_some_and(|a| age_ms > a.as_millis() as i64);
        let too_big = max_bytes > 0 && total > max_bytes;
        if too_old || too_big {
            doomed.push(i);
            total -= r.bytes;
        }
    }
    doomed
}

/// Carries out the muxer's writes.
fn apply(file: &mut BufWriter<File>, ops: &mut Vec<Op>, stats: &RecorderStats) -> io::Result<()> {
    for op in ops.drain(..) {
        match op {
            Op::Append(bytes) => {
                file.write_all(&bytes)?;
                stats.bytes_written.fetch_add(bytes.len() as u64, Relaxed);
            }
            Op::Patch { at, bytes } => {
                file.flush()?;
                file.get_ref().write_all_at(&bytes, at)?;
            }
        }
    }
    Ok(())
}

fn codec_name(c: Option<Codec>) -> String {
    c.map_or_else(String::new, |c| c.name().to_ascii_lowercase())
}

fn write_meta(o: &Open, end_ms: Option<i64>, duration_ms: Option<i64>) -> io::Result<()> {
    let clean = |s: &str| s.replace(['\n', '\r'], " ");
    let mut s = String::new();
    s.push_str(&format!("id={}\n", o.id));
    s.push_str(&format!("conference={}\n", clean(&o.meta.conference_id)));
    if let Some(n) = &o.meta.conference_name {
        s.push_str(&format!("conference_name={}\n", clean(n)));
    }
    s.push_str(&format!("start_ms={}\n", o.start_ms));
    if let Some(e) = end_ms {
        s.push_str(&format!("end_ms={e}\n"));
    }
    if let Some(d) = duration_ms {
        s.push_str(&format!("duration_ms={d}\n"));
    }
    s.push_str(&format!("audio={}\n", codec_name(o.meta.audio)));
    s.push_str(&format!("video={}\n", codec_name(o.meta.video)));
    s.push_str(&format!(
        "file={}\n",
        o.path
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    // Written aside and renamed: a reader never sees half a sidecar.
    let tmp = o.meta_path.with_extension("meta.tmp");
    fs::write(&tmp, s)?;
    fs::rename(&tmp, &o.meta_path)
}

/// Every recording under `dir` (sidecars that do not parse, or without their media file,
/// are skipped).
pub fn list(dir: &Path, active: &HashSet<String>) -> Vec<RecordingInfo> {
    let mut out = Vec::new();
    let Ok(confs) = fs::read_dir(dir) else {
        return out;
    };
    for conf in confs.flatten() {
        let Ok(files) = fs::read_dir(conf.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            if let Some(r) = read_meta(&p, active) {
                out.push(r);
            }
        }
    }
    out
}

fn read_meta(meta_path: &Path, active: &HashSet<String>) -> Option<RecordingInfo> {
    let text = fs::read_to_string(meta_path).ok()?;
    let mut kv: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            kv.insert(k, v);
        }
    }
    let id = kv.get("id")?.to_string();
    let file = kv.get("file")?;
    if file.contains('/') || file.starts_with('.') {
        return None;
    }
    let path = meta_path.parent()?.join(file);
    let md = fs::metadata(&path).ok()?;
    let modified_ms = md.modified().map(unix_ms).unwrap_or(0);
    let num = |k: &str| kv.get(k).and_then(|v| v.parse::<i64>().ok());
    let opt = |k: &str| kv.get(k).filter(|v| !v.is_empty()).map(|v| v.to_string());
    let end_ms = num("end_ms");
    let state = if end_ms.is_some() {
        State::Complete
    } else if active.contains(&id) {
        State::Recording
    } else {
        State::Interrupted
    };
    let container = if file.ends_with(".mkv") {
        Container::Matroska
    } else {
        Container::Webm
    };
    Some(RecordingInfo {
        id,
        conference: kv.get("conference")?.to_string(),
        conference_name: opt("conference_name"),
        start_ms: num("start_ms")?,
        end_ms,
        duration_ms: num("duration_ms"),
        audio: opt("audio"),
        video: opt("video"),
        bytes: md.len(),
        state,
        container,
        path,
        meta_path: meta_path.to_path_buf(),
        modified_ms,
    })
}

/// A conference id as one directory name (ids are already restricted; this is a guard).
fn safe_component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if c.is_empty() { "_".into() } else { c }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        id: &str,
        start_ms: i64,
        end_ms: Option<i64>,
        bytes: u64,
        state: State,
    ) -> RecordingInfo {
        RecordingInfo {
            id: id.into(),
            conference: "c".into(),
            conference_name: None,
            start_ms,
            end_ms,
            duration_ms: None,
            audio: None,
            video: None,
            bytes,
            state,
            container: Container::Matroska,
            path: PathBuf::from(id),
            meta_path: PathBuf::from(id),
            modified_ms: end_ms.unwrap_or(start_ms),
        }
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_size_limit_deletes_the_oldest_first_but_never_the_newest_or_a_live_one() {
        let list = vec![
            rec("c", 3 * DAY, Some(3 * DAY + 10), 100, State::Complete),
            rec("a", DAY, Some(DAY + 10), 100, State::Complete),
            rec("live", 5 * DAY, None, 500, State::Recording),
            rec("b", 2 * DAY, None, 100, State::Interrupted),
        ];
        // 800 bytes against 650: "a" (100) then "b" (100) go; "c" is the newest finished.
        assert_eq!(to_delete(&list, 650, None, 6 * DAY), vec![1, 3]);
        // No limit: nothing.
        assert_eq!(to_delete(&list, 0, None, 6 * DAY), Vec::<usize>::new());
        // Even a limit of one byte keeps the live one and the newest finished one.
        assert_eq!(to_delete(&list, 1, None, 6 * DAY), vec![1, 3]);
    }

    #[test]
    fn the_age_limit_deletes_what_ended_long_enough_ago() {
        let list = vec![
            rec("old", 0, Some(DAY), 1, State::Complete),
            rec("recent", 9 * DAY, Some(9 * DAY + 1), 1, State::Complete),
            rec("newest", 10 * DAY, Some(10 * DAY + 1), 1, State::Complete),
        ];
        let week = Some(Duration::from_secs(7 * 86_400));
        assert_eq!(to_delete(&list, 0, week, 10 * DAY), vec![0]);
        // The newest is kept however old.
        assert_eq!(to_delete(&list, 0, week, 100 * DAY), vec![0, 1]);
    }
}
