//! The bounded fuzz run on the stable toolchain: every target gets its committed corpus
//! (`fuzz/corpus/<target>/`) and `HALLCAST_FUZZ_RUNS` (default 20,000) deterministic
//! mutations of it, seeded by `HALLCAST_FUZZ_SEED` (default below). A panic anywhere is a
//! failure that names the target, the seed and the input (also written to a file, to add
//! to the corpus once fixed). Unbounded runs: cargo-fuzz on nightly, docs/fuzzing.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use hallcast_fuzz::mutate::{Rng, mutate};
use hallcast_fuzz::{TARGETS, token_key};

const DEFAULT_SEED: u64 = 0x6861_6c6c_6361_7374; // "hallcast"
const DEFAULT_RUNS: usize = 20_000;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    let mut inputs: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("a corpus file"))
        .collect();
    if target == "join_token" {
        // The genuine token is made here, not stored: it depends on the signing code.
        inputs.push(token_key().1.clone().into_bytes());
    }
    inputs
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `target` on the corpus and `runs` mutations; the first panicking input, if any.
fn run(
    name: &str,
    target: fn(&[u8]),
    inputs: &[Vec<u8>],
    seed: u64,
    runs: usize,
) -> Result<usize, (Vec<u8>, String)> {
    let attempt = |input: &[u8]| {
        catch_unwind(AssertUnwindSafe(|| target(input))).map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (input.to_vec(), format!("{name}: {msg}"))
        })
    };
    for input in inputs {
        attempt(input)?;
    }
    let mut rng = Rng::new(seed ^ name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ b as u64));
    for _ in 0..runs {
        let base = &inputs[rng.below(inputs.len())];
        let input = mutate(&mut rng, base, inputs);
        attempt(&input)?;
    }
    Ok(inputs.len() + runs)
}

#[test]
fn every_parser_survives_its_corpus_and_mutations() {
    let seed = env_or("HALLCAST_FUZZ_SEED", DEFAULT_SEED);
    let runs = env_or("HALLCAST_FUZZ_RUNS", DEFAULT_RUNS);
    // Panics are caught and reported below; the default hook would print each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        let inputs = corpus(name);
        assert!(
            inputs.len() >= 2,
            "the corpus of {name} has {} inputs: it needs valid and near-valid seeds",
            inputs.len()
        );
        // The admin API target goes through the router and a SQLite ledger (about a
        // millisecond an input, most of it the store's commit): a tenth of the runs.
        let runs = if name == "admin_api" { runs / 10 } else { runs };
        match run(name, target, &inputs, seed, runs) {
            Ok(n) => println!("{name}: {n} inputs, no failure (seed {seed:#x})"),
            Err((input, msg)) => {
                let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{name}"));
                let _ = std::fs::write(&file, &input);
                failures.push(format!(
                    "{msg}\n  seed {seed:#x}; input ({} bytes) saved to {}: {:?}",
                    input.len(),
                    file.display(),
                    String::from_utf8_lossy(&input[..input.len().min(200)])
                ));
            }
        }
    }
    std::panic::set_hook(hook);
    hallcast_fuzz::admin_api_done();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The runner itself can fail: a target with a planted bug (a panic on inputs of one
/// shape that mutations reach) is caught, with its input.
#[test]
fn a_planted_bug_is_found() {
    fn planted(data: &[u8]) {
        // A parser that indexes past a length field it trusts.
        if data.len() >= 2 && data[0] == 0xff {
            let n = usize::from(data[1]);
            let _ = data[2..2 + n].len();
        }
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let inputs = vec![vec![0x00, 0x04, 1, 2, 3, 4], vec![0x10, 0x00]];
    let found = run("planted", planted, &inputs, DEFAULT_SEED, DEFAULT_RUNS);
    std::panic::set_hook(hook);
    let (input, msg) = found.expect_err("the planted out-of-bounds read was not found");
    assert!(
        input[0] == 0xff && 2 + usize::from(input[1]) > input.len(),
        "{msg}: {input:?}"
    );
}

/// Every target has a corpus directory, and every corpus directory a target.
#[test]
fn corpora_and_targets_match() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .expect("fuzz/corpus")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    dirs.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names);
}
