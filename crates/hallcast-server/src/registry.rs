//! The conference registry: which conferences this relay takes WHIP for and serves WHEP for.
//!
//! One registry per relay. The ledger's `conferences` table is its durable form; this type keeps
//! an in-memory view that WHIP and WHEP read without touching the database (a read lock and a
//! hash lookup per request). Every change made through the admin API is written to the ledger
//! first and then to the view, so it takes effect at once. Changes made by another process on
//! the same ledger (the `hallcast conference` CLI) are picked up by [`Registry::refresh`], which
//! the relay runs every [`REFRESH_INTERVAL`] and, rate-limited, when a request names a
//! conference or a key the view does not know.
//!
//! `[[conferences]]` in the configuration file *seeds* the registry at start
//! ([`Registry::seed`]): a conference the ledger does not have is created; for one it has, the
//! title and shared viewer token follow the file, and the stream key follows the file only when
//! the file's key changed since it was last applied (so a key rotated through the API survives a
//! restart with an unchanged file, and editing the file still changes the key).
//!
//! Ending a conference refuses WHIP from then on and ends its live sessions (through the hook
//! the relay installs with [`Registry::set_on_end`]); a rotated stream key ends nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hallcast_config::ConferenceConfig;
use hallcast_core::accounting::ConferenceId;
use hallcast_ledger::{Conference, Ledger, LedgerError, now_ms};
use tracing::{info, warn};

/// How often the relay re-reads the registry from the ledger.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// At most one refresh on a miss per this interval (a client guessing keys cannot make the
/// relay read the database per request).
const MISS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of randomness in a generated stream key (32 hex digits).
const KEY_BYTES: usize = 16;
/// Shortest stream key accepted from a person (the configuration's rule too).
pub const MIN_STREAM_KEY_LEN: usize = 8;

/// Called with a conference's id when it is ended, to end its live sessions.
pub type OnEnd = Box<dyn Fn(&str) + Send + Sync>;

/// A registry change that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no conference {0:?}")]
    NotFound(String),
    #[error("invalid conference id: {0}")]
    BadId(String),
    #[error("stream key must be at least {MIN_STREAM_KEY_LEN} characters")]
    KeyTooShort,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The conference registry of one relay.
pub struct Registry {
    ledger: Ledger,
    view: RwLock<HashMap<String, Arc<Conference>>>,
    /// When the last re-read on a miss started.
    last_miss_refresh: tokio::sync::Mutex<Option<Instant>>,
    on_end: RwLock<Option<OnEnd>>,
}

impl Registry {
    /// An empty view over `ledger`; call [`Registry::refresh`] (or [`Registry::seed`]) to load it.
    pub fn new(ledger: Ledger) -> Registry {
        Registry {
            ledger,
            view: RwLock::new(HashMap::new()),
            last_miss_refresh: tokio::sync::Mutex::new(None),
            on_end: RwLock::new(None),
        }
    }

    /// The ledger the registry keeps its conferences in (`/readyz` checks it answers).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Installs what ending a conference does to its live sessions.
    pub fn set_on_end(&self, f: OnEnd) {
        *self.on_end.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// The conference as the view has it.
    pub fn get(&self, id: &str) -> Option<Arc<Conference>> {
        self.read().get(id).cloned()
    }

    /// The conference, re-reading the ledger first if the view does not have it (rate-limited,
    /// see [`Registry::refresh_on_miss`]).
    pub async fn lookup(&self, id: &str) -> Option<Arc<Conference>> {
        if let Some(c) = self.get(id) {
            return Some(c);
        }
        self.refresh_on_miss().await;
        self.get(id)
    }

    /// Every conference, sorted by id.
    pub fn all(&self) -> Vec<Arc<Conference>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Re-reads the ledger when the view missed (an unknown conference, a key that did not
    /// match), so a conference or key made a moment ago by another process is found. Misses
    /// are coalesced: the caller waits for one re-read that started after it asked, and
    /// re-reads start at most once per second, so a client guessing names or keys costs the
    /// database one read a second and itself up to a second per guess.
    pub async fn refresh_on_miss(&self) {
        let asked = Instant::now();
        let mut last = self.last_miss_refresh.lock().await;
        if last.is_some_and(|t| t >= asked) {
            return; // a re-read that started after we asked has finished
        }
        if let Some(t) = *last {
            let next = t + MISS_REFRESH_INTERVAL;
            tokio::time::sleep_until(next.into()).await;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            warn!("conference registry: cannot re-read the ledger: {e}");
        }
    }

    /// Replaces the view with the ledger's registry; conferences that became ended since the
    /// last read have their live sessions ended.
    pub async fn refresh(&self) -> Result<(), LedgerError> {
        let rows = self.ledger.conferences().await?;
        let mut newly_ended = Vec::new();
        {
            let mut view = self.write();
            for c in &rows {
                let was_open = view
                    .get(c.id.as_str())
                    .is_some_and(|old| old.ended_ms.is_none());
                if was_open && c.ended_ms.is_some() {
                    newly_ended.push(c.id.as_str().to_string());
                }
            }
            *view = rows
                .into_iter()
                .map(|c| (c.id.as_str().to_string(), Arc::new(c)))
                .collect();
        }
        for id in newly_ended {
            info!(conference = %id, "conference ended (registry)");
            self.ended(&id);
        }
        Ok(())
    }

    /// Applies the configuration file's `[[conferences]]` (see the module doc), then loads
    /// the view.
    pub async fn seed(&self, seeds: &[ConferenceConfig]) -> Result<(), RegistryError> {
        for s in seeds {
            let id = ConferenceId::parse(&s.id).map_err(|e| RegistryError::BadId(e.to_string()))?;
            let c = match self.ledger.conference(&id).await? {
                None => Conference {
                    viewer_token: s.viewer_token.clone(),
                    seed_stream_key: s.stream_key.clone(),
                    ..Conference::new(id, s.title.clone(), s.stream_key.clone(), now_ms())
                },
                Some(mut c) => {
                    c.title = s.title.clone();
                    c.viewer_token = s.viewer_token.clone();
                    if c.seed_stream_key != s.stream_key {
                        if !c.seed_stream_key.is_empty() || c.stream_key != s.stream_key {
                            info!(conference = %c.id, "stream key taken from the configuration file");
                        }
                        c.stream_key = s.stream_key.clone();
                        c.seed_stream_key = s.stream_key.clone();
                    }
                    c
                }
            };
            self.ledger.upsert_conference(c).await?;
        }
        self.refresh().await?;
        Ok(())
    }

    /// Creates a conference (with a new random stream key unless one is given) or renames an
    /// existing one (its key unchanged unless one is given). The bool is true when created.
    pub async fn create_or_rename(
        &self,
        id: ConferenceId,
        title: String,
        stream_key: Option<String>,
    ) -> Result<(Arc<Conference>, bool), RegistryError> {
        if let Some(k) = &stream_key
            && k.len() < MIN_STREAM_KEY_LEN
        {
            return Err(RegistryError::KeyTooShort);
        }
        let (c, created) = match self.ledger.conference(&id).await? {
            Some(mut c) => {
                c.title = title;
                if let Some(k) = stream_key {
                    c.stream_key = k;
                }
                (c, false)
            }
            None => {
                let key = stream_key.unwrap_or_else(new_stream_key);
                (Conference::new(id, title, key, now_ms()), true)
            }
        };
        Ok((self.store(c).await?, created))
    }

    /// Gives a conference a new stream key (random unless given). A live publisher keeps
    /// publishing: the key is checked when a session starts.
    pub async fn rotate_key(
        &self,
        id: &ConferenceId,
        stream_key: Option<String>,
    ) -> Result<Arc<Conference>, RegistryError> {
        if let Some(k) = &stream_key
            && k.len() < MIN_STREAM_KEY_LEN
        {
            return Err(RegistryError::KeyTooShort);
        }
        let mut c = self.existing(id).await?;
        c.stream_key = stream_key.unwrap_or_else(new_stream_key);
        self.store(c).await
    }

    /// Ends a conference: WHIP is refused from now on and its live sessions end.
    pub async fn end(&self, id: &ConferenceId) -> Result<Arc<Conference>, RegistryError> {
        let mut c = self.existing(id).await?;
        if c.ended_ms.is_none() {
            c.ended_ms = Some(now_ms());
        }
        let c = self.store(c).await?;
        self.ended(id.as_str());
        Ok(c)
    }

    /// Opens an ended conference again.
    pub async fn reopen(&self, id: &ConferenceId) -> Result<Arc<Conference>, RegistryError> {
        let mut c = self.existing(id).await?;
        c.ended_ms = None;
        self.store(c).await
    }

    /// On an edge: records a conference as the parent relay describes it. Edges take no WHIP
    /// (the stream key stays empty), and a conference ended upstream ends here, with its
    /// sessions.
    pub async fn mirror(
        &self,
        id: ConferenceId,
        title: String,
        viewer_token: String,
        ended: bool,
    ) -> Result<(), RegistryError> {
        if let Some(c) = self.get(id.as_str())
            && c.title == title
            && c.viewer_token == viewer_token
            && c.ended_ms.is_some() == ended
        {
            return Ok(());
        }
        let mut c = match self.ledger.conference(&id).await? {
            Some(c) => c,
            None => Conference::new(id.clone(), title.clone(), String::new(), now_ms()),
        };
        let was_open = c.ended_ms.is_none();
        c.title = title;
        c.viewer_token = viewer_token;
        c.stream_key = String::new();
        c.ended_ms = match (ended, c.ended_ms) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(now_ms()),
            (false, _) => None,
        };
        self.store(c).await?;
        if was_open && ended {
            info!(conference = %id, "conference ended upstream");
            self.ended(id.as_str());
        }
        Ok(())
    }

    async fn existing(&self, id: &ConferenceId) -> Result<Conference, RegistryError> {
        self.ledger
            .conference(id)
            .await?
            .ok_or_else(|| RegistryError::NotFound(id.as_str().to_string()))
    }

    /// Durable first, then visible.
    async fn store(&self, c: Conference) -> Result<Arc<Conference>, RegistryError> {
        self.ledger.upsert_conference(c.clone()).await?;
        let c = Arc::new(c);
        self.write().insert(c.id.as_str().to_string(), c.clone());
        Ok(c)
    }

    fn ended(&self, id: &str) {
        if let Some(f) = self
            .on_end
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f(id);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Conference>>> {
        // A poisoned lock means a panic mid-insert of a plain map: still consistent.
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Conference>>> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new stream key: 128 bits from the thread's CSPRNG, as 32 hex digits.
pub fn new_stream_key() -> String {
    let bytes: [u8; KEY_BYTES] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Stream keys are secrets: only the ids.
        let ids: Vec<String> = self.all().iter().map(|c| c.id.to_string()).collect();
        f.debug_struct("Registry")
            .field("conferences", &ids)
            .finish()
    }
}

/// Re-reads the registry every [`REFRESH_INTERVAL`] until the process ends.
pub fn spawn_refresh(registry: Arc<Registry>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REFRESH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = registry.refresh().await {
                warn!("conference registry: cannot re-read the ledger: {e}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hallcast_ledger::{LedgerConfig, Secret, StoreConfig, new_event_id};

    use super::*;

    struct TempLedger {
        ledger: Ledger,
        dir: std::path::PathBuf,
    }

    impl Drop for TempLedger {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn temp_ledger() -> TempLedger {
        let dir = std::env::temp_dir().join(format!("hallcast-registry-{}", new_event_id()));
        let ledger = Ledger::open(LedgerConfig::new(
            StoreConfig::sqlite_in(&dir),
            Secret::from_bytes(b"0123456789abcdef0123".to_vec()).unwrap(),
        ))
        .await
        .unwrap();
        TempLedger { ledger, dir }
    }

    fn seed(key: &str) -> ConferenceConfig {
        ConferenceConfig {
            id: "hoi-nghi".into(),
            title: "Hội nghị".into(),
            stream_key: key.into(),
            viewer_token: String::new(),
        }
    }

    fn id() -> ConferenceId {
        ConferenceId::parse("hoi-nghi").unwrap()
    }

    #[tokio::test]
    async fn the_file_seeds_and_a_rotated_key_survives_an_unchanged_file() {
        let t = temp_ledger().await;
        let r = Registry::new(t.ledger.clone());
        r.seed(&[seed("key-from-file-1")]).await.unwrap();
        assert_eq!(r.get("hoi-nghi").unwrap().stream_key, "key-from-file-1");

        // Rotated through the API, then the relay restarts with the same file.
        let rotated = r.rotate_key(&id(), None).await.unwrap().stream_key.clone();
        assert_eq!(rotated.len(), 32);
        let r2 = Registry::new(t.ledger.clone());
        r2.seed(&[seed("key-from-file-1")]).await.unwrap();
        assert_eq!(r2.get("hoi-nghi").unwrap().stream_key, rotated);

        // The file's key changed: the file wins.
        let r3 = Registry::new(t.ledger.clone());
        r3.seed(&[seed("key-from-file-2")]).await.unwrap();
        assert_eq!(r3.get("hoi-nghi").unwrap().stream_key, "key-from-file-2");
    }

    #[tokio::test]
    async fn changes_are_durable_and_ending_calls_the_hook_once() {
        let t = temp_ledger().await;
        let r = Registry::new(t.ledger.clone());
        let n_ended = Arc::new(AtomicUsize::new(0));
        {
            let n = n_ended.clone();
            r.set_on_end(Box::new(move |c: &str| {
                assert_eq!(c, "hoi-nghi");
                n.fetch_add(1, Ordering::Relaxed);
            }));
        }
        let (c, created) = r.create_or_rename(id(), "A".into(), None).await.unwrap();
        assert!(created);
        let key = c.stream_key.clone();
        let (c, created) = r.create_or_rename(id(), "B".into(), None).await.unwrap();
        assert!(!created);
        assert_eq!(
            (c.title.as_str(), c.stream_key.as_str()),
            ("B", key.as_str())
        );
        assert!(matches!(
            r.rotate_key(&id(), Some("short".into())).await,
            Err(RegistryError::KeyTooShort)
        ));
        r.end(&id()).await.unwrap();
        assert_eq!(n_ended.load(Ordering::Relaxed), 1);

        // Another view of the same ledger (another process: the CLI, a restarted relay).
        let other = Registry::new(t.ledger.clone());
        other.refresh().await.unwrap();
        let seen = other.get("hoi-nghi").unwrap();
        assert_eq!(seen.title, "B");
        assert!(seen.ended_ms.is_some());

        // An end made elsewhere reaches this view's hook on its next refresh, once.
        r.reopen(&id()).await.unwrap();
        other.end(&id()).await.unwrap();
        r.refresh().await.unwrap();
        r.refresh().await.unwrap();
        assert_eq!(n_ended.load(Ordering::Relaxed), 2);
        assert!(matches!(
            r.end(&ConferenceId::parse("khong-co").unwrap()).await,
            Err(RegistryError::NotFound(_))
        ));
    }
}
