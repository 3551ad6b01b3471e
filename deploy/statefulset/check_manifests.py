"""Checks what the bundled Kubernetes schemas do not: the ServiceMonitor CRD and the
Kustomization (required fields and types), and the references between the manifests.
Usage: check_manifests.py DIR. Exits 1 naming every problem found."""
import pathlib
import sys

import yaml

problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


def load(dirpath):
    docs = {}
    for path in sorted(dirpath.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.setdefault(doc.get("kind"), []).append((path.name, doc))
    return docs


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def main(dirpath):
    docs = load(dirpath)
    kust = [d for _, d in docs.get("Kustomization", [])]
    need(len(kust) == 1, "exactly one kustomization.yaml")
    listed = set(kust[0].get("resources", [])) if kust else set()
    files = {p.name for p in dirpath.glob("*.yaml")} - {"kustomization.yaml"}
    need(listed == files, f"kustomization resources {sorted(listed)} != manifest files {sorted(files)}")

    (sts_file, sts), = docs["StatefulSet"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    need(matches(sts["spec"]["selector"]["matchLabels"], labels), "StatefulSet selector matches its pods")
    need(sts["spec"].get("podManagementPolicy") == "Parallel", "podManagementPolicy: Parallel")
    services = {d["metadata"]["name"]: d for _, d in docs["Service"]}
    headless = services.get(sts["spec"]["serviceName"])
    need(headless is not None, "serviceName names a Service")
    if headless:
        need(headless["spec"].get("clusterIP") == "None", "peer Service is headless")
        need(headless["spec"].get("publishNotReadyAddresses") is True, "peer Service publishes not-ready addresses")
    for name, svc in services.items():
        need(matches(svc["spec"]["selector"], labels), f"Service {name} selects the pods")
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    port_numbers = set(ports.values())
    args = c.get("args", [])
    need("--statefulset" in args and args[args.index("--statefulset") + 1] == headless["metadata"]["name"],
         "--statefulset names the headless Service")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(probe)
        need(p is not None, f"{probe} present")
        if p:
            handler = p.get("grpc") or p.get("httpGet") or {}
            port = handler.get("port")
            need(port in ports or port in port_numbers, f"{probe} port {port!r} is a container port")
    need(c["securityContext"].get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    need(pod["spec"]["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
    need(not c.get("lifecycle", {}).get("preStop"), "no PreStop hook (a restart is not a membership change)")
    (_, pdb), = docs["PodDisruptionBudget"]
    need(matches(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selects the pods")

    for fname, sm in docs.get("ServiceMonitor", []):
        need(sm.get("apiVersion") == "monitoring.coreos.com/v1", f"{fname}: apiVersion monitoring.coreos.com/v1")
        spec = sm.get("spec", {})
        need(set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, f"{fname}: known spec fields")
        sel = spec.get("selector", {}).get("matchLabels", {})
        need(isinstance(sel, dict) and sel, f"{fname}: selector.matchLabels")
        targets = [s for s in services.values() if matches(sel, s["metadata"].get("labels", {}))]
        need(targets, f"{fname}: selector matches a Service")
        eps = spec.get("endpoints")
        need(isinstance(eps, list) and eps, f"{fname}: endpoints is a non-empty list")
        for ep in eps or []:
            need(set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, f"{fname}: known endpoint fields")
            need(any(ep.get("port") == p.get("name") for s in targets for p in s["spec"]["ports"]),
                 f"{fname}: endpoint port {ep.get('port')!r} is a named port of a selected Service")
            need(ep.get("port") in ports, f"{fname}: endpoint port {ep.get('port')!r} is a container port")

    if problems:
        for p in problems:
            print(f"check_manifests: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"check_manifests: {sum(len(v) for v in docs.values())} objects consistent "
          f"(ServiceMonitor and Kustomization checked structurally)")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
