mod cluster;
mod control;
mod estimator;

pub use cluster::{ProbeClusterConfig, ProbeClusterState, ProbeKind};
pub use control::{BandwidthLimitedCause, ProbeControl};
// hallcast: the session's probe media memo is made anew on the same interval.
pub(crate) use control::PROCESS_INTERVAL;
pub use estimator::ProbeEstimator;
