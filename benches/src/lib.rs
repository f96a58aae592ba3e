//! hallcast-benches: criterion benchmarks of the sans-IO core (`benches/`), and the
//! home of end-to-end bench runners. See docs/BENCHMARKS.md for results.
