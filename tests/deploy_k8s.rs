//! The Kubernetes manifests in deploy/kubernetes (issue 14, item 4), checked without a cluster.
//!
//! | test | what |
//! |---|---|
//! | `the_manifests_validate_offline_with_the_expected_kinds` | tests/py/validate_k8s.py, run with no network at all (`unshare --map-root-user --net`): every built-in kind passes kubernetes-validate's bundled schemas (1.30 and 1.37, strict), every ServiceMonitor our own schema; the cross-checks pass (checksum annotation, probes, security context, UDP ports per media thread); central.yaml and edge.yaml each hold a ConfigMap, a Service, a StatefulSet and a ServiceMonitor |
//! | `each_configmaps_toml_loads_as_its_pod_loads_it` | the TOML each ConfigMap embeds loads with hallcast's config crate (deny unknown keys and its semantic checks), with only the secrets the pod adds from its environment; the central is a central, the edge an edge; without its Secret the edge's config is refused; each announces deploy/turn's TURN server, which allows its media.public_ips as peers |
//! | `checksum_sh_notices_a_changed_config_and_follows_it` | on a copy: `checksum.sh --check` passes, fails naming the file after the TOML is edited (and so does the validator), and passes again (validator too) after `checksum.sh` rewrote the annotation |
//! | `a_broken_manifest_fails_validation` | on copies: a wrong type in a StatefulSet, an unknown field in a ServiceMonitor, an unknown kind and a probe on the wrong path each make the validator fail with a message naming them |

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};
use hallcast_config::Config;
use hallcast_tests::{Ctx, Weight, repo_root, run};
use serde_json::Value;

/// What the relay credential and admin token look like (hex, as the central generates them).
const DUMMY_SECRET: &str = "0123456789abcdef0123456789abcdef";

fn manifests() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

/// The venv's Python with kubernetes-validate, jsonschema and PyYAML.
fn python() -> Result<PathBuf> {
    let python = repo_root().join("tests/py/.venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", "import kubernetes_validate, jsonschema, yaml"])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot import kubernetes_validate/jsonschema/yaml: {}; run scripts/install-test-deps.sh",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(python)
}

/// Runs tests/py/validate_k8s.py on `dir` with no network (a fresh network namespace): the
/// schemas must come from the package, never from the internet.
fn validate(ctx: &Ctx, dir: &Path, tag: &str) -> Result<(Output, Value)> {
    let out_dir = ctx.path(&format!("tomls-{tag}"));
    let script = repo_root().join("tests/py/validate_k8s.py");
    // --map-root-user: a network namespace also without root (where user namespaces are allowed).
    let out = Command::new("unshare")
        .args(["--map-root-user", "--net"])
        .arg(python()?)
        .arg(&script)
        .arg(dir)
        .arg(&out_dir)
        .output()
        .context(
            "cannot run unshare --map-root-user --net (util-linux) with tests/py/validate_k8s.py",
        )?;
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "validate_k8s.py printed no JSON (status {}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out, report))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A copy of deploy/kubernetes in the test's scratch directory.
fn copy_manifests(ctx: &Ctx, tag: &str) -> Result<PathBuf> {
    let dir = ctx.path(&format!("manifests-{tag}"));
    fs::create_dir_all(&dir)?;
    for entry in fs::read_dir(manifests())? {
        let entry = entry?;
        fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    Ok(dir)
}

fn edit(path: &Path, from: &str, to: &str) -> Result<()> {
    let text = fs::read_to_string(path)?;
    ensure!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    fs::write(path, text.replacen(from, to, 1))?;
    Ok(())
}

#[test]
fn the_manifests_validate_offline_with_the_expected_kinds() {
    run(
        "the_manifests_validate_offline_with_the_expected_kinds",
        Weight::Light,
        |ctx| {
            let (out, report) = validate(ctx, &manifests(), "shipped")?;
            ensure!(
                out.status.success(),
                "deploy/kubernetes does not validate:\n{}",
                stderr(&out)
            );
            let kinds = |file: &str| -> BTreeSet<String> {
                report["files"][file]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let relay: BTreeSet<String> = ["ConfigMap", "Service", "StatefulSet", "ServiceMonitor"]
                .map(String::from)
                .into();
            for file in ["central.yaml", "edge.yaml"] {
                ensure!(
                    kinds(file) == relay,
                    "{file} holds {:?}, want {relay:?}",
                    kinds(file)
                );
            }
            ensure!(
                kinds("namespace.yaml") == BTreeSet::from(["Namespace".to_string()]),
                "namespace.yaml holds {:?}",
                kinds("namespace.yaml")
            );
            let configs = report["configs"].as_array().context("no configs")?;
            ensure!(
                configs.len() == 2,
                "want the central's and the edge's config: {configs:?}"
            );
            Ok(())
        },
    );
}

#[test]
fn each_configmaps_toml_loads_as_its_pod_loads_it() {
    run(
        "each_configmaps_toml_loads_as_its_pod_loads_it",
        Weight::Light,
        |ctx| {
            let (out, report) = validate(ctx, &manifests(), "shipped")?;
            ensure!(out.status.success(), "{}", stderr(&out));
            let turn = Config::load(Some(&repo_root().join("deploy/turn/ice-servers.toml")), &[])
                .map_err(|e| anyhow::anyhow!("deploy/turn/ice-servers.toml: {e}"))?;
            let allowed_peers: BTreeSet<String> =
                fs::read_to_string(repo_root().join("deploy/turn/turnserver.conf"))?
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("allowed-peer-ip="))
                    .map(str::to_string)
                    .collect();
            let mut roles = BTreeSet::new();
            for c in report["configs"].as_array().context("no configs")? {
                let toml = PathBuf::from(c["toml"].as_str().context("toml")?);
                let file = c["file"].as_str().unwrap_or("?");
                let subcommand = c["subcommand"].as_str().unwrap_or("?");
                let secret_env: BTreeSet<&str> = c["secret_env"]
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                // What the pod adds to the file: the secrets, from its environment.
                let overrides: Vec<String> = match subcommand {
                    "serve" => {
                        ensure!(
                            secret_env == BTreeSet::from(["HALLCAST_ADMIN_TOKEN"]),
                            "{file}: the central takes its admin token from a Secret: {secret_env:?}"
                        );
                        ensure!(
                            c["args"].as_array().is_some_and(|a| a
                                .iter()
                                .any(|x| x == "admin.token=\"$(HALLCAST_ADMIN_TOKEN)\"")),
                            "{file}: the central's args pass the admin token: {}",
                            c["args"]
                        );
                        vec![format!("admin.token=\"{DUMMY_SECRET}\"")]
                    }
                    "edge" => {
                        // `hallcast edge` reads HALLCAST_RELAY_CREDENTIAL (its --credential flag).
                        ensure!(
                            secret_env == BTreeSet::from(["HALLCAST_RELAY_CREDENTIAL"]),
                            "{file}: the edge takes its relay credential from a Secret: {secret_env:?}"
                        );
                        let bare = Config::load(Some(&toml), &[]);
                        ensure!(
                            bare.is_err(),
                            "{file}: the edge's TOML loads without the relay credential; it should need the Secret"
                        );
                        vec![format!("upstream.credential=\"{DUMMY_SECRET}\"")]
                    }
                    other => bail!("{file}: the pod runs `hallcast {other}`, want serve or edge"),
                };
                let config = Config::load(Some(&toml), &overrides)
                    .map_err(|e| anyhow::anyhow!("{file}'s hallcast.toml: {e}"))?;
                let role = if config.upstream.parent.is_empty() {
                    "central"
                } else {
                    "edge"
                };
                ensure!(
                    (subcommand == "serve") == (role == "central"),
                    "{file}: `hallcast {subcommand}` with a {role}'s config"
                );
                ensure!(
                    config.media.threads >= 1 && !config.media.public_ips.is_empty(),
                    "{file}: media.threads fixed and public_ips set: {:?}",
                    config.media
                );
                // The TURN server of deploy/turn, and the TURN server may reach this relay.
                ensure!(
                    config.ice_servers == turn.ice_servers,
                    "{file}: [[ice_servers]] {:?} differ from deploy/turn/ice-servers.toml's {:?}",
                    config.ice_servers,
                    turn.ice_servers
                );
                for ip in &config.media.public_ips {
                    ensure!(
                        allowed_peers.contains(&ip.to_string()),
                        "{file}: media.public_ips {ip} is not an allowed-peer-ip of deploy/turn/turnserver.conf \
                         (viewers on TURN could not reach this relay): {allowed_peers:?}"
                    );
                }
                roles.insert(role);
            }
            ensure!(
                roles == BTreeSet::from(["central", "edge"]),
                "roles {roles:?}"
            );
            Ok(())
        },
    );
}

#[test]
fn checksum_sh_notices_a_changed_config_and_follows_it() {
    run(
        "checksum_sh_notices_a_changed_config_and_follows_it",
        Weight::Light,
        |ctx| {
            let dir = copy_manifests(ctx, "checksum")?;
            let script = dir.join("checksum.sh");
            let check = || -> Result<Output> {
                Command::new("bash")
                    .arg(&script)
                    .arg("--check")
                    .output()
                    .context("bash checksum.sh")
            };
            let out = check()?;
            ensure!(
                out.status.success(),
                "the shipped annotations are stale: {}",
                stderr(&out)
            );

            edit(
                &dir.join("edge.yaml"),
                "    threads = 2\n",
                "    threads = 2\n    session_timeout_secs = 8\n",
            )?;
            let out = check()?;
            ensure!(
                out.status.code() == Some(1) && stderr(&out).contains("edge.yaml: checksum/config"),
                "checksum.sh --check after an edit: {:?} {}",
                out.status,
                stderr(&out)
            );
            ensure!(
                !stderr(&out).contains("central.yaml"),
                "only edge.yaml changed: {}",
                stderr(&out)
            );
            let (out, _) = validate(ctx, &dir, "stale")?;
            ensure!(
                !out.status.success() && stderr(&out).contains("checksum/config"),
                "the validator takes a stale annotation: {}",
                stderr(&out)
            );

            let out = Command::new("bash").arg(&script).output()?;
            ensure!(out.status.success(), "checksum.sh: {}", stderr(&out));
            let out = check()?;
            ensure!(
                out.status.success(),
                "still stale after checksum.sh: {}",
                stderr(&out)
            );
            // The script's awk reads the block as YAML does: the validator agrees byte for byte.
            let (out, _) = validate(ctx, &dir, "rewritten")?;
            ensure!(
                out.status.success(),
                "the validator disagrees with checksum.sh: {}",
                stderr(&out)
            );
            Ok(())
        },
    );
}

#[test]
fn a_broken_manifest_fails_validation() {
    run("a_broken_manifest_fails_validation", Weight::Light, |ctx| {
        let cases: [(&str, &str, &str, &str); 4] = [
            (
                "central.yaml",
                "  replicas: 1\n",
                "  replicas: one\n",
                "StatefulSet/hallcast-central: Kubernetes 1.30.0: spec/replicas",
            ),
            (
                "edge.yaml",
                "      path: /metrics\n",
                "      path: /metrics\n      scrapeTimout: 10s\n",
                "ServiceMonitor/hallcast-edge-hanoi: spec/endpoints/0",
            ),
            (
                "namespace.yaml",
                "    app.kubernetes.io/part-of: hallcast\n",
                "    app.kubernetes.io/part-of: hallcast\n---\napiVersion: example.org/v1\nkind: Gadget\nmetadata:\n  name: x\n  namespace: hallcast\n",
                "no Kubernetes 1.30.0 schema for example.org/v1 Gadget",
            ),
            (
                "edge.yaml",
                "              path: /readyz\n",
                "              path: /healthz\n",
                "readinessProbe must GET /readyz",
            ),
        ];
        for (i, (file, from, to, want)) in cases.into_iter().enumerate() {
            let dir = copy_manifests(ctx, &format!("broken-{i}"))?;
            edit(&dir.join(file), from, to)?;
            let (out, _) = validate(ctx, &dir, &format!("broken-{i}"))?;
            ensure!(
                !out.status.success() && stderr(&out).contains(want),
                "{file} with {to:?}: want a failure naming {want:?}, got {:?}:\n{}",
                out.status,
                stderr(&out)
            );
        }
        Ok(())
    });
}
