//! `/healthz` (the process is alive and serves HTTP) and `/readyz` (the relay can do its
//! work: its media shards run, its attendance ledger answers, and on an edge its parent
//! answers). Orchestrators and load balancers read the status; people read the JSON body,
//! which says which check failed and why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::tree::DOWN_AFTER;

/// How long `/readyz` waits for the ledger before calling it unreachable.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Alive: the process runs and its HTTP server answers. Nothing else is checked, so a
/// restart is never triggered by a dependency's trouble.
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    /// Works, but not fully (the ledger's store is unreachable and events queue): shown,
    /// not failed. Omitted when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    degraded: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    /// This relay's role: `central` or `edge`.
    role: &'static str,
    checks: Vec<Check>,
}

/// Ready (200) when every check passes, else 503; the JSON body lists the checks:
/// - `media`: every media shard is running on its bound UDP socket and publishing fresh
///   snapshots (a wedged or stopped shard fails it); read from the published cells, never
///   from a media thread;
/// - `ledger`: the attendance ledger's writer takes a flush and its store answers a read,
///   within 2 s. While its store (the database) is unreachable the check stays `ok` with
///   `"degraded": true` and says since when and how many events wait: the relay still serves
///   every hall and the events are stored when the database is back (see
///   docs/postgresql.md), so an orchestrator must not take it out of service for that. Its
///   metrics (`hallcast_ledger_store_up`, `…_store_outage_seconds`, `…_events_pending`,
///   `…_events_dropped_total`) are what to alert on;
/// - `parent` (an edge only): its parent relay answered a report within the last 5 s (the
///   window after which the parent itself calls the edge down);
/// - `draining` (only while the relay drains after SIGTERM): always failed, so load balancers
///   and Kubernetes stop sending new clients.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut checks = Vec::with_capacity(3);
    let n_shards = state.engine.n_shards();
    checks.push(match state.engine.snapshot().await {
        Ok(snap) if snap.shards.len() < n_shards => Check {
            name: "media",
            ok: false,
            degraded: false,
            detail: format!(
                "{} of {n_shards} media shard(s) have published a snapshot (starting)",
                snap.shards.len()
            ),
        },
        Ok(snap) => Check {
            name: "media",
            ok: true,
            degraded: false,
            detail: format!(
                "{} media shard(s) running on {}",
                snap.shards.len(),
                snap.shards
                    .iter()
                    .map(|s| s.udp.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        Err(e) => Check {
            name: "media",
            ok: false,
            degraded: false,
            detail: format!("the media engine is not running: {e}"),
        },
    });
    let ledger = state.registry.ledger().clone();
    let stats = ledger.stats();
    let probe = async move {
        ledger.flush().await?;
        ledger.conferences().await.map(|c| c.len())
    };
    checks.push(if let Some(since_ms) = stats.outage_since_ms {
        // The writer is waiting for the store: a flush would wait with it.
        let secs = (hallcast_ledger::now_ms() - since_ms).max(0) / 1000;
        Check {
            name: "ledger",
            ok: true,
            degraded: true,
            detail: format!(
                "the attendance ledger's store is unreachable since {secs} s ago: \
                 {} event(s) wait in the queue, {} dropped so far (queue full); they are \
                 stored when the store is back",
                stats.n_pending, stats.n_dropped
            ),
        }
    } else {
        match tokio::time::timeout(LEDGER_TIMEOUT, probe).await {
            Ok(Ok(n)) => Check {
                name: "ledger",
                ok: true,
                degraded: false,
                detail: format!("the attendance ledger answers ({n} conference(s) registered)"),
            },
            Ok(Err(e)) => Check {
                name: "ledger",
                ok: false,
                degraded: false,
                detail: format!("the attendance ledger fails: {e}"),
            },
            Err(_) => Check {
                name: "ledger",
                ok: false,
                degraded: false,
                detail: format!(
                    "the attendance ledger did not answer within {} s",
                    LEDGER_TIMEOUT.as_secs()
                ),
            },
        }
    });
    let is_edge = !state.config.upstream.parent.is_empty();
    if is_edge {
        let now = Instant::now();
        let parent = state
            .tree
            .own()
            .and_then(|o| o.parent)
            .unwrap_or_else(|| state.config.upstream.parent.clone());
        let ok = state.tree.parent_answered_within(now, DOWN_AFTER);
        let detail = match state.tree.parent_answer_age(now) {
            Some(age) if ok => format!(
                "the parent relay {parent} answered {} ms ago",
                age.as_millis()
            ),
            Some(age) => format!(
                "the parent relay {parent} has not answered for {} s",
                age.as_secs()
            ),
            None => format!("the parent relay {parent} has not answered yet"),
        };
        checks.push(Check {
            name: "parent",
            ok,
            degraded: false,
            detail,
        });
    }
    if let Some(clock) = state.drain.clock() {
        let now = Instant::now();
        checks.push(Check {
            name: "draining",
            ok: false,
            degraded: false,
            detail: format!(
                "the relay is stopping (SIGTERM {} s ago): new sessions are refused and its viewers \
                 are moving elsewhere; it exits once they have gone, at most in {} s",
                now.saturating_duration_since(clock.started).as_secs(),
                clock.remaining(now).as_secs()
            ),
        });
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready,
        role: if is_edge { "edge" } else { "central" },
        checks,
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(state: Arc<AppState>, uri: &str) -> (StatusCode, String) {
        let app = crate::app(state, axum::Router::new());
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// `/readyz` until `want` (polled: a shard publishes its first snapshot within 500 ms of
    /// the start, and a stopped one is noticed within 2.5 s), at most 5 s.
    async fn readyz_until(state: &Arc<AppState>, want: StatusCode) -> String {
        let t0 = Instant::now();
        loop {
            let (status, body) = get(state.clone(), "/readyz").await;
            if status == want || t0.elapsed() > Duration::from_secs(5) {
                assert_eq!(status, want, "{body}");
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A central with a running engine and an open ledger is ready once its shards published
    /// a snapshot; once its engine stops it is not, and the body says the media check
    /// failed; then the ledger's; `/healthz` stays 200.
    #[tokio::test]
    async fn readyz_says_which_check_fails() {
        let (state, dir) = crate::test_state("hallcast-readyz").await;
        let body = readyz_until(&state, StatusCode::OK).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["checks"][0]["detail"]
                .as_str()
                .unwrap()
                .starts_with("1 media shard(s) running on 127.0.0.1:"),
            "{body}"
        );
        assert_eq!(v["ready"], true, "{body}");
        assert_eq!(v["role"], "central", "{body}");
        let names: Vec<&str> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["media", "ledger"], "{body}");

        state.engine.shutdown().await;
        let body = readyz_until(&state, StatusCode::SERVICE_UNAVAILABLE).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["checks"][0]["name"], "media");
        assert_eq!(v["checks"][0]["ok"], false, "{body}");
        assert_eq!(v["checks"][1]["ok"], true, "{body}");

        state.registry.ledger().close().await.unwrap();
        let (status, body) = get(state.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["checks"][1]["name"], "ledger");
        assert_eq!(v["checks"][1]["ok"], false, "a closed ledger: {body}");

        let (status, body) = get(state, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An edge is ready only while its parent answers its reports.
    #[tokio::test]
    async fn an_edge_is_ready_while_its_parent_answers() {
        let (state, dir) = crate::test_state("hallcast-readyz-edge").await;
        let mut config = (*state.config).clone();
        config.upstream.parent = "http://parent.invalid".into();
        let edge = AppState::new(
            Arc::new(config),
            state.engine.clone(),
            state.registry.clone(),
            Box::new(crate::SharedTokenOnly),
            state.tree.clone(),
        );
        // Media and ledger ready first, so that only the parent is missing.
        readyz_until(&state, StatusCode::OK).await;
        let (status, body) = get(edge.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["role"], "edge");
        assert_eq!(v["checks"][0]["ok"], true, "{body}");
        assert_eq!(v["checks"][2]["name"], "parent", "{body}");
        assert!(
            v["checks"][2]["detail"]
                .as_str()
                .unwrap()
                .contains("has not answered yet"),
            "{body}"
        );
        edge.tree.parent_answered(Instant::now());
        let (status, body) = get(edge.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        edge.tree
            .parent_answered(Instant::now() - DOWN_AFTER - Duration::from_millis(1));
        let (status, body) = get(edge, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("has not answered for 5 s"), "{body}");
        state.engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// While the ledger cannot write (here: another connection holds the SQLite file's write
    /// lock until its busy timeout runs out, as an unreachable database would), `/readyz`
    /// stays ready and says the ledger is degraded, since when and how many events wait, and
    /// `/metrics` shows it; once the store answers again both say so and the event is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readyz_and_metrics_show_a_ledger_store_outage() {
        let (state, dir) = crate::test_state("hallcast-readyz-outage").await;
        readyz_until(&state, StatusCode::OK).await;
        let ledger = state.registry.ledger().clone();
        let lock = rusqlite::Connection::open(dir.join("ledger.sqlite3")).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let ev = hallcast_core::accounting::Event {
            event_id: hallcast_ledger::new_event_id(),
            conference: hallcast_core::accounting::ConferenceId::parse("c1").unwrap(),
            at_ms: hallcast_ledger::now_ms(),
            kind: hallcast_core::accounting::EventKind::BroadcastStarted,
        };
        let id = ev.event_id;
        ledger.sink().emit(ev).unwrap();
        // The writer's attempt fails after SQLite's 10 s busy timeout.
        let t0 = Instant::now();
        while ledger.stats().outage_since_ms.is_none() {
            assert!(t0.elapsed() < Duration::from_secs(30), "no outage seen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = get(state.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let check = &v["checks"][1];
        assert_eq!(check["name"], "ledger", "{body}");
        assert_eq!(
            (&check["ok"], &check["degraded"]),
            (&true.into(), &true.into()),
            "{body}"
        );
        let detail = check["detail"].as_str().unwrap();
        assert!(detail.contains("store is unreachable since"), "{body}");
        assert!(
            detail.contains("1 event(s) wait in the queue, 0 dropped"),
            "{body}"
        );
        let mut metrics = String::new();
        crate::attendance::write_ledger_metrics(&ledger, &mut metrics);
        assert!(
            metrics.contains("\nhallcast_ledger_store_up 0\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nhallcast_ledger_events_pending 1\n"),
            "{metrics}"
        );

        lock.execute_batch("COMMIT").unwrap();
        drop(lock);
        tokio::time::timeout(Duration::from_secs(30), ledger.flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ledger.count_event_id(id).await.unwrap(), 1);
        let (status, body) = get(state.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(!body.contains("degraded"), "{body}");
        let mut metrics = String::new();
        crate::attendance::write_ledger_metrics(&ledger, &mut metrics);
        assert!(
            metrics.contains("\nhallcast_ledger_store_up 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nhallcast_ledger_store_outages_total 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nhallcast_ledger_events_stored_late_total 1\n"),
            "{metrics}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A draining relay is not ready (503, a failed `draining` check), whatever else holds.
    #[tokio::test]
    async fn a_draining_relay_is_not_ready() {
        let (state, dir) = crate::test_state("hallcast-readyz-drain").await;
        readyz_until(&state, StatusCode::OK).await;
        state.drain.start(Instant::now(), Duration::from_secs(30));
        let (status, body) = get(state.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["checks"][2]["name"], "draining", "{body}");
        assert_eq!(v["checks"][2]["ok"], false, "{body}");
        assert_eq!(v["checks"][0]["ok"], true, "{body}");
        assert!(
            v["checks"][2]["detail"]
                .as_str()
                .unwrap()
                .contains("new sessions are refused"),
            "{body}"
        );
        let (status, _) = get(state.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK, "alive while draining");
        state.engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
