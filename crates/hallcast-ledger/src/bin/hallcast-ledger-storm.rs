//! Test and benchmark helper (not shipped to operators): appends a storm of events to a
//! ledger from many concurrent tasks and prints the id of every event whose durable append
//! was acknowledged, one per line, as soon as it is acknowledged. The crash-safety test
//! `kill -9`s it mid-storm and checks that every printed id is stored exactly once.
//!
//! Usage: `hallcast-ledger-storm (--sqlite PATH | --pg URL [--schema NAME]) [--tasks N]
//! [--events N]`. Every 7th event is appended twice (the second time must be a duplicate).

use std::io::Write;

use hallcast_core::accounting::{
    ConferenceId, Event, EventKind, PointId, SessionChange, SessionId,
};
use hallcast_ledger::{Appended, Ledger, LedgerConfig, Secret, StoreConfig, new_event_id, now_ms};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let store = match (arg(&args, "--sqlite"), arg(&args, "--pg")) {
        (Some(path), None) => StoreConfig::Sqlite { path: path.into() },
        (None, Some(url)) => StoreConfig::Postgres {
            url,
            schema: arg(&args, "--schema"),
        },
        _ => return Err("give exactly one of --sqlite PATH or --pg URL".into()),
    };
    let n_tasks: usize = arg(&args, "--tasks").map_or(Ok(64), |s| s.parse())?;
    let n_events: usize = arg(&args, "--events").map_or(Ok(usize::MAX), |s| s.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ledger = Ledger::open(LedgerConfig::new(store, Secret::random())).await?;
        let conference = ConferenceId::parse("storm")?;
        let mut tasks = Vec::new();
        for t in 0..n_tasks {
            let ledger = ledger.clone();
            let conference = conference.clone();
            tasks.push(tokio::spawn(async move {
                let point = PointId::parse(&format!("p{t}"))?;
                let session = SessionId(t as u128);
                let mut i = 0usize;
                while i * n_tasks + t < n_events {
                    let ev = Event::session_event(
                        new_event_id(),
                        conference.clone(),
                        point.clone(),
                        session,
                        now_ms(),
                        SessionChange::MediaFlowing,
                    );
                    let id = ev.event_id;
                    let again = i.is_multiple_of(7).then(|| ev.clone());
                    ledger.append(ev).await?;
                    println!("{id}");
                    if let Some(ev) = again
                        && ledger.append(ev).await? != Appended::Duplicate
                    {
                        return Err("a repeated event was stored twice".into());
                    }
                    i += 1;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        // Also exercise a conference-level event so the log is not one kind only.
        ledger
            .append(Event {
                event_id: new_event_id(),
                conference,
                at_ms: now_ms(),
                kind: EventKind::BroadcastEnded,
            })
            .await?;
        ledger.close().await?;
        std::io::stdout().flush()?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
}
