#!/usr/bin/env python3
"""Validates hallcast's Kubernetes manifests (deploy/kubernetes/*.yaml) offline.

    validate_k8s.py MANIFEST_DIR OUT_DIR

- Every built-in kind is validated with kubernetes-validate (strict: unknown fields are errors)
  against the schemas it bundles, for each version in VERSIONS: nothing is fetched.
- monitoring.coreos.com/v1 ServiceMonitor is a CRD that kubernetes-validate does not know: it is
  validated with jsonschema against tests/py/servicemonitor.schema.json (the fields we use,
  strict). Any other unknown kind is an error.
- Cross-checks the schemas cannot make: each ConfigMap's `hallcast.toml` parses as TOML and is
  written to OUT_DIR/<manifest stem>.toml (the Rust test loads it with hallcast's config crate);
  the pod template's `checksum/config` annotation is the sha256 of the TOML its pod mounts; the
  pod runs `--config <mount>/hallcast.toml`; probes on /healthz and /readyz; non-root, read-only
  root file system, no capabilities, no privilege escalation; hostNetwork with the DNS policy it
  needs; one UDP containerPort per media thread from `media.udp`'s port; a grace period of at
  least 60 s and at least the config's `http.drain_seconds` + 15 s (the drain, then the last
  attendance events and the ledger's close); each Service selects a pod template and each ServiceMonitor a Service port.

Prints one JSON object on stdout: {"files": {NAME: [KIND, ...]}, "configs": [...], "errors": [...]}
and exits 1 when there is any error.
"""

import hashlib
import json
import pathlib
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

# The oldest Kubernetes minor still commonly run, and the newest the package bundles.
VERSIONS = ["1.30.0", "1.37.0"]
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
MIN_GRACE_SECONDS = 60
# hallcast's default `http.drain_seconds`, and what a relay needs after the drain to deliver its
# last attendance events and close its ledger.
DEFAULT_DRAIN_SECONDS = 30
DRAIN_MARGIN_SECONDS = 15
SCHEMA = pathlib.Path(__file__).with_name("servicemonitor.schema.json")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    monitor_schema = json.loads(SCHEMA.read_text())
    errors: list[str] = []
    files: dict[str, list[str]] = {}
    docs: list[tuple[str, dict]] = []

    manifests = sorted(src.glob("*.yaml"))
    if not manifests:
        errors.append(f"{src}: no *.yaml manifests")
    for path in manifests:
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            errors.append(f"{path.name}: not YAML: {e}")
            continue
        files[path.name] = []
        for doc in loaded:
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            name = f"{path.name}: {kind}/{(doc.get('metadata') or {}).get('name', '?') if isinstance(doc, dict) else '?'}"
            files[path.name].append(kind)
            docs.append((path.name, doc))
            if str(doc.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
                v = jsonschema.Draft202012Validator(monitor_schema)
                for e in sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                    where = "/".join(str(p) for p in e.absolute_path)
                    errors.append(f"{name}: {where}: {e.message} (servicemonitor.schema.json)")
                continue
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(f"{name}: no Kubernetes {version} schema for {doc.get('apiVersion')} {kind}")
                except kubernetes_validate.ValidationError as e:
                    where = "/".join(str(p) for p in e.absolute_path)
                    errors.append(f"{name}: Kubernetes {version}: {where}: {e.message}")

    try:
        configs = cross_check(docs, out, errors)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        # A manifest too broken for the cross-checks (the schema errors above say why).
        configs = []
        errors.append(f"cross-checks stopped at a malformed manifest: {type(e).__name__}: {e}")
    print(json.dumps({"files": files, "configs": configs, "errors": errors}, indent=1))
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def cross_check(docs: list[tuple[str, dict]], out: pathlib.Path, errors: list[str]) -> list[dict]:
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for f, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((f, d))
    namespaces = {d["metadata"]["name"] for _, d in by_kind.get("Namespace", [])}
    for f, d in docs:
        ns = d.get("metadata", {}).get("namespace")
        if d.get("kind") != "Namespace" and ns not in namespaces:
            errors.append(f"{f}: {d.get('kind')}/{d['metadata'].get('name')}: namespace {ns!r} is not one of the manifests' Namespaces {sorted(namespaces)}")

    tomls: dict[str, tuple[str, str, dict]] = {}  # ConfigMap name -> (file, text, parsed)
    for f, d in by_kind.get("ConfigMap", []):
        text = (d.get("data") or {}).get("hallcast.toml")
        if text is None:
            continue
        try:
            parsed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            errors.append(f"{f}: ConfigMap/{d['metadata']['name']}: hallcast.toml is not TOML: {e}")
            continue
        tomls[d["metadata"]["name"]] = (f, text, parsed)

    configs = []
    templates = []
    for f, d in [x for k in sorted(WORKLOADS) for x in by_kind.get(k, [])]:
        name = f"{f}: {d['kind']}/{d['metadata']['name']}"
        tpl = d["spec"]["template"]
        templates.append((f, d, tpl))
        pod = tpl["spec"]
        mounted = [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
        cms = [m for m in mounted if m in tomls]
        if len(cms) != 1:
            errors.append(f"{name}: mounts {len(cms)} ConfigMaps with a hallcast.toml (want 1): {mounted}")
            continue
        cm_file, text, parsed = tomls[cms[0]]
        out_path = out / (pathlib.Path(f).stem + ".toml")
        out_path.write_text(text)
        want = hashlib.sha256(text.encode()).hexdigest()
        got = (tpl.get("metadata", {}).get("annotations") or {}).get("checksum/config")
        if got != want:
            errors.append(f"{name}: checksum/config is {got!r}, the sha256 of ConfigMap/{cms[0]}'s hallcast.toml is {want} (run deploy/kubernetes/checksum.sh)")
        if pod.get("terminationGracePeriodSeconds", 30) < MIN_GRACE_SECONDS:
            errors.append(f"{name}: terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} < {MIN_GRACE_SECONDS}: viewers get no time to drain")
        drain = parsed.get("http", {}).get("drain_seconds", DEFAULT_DRAIN_SECONDS)
        if pod.get("terminationGracePeriodSeconds", 30) < drain + DRAIN_MARGIN_SECONDS:
            errors.append(f"{name}: terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} < http.drain_seconds {drain} + {DRAIN_MARGIN_SECONDS}: the pod is killed mid-drain")
        psc = pod.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
            errors.append(f"{name}: the pod must set runAsNonRoot: true and a non-zero runAsUser")
        if pod.get("hostNetwork") and pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
            errors.append(f"{name}: hostNetwork needs dnsPolicy: ClusterFirstWithHostNet to resolve cluster names")
        containers = pod["containers"]
        hallcast = [c for c in containers if c["name"] == "hallcast"]
        if len(hallcast) != 1:
            errors.append(f"{name}: no container named hallcast")
            continue
        c = hallcast[0]
        csc = c.get("securityContext") or {}
        if csc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{name}: readOnlyRootFilesystem must be true")
        if csc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{name}: capabilities.drop must hold ALL")
        probes = {
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        for probe, path in probes.items():
            got_path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if got_path != path:
                errors.append(f"{name}: {probe} must GET {path}, has {got_path!r}")
        mount = [m["mountPath"] for m in c.get("volumeMounts", [])
                 if any(v["name"] == m["name"] and v.get("configMap", {}).get("name") == cms[0]
                        for v in pod.get("volumes", []))]
        args = c.get("args", [])
        want_config = f"{mount[0] if mount else '?'}/hallcast.toml"
        if "--config" not in args or args[args.index("--config") + 1] != want_config:
            errors.append(f"{name}: args must hold --config {want_config}: {args}")
        data_dir = parsed.get("data", {}).get("dir")
        if parsed.get("data", {}).get("database_url", "") == "" and data_dir not in [m["mountPath"] for m in c.get("volumeMounts", [])]:
            errors.append(f"{name}: data.dir {data_dir!r} is not a mounted volume (the root file system is read-only)")
        media = parsed.get("media", {})
        udp_port = int(str(media.get("udp", "127.0.0.1:8443")).rsplit(":", 1)[1])
        threads = media.get("threads", 0)
        if threads < 1:
            errors.append(f"{name}: media.threads must be fixed (not 0, one per node core) so the UDP port range is known")
        udp_ports = sorted(p["containerPort"] for p in c.get("ports", []) if p.get("protocol") == "UDP")
        if udp_ports != list(range(udp_port, udp_port + max(threads, 1))):
            errors.append(f"{name}: UDP containerPorts {udp_ports} are not media.udp's port {udp_port} and one more per media thread ({threads})")
        http_port = int(str(parsed.get("http", {}).get("listen", "127.0.0.1:8080")).rsplit(":", 1)[1])
        named_http = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == "http"]
        if named_http != [http_port]:
            errors.append(f"{name}: containerPort named http is {named_http}, http.listen's port is {http_port}")
        secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                      if "secretKeyRef" in (e.get("valueFrom") or {})}
        configs.append({
            "file": f, "workload": f"{d['kind']}/{d['metadata']['name']}", "configmap": cms[0],
            "toml": str(out_path), "subcommand": args[0] if args else "", "args": args,
            "secret_env": secret_env,
        })

    services = by_kind.get("Service", [])
    for f, s in services:
        sel = s["spec"].get("selector") or {}
        if not any(sel.items() <= (tpl.get("metadata", {}).get("labels") or {}).items() for _, _, tpl in templates):
            errors.append(f"{f}: Service/{s['metadata']['name']}: its selector {sel} matches no pod template")
    for f, m in by_kind.get("ServiceMonitor", []):
        sel = ((m.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        matched = [s for _, s in services if sel.items() <= (s["metadata"].get("labels") or {}).items()
                   and s["metadata"].get("namespace") == m["metadata"].get("namespace")]
        if not matched:
            errors.append(f"{f}: ServiceMonitor/{m['metadata']['name']}: selects no Service")
        for ep in (m.get("spec") or {}).get("endpoints") or []:
            for s in matched:
                if ep.get("port") not in [p.get("name") for p in s["spec"]["ports"]]:
                    errors.append(f"{f}: ServiceMonitor/{m['metadata']['name']}: port {ep.get('port')!r} is not a port of Service/{s['metadata']['name']}")
            if ep.get("path") != "/metrics":
                errors.append(f"{f}: ServiceMonitor/{m['metadata']['name']}: path {ep.get('path')!r} is not /metrics")
    return configs


if __name__ == "__main__":
    sys.exit(main())
