use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::*;

struct H {
    g: watch::Sender<bool>,
    bytes: Arc<AtomicU64>,
}
#[async_trait::async_trait]
impl PeerConnectionEventHandler for H {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            self.g.send_replace(true);
        }
    }
    async fn on_track(&self, t: Arc<dyn TrackRemote>) {
        let b = self.bytes.clone();
        tokio::spawn(async move {
            while let Some(e) = t.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = e {
                    b.fetch_add(p.payload.len() as u64 + 12, Ordering::Relaxed);
                }
            }
        });
    }
}
#[derive(Clone)]
struct S {
    bytes: Arc<AtomicU64>,
    pcs: Arc<std::sync::Mutex<Vec<Arc<dyn PeerConnection>>>>,
}
async fn whip(State(s): State<S>, offer: String) -> impl IntoResponse {
    let mut me = MediaEngine::default();
    me.register_default_codecs().unwrap();
    let reg = register_default_interceptors(Registry::new(), &mut me).unwrap();
    let (g, mut gr) = watch::channel(false);
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(me)
            .with_interceptor_registry(reg)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_handler(Arc::new(H {
                g,
                bytes: s.bytes.clone(),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .unwrap(),
    );
    pc.set_remote_description(RTCSessionDescription::offer(offer).unwrap())
        .await
        .unwrap();
    let a = pc.create_answer(None).await.unwrap();
    pc.set_local_description(a).await.unwrap();
    let _ = gr.wait_for(|x| *x).await;
    let sdp = pc.local_description().await.unwrap().sdp;
    s.pcs.lock().unwrap().push(pc);
    (StatusCode::CREATED, [("location", "/res/1")], sdp)
}
#[tokio::main]
async fn main() {
    let s = S {
        bytes: Arc::default(),
        pcs: Arc::default(),
    };
    let app = Router::new()
        .route("/whip", post(whip))
        .route("/res/1", delete(|| async { StatusCode::OK }))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let p = hallcast_client::publish(
        &format!("http://{addr}/whip"),
        "k",
        hallcast_client::SourceOptions::default(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b0 = s.bytes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let b1 = s.bytes.load(Ordering::Relaxed);
    println!(
        "{:?}\nreceived RTP (payload+12) {:.0} kbit/s over {secs}s",
        p.stats(),
        (b1 - b0) as f64 * 8.0 / secs as f64 / 1000.0
    );
    p.stop().await.unwrap();
}
