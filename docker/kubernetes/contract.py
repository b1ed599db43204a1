"""The contract of the rendered Kubernetes objects with the rest of the repository.

Usage: contract.py ROOT OVERLAY=RENDERED.yaml...   (docker/kubernetes/verify.sh runs it)
       contract.py --self-test ROOT OVERLAY=RENDERED.yaml...

Checks, for every overlay, what the schemas cannot: that the objects fit the services as the
code, docker/ and BENCHMARKS.md have them (unified service tags and their env mapping, ports
that match PORT and the Dockerfiles, probes on routes the services serve, the Secret notes and
PostgreSQL share, where the traces go, non-root read-only containers, images that docker/
builds or compose/ names, memory limits above the measured peak). Prints one line per failed
check and exits 1 if any failed.

--self-test breaks the rendered objects in known ways, one at a time, and fails unless the
check catches every one of them (so the check is known to be able to fail).
"""

from __future__ import annotations

import base64
import copy
import pathlib
import re
import sys
from dataclasses import dataclass, field

import yaml

NAMESPACE = "apm-tutorial"
# The services built from this workspace, and the tutorial's NodePorts for them.
SERVICES = {"notes": 30080, "calendar": 30090}
VIEWER = "viewer"
UST = ("service", "env", "version")
UST_ENV = {"service": "DD_SERVICE", "env": "DD_ENV", "version": "DD_VERSION"}
# The services' span flush at shutdown is bounded by this (README: "Shutdown").
FLUSH_BOUND_S = 3


# ---- the repository's side of the contract ---------------------------------------------------


@dataclass
class Dockerfile:
    """What the runtime stage (after the last FROM) of docker/<name>.Dockerfile says."""

    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    expose: list[int] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)


def parse_dockerfile(path: pathlib.Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    out = Dockerfile()
    for line in lines[last_from + 1 :]:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word in ("ENV", "LABEL"):
            pairs = dict(re.findall(r'([A-Za-z0-9_.\-]+)=("[^"]*"|\S+)', rest))
            target = out.env if word == "ENV" else out.labels
            target.update({k: v.strip('"') for k, v in pairs.items()})
        elif word == "USER":
            out.user = rest.split(":")[0].strip()
        elif word == "EXPOSE":
            out.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "ENTRYPOINT":
            out.entrypoint = yaml.safe_load(rest) if rest.startswith("[") else rest.split()
    return out


class Repo:
    def __init__(self, root: pathlib.Path):
        self.root = root
        cargo = (root / "Cargo.toml").read_text()
        ws = re.search(r"^\[workspace\.package\](.*?)^\[", cargo, re.S | re.M)
        m = re.search(r'^version\s*=\s*"([^"]+)"', ws.group(1) if ws else cargo, re.M)
        if not m:
            raise SystemExit("contract: no workspace version in Cargo.toml")
        self.version = m.group(1)
        compose = yaml.safe_load((root / "compose/docker-compose.yaml").read_text())
        self.compose_images = {
            s["image"] for s in compose["services"].values() if "image" in s and "build" not in s
        }
        self.bench = (root / "BENCHMARKS.md").read_text()

    def dockerfile(self, name: str) -> Dockerfile | None:
        path = self.root / "docker" / f"{name}.Dockerfile"
        return parse_dockerfile(path) if path.is_file() else None

    def sources(self, crate: str) -> str:
        return "\n".join(p.read_text() for p in sorted((self.root / "crates" / crate / "src").rglob("*.rs")))

    def routes(self, crate: str) -> set[str]:
        src = self.sources(crate)
        return set(re.findall(r'(?:resource|route|web::resource|scope)\(\s*"(/[^"]*)"', src))

    def env_names(self, crate: str) -> set[str]:
        src = (
            self.sources("datadog-otel-tracing") + self.sources("common") + self.sources(crate)
        )
        return set(re.findall(r'"([A-Z][A-Z0-9_]+)"', src))

    def peak_rss_mb(self, service: str) -> float:
        """The largest peak RSS BENCHMARKS.md reports for the service (MB)."""
        # This project's copies only: the Datadog SDK's figures, in "(Datadog's SDK: …)", are not
        # what these images run.
        ours = re.sub(r"\(Datadog's SDK:[^)]*\)", "", self.bench)
        values = [float(v) for v in re.findall(rf"{service} (?:peaked at |peak RSS )?(\d+(?:\.\d+)?) MB", ours)]
        values += [float(v) for v in re.findall(rf"{service}[^.\n]*?peaked at (\d+(?:\.\d+)?) MB", self.bench)]
        if not values:
            raise SystemExit(f"contract: BENCHMARKS.md names no peak RSS for {service} ('{service} N MB')")
        return max(values)


# ---- the rendered side -----------------------------------------------------------------------


def quantity_mib(q: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|M|G|k)?", str(q))
    if not m:
        raise ValueError(f"unknown quantity {q!r}")
    n, unit = float(m.group(1)), m.group(2) or ""
    factor = {"": 1 / 2**20, "k": 1e3 / 2**20, "Ki": 1 / 1024, "M": 1e6 / 2**20, "Mi": 1, "G": 1e9 / 2**20, "Gi": 1024}[unit]
    return n * factor


class Check:
    def __init__(self, repo: Repo, overlay: str, docs: list[dict]):
        self.repo, self.overlay, self.docs = repo, overlay, docs
        self.failures: list[str] = []

    def fail(self, what: str) -> None:
        self.failures.append(f"{self.overlay}: {what}")

    def objects(self, kind: str) -> dict[str, dict]:
        return {d["metadata"]["name"]: d for d in self.docs if d.get("kind") == kind}

    def workloads(self) -> dict[str, dict]:
        return {**self.objects("Deployment"), **self.objects("StatefulSet")}

    def run(self) -> list[str]:
        if not self.docs:
            self.fail("renders no objects")
            return self.failures
        self.check_namespace()
        for name, wl in self.workloads().items():
            self.check_pod_security(name, wl)
            self.check_images(name, wl)
            self.check_resources(name, wl)
            self.check_selectors(name, wl)
        for name in SERVICES:
            self.check_service(name)
        self.check_database()
        self.check_agent()
        return self.failures

    # -- every object --
    def check_namespace(self) -> None:
        if NAMESPACE not in self.objects("Namespace"):
            self.fail(f"no Namespace {NAMESPACE}")
        for d in self.docs:
            if d["kind"] != "Namespace" and d["metadata"].get("namespace") != NAMESPACE:
                self.fail(f"{d['kind']} {d['metadata']['name']} is not in namespace {NAMESPACE}")

    def check_pod_security(self, name: str, wl: dict) -> None:
        spec = wl["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        if spec.get("enableServiceLinks") is not False:
            self.fail(f"{name}: enableServiceLinks must be false (Service links set CALENDAR_PORT=tcp://… and such)")
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = {**pod_sc, **c.get("securityContext", {})}
            where = f"{name}/{c['name']}"
            if sc.get("runAsNonRoot") is not True:
                self.fail(f"{where}: runAsNonRoot is not true")
            if not isinstance(sc.get("runAsUser"), int) or sc["runAsUser"] == 0:
                self.fail(f"{where}: runAsUser must be a non-zero uid")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.fail(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.fail(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                self.fail(f"{where}: capabilities do not drop ALL")

    def check_images(self, name: str, wl: dict) -> None:
        spec = wl["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        for c in spec["containers"]:
            image, where = c["image"], f"{name}/{c['name']}"
            if image.startswith("apm-tutorial-rust/"):
                repo_name, _, tag = image.partition("/")[2].partition(":")
                df = self.repo.dockerfile(repo_name)
                if df is None:
                    hint = " (built by branch `viewer`: merge it first)" if repo_name == VIEWER else ""
                    self.fail(f"{where}: image {image} but docker/{repo_name}.Dockerfile does not exist{hint}")
                    continue
                if tag != self.repo.version:
                    self.fail(f"{where}: image tag {tag!r} is not the workspace version {self.repo.version!r}")
                uid = {**pod_sc, **c.get("securityContext", {})}.get("runAsUser")
                if df.user is None or str(uid) != df.user:
                    self.fail(f"{where}: runAsUser {uid} is not the image's USER {df.user} (docker/{repo_name}.Dockerfile)")
                ports = [p["containerPort"] for p in c.get("ports", [])]
                if sorted(ports) != sorted(df.expose):
                    self.fail(f"{where}: container ports {ports} are not the image's EXPOSE {df.expose}")
                if repo_name == VIEWER:
                    self.check_viewer(where, c, df)
            elif image not in self.repo.compose_images:
                self.fail(
                    f"{where}: image {image} is neither built by docker/ (apm-tutorial-rust/…) nor one that "
                    f"compose/docker-compose.yaml runs ({', '.join(sorted(self.repo.compose_images))})"
                )

    def check_resources(self, name: str, wl: dict) -> None:
        for c in wl["spec"]["template"]["spec"]["containers"]:
            res, where = c.get("resources", {}), f"{name}/{c['name']}"
            for kind in ("requests", "limits"):
                if "memory" not in res.get(kind, {}):
                    self.fail(f"{where}: no memory {kind}")
            if "cpu" not in res.get("requests", {}):
                self.fail(f"{where}: no cpu request")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    self.fail(f"{where}: no {probe}")
            if name in SERVICES and "memory" in res.get("limits", {}):
                peak = self.repo.peak_rss_mb(name) * 1e6 / 2**20
                limit = quantity_mib(res["limits"]["memory"])
                if limit < 2 * peak:
                    self.fail(f"{where}: memory limit {limit:.0f} Mi is under twice the measured peak RSS ({peak:.1f} Mi, BENCHMARKS.md)")
                if quantity_mib(res["requests"]["memory"]) < peak:
                    self.fail(f"{where}: memory request is under the measured peak RSS ({peak:.1f} Mi)")

    def check_selectors(self, name: str, wl: dict) -> None:
        pod_labels = wl["spec"]["template"]["metadata"].get("labels", {})
        sel = wl["spec"]["selector"].get("matchLabels", {})
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            self.fail(f"{name}: selector {sel} does not match its pod labels")
        for svc_name, svc in self.objects("Service").items():
            sel = svc["spec"].get("selector", {})
            if sel and all(pod_labels.get(k) == v for k, v in sel.items()):
                ports = {p["name"]: p["containerPort"] for c in wl["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                for p in svc["spec"]["ports"]:
                    t = p.get("targetPort", p["port"])
                    if t not in ports and t not in ports.values():
                        self.fail(f"Service {svc_name}: targetPort {t} is no container port of {name}")
        for svc_name, svc in self.objects("Service").items():
            if svc["spec"].get("type") in ("NodePort", "LoadBalancer") and svc_name not in SERVICES:
                self.fail(f"Service {svc_name} is published outside the cluster ({svc['spec']['type']}); only notes and calendar are")
            sel = svc["spec"].get("selector", {})
            matches = [n for n, w in self.workloads().items() if all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            if len(matches) != 1:
                self.fail(f"Service {svc_name}: selector {sel} matches {len(matches)} workloads ({matches})")

    # -- notes and calendar --
    def container(self, wl: dict, name: str) -> dict | None:
        return next((c for c in wl["spec"]["template"]["spec"]["containers"] if c["name"] == name), None)

    def check_service(self, name: str) -> None:
        wl = self.objects("Deployment").get(name)
        svc = self.objects("Service").get(name)
        if wl is None or svc is None:
            self.fail(f"no Deployment and Service {name}")
            return
        c = self.container(wl, name)
        if c is None:
            self.fail(f"{name}: no container named {name}")
            return
        df = self.repo.dockerfile(name)
        env = {e["name"]: e for e in c.get("env", [])}
        value = {k: e.get("value") for k, e in env.items()}

        # unified service tagging: labels on the Deployment and its pods, env from the pod's labels
        labels_d = wl["metadata"].get("labels", {})
        labels_p = wl["spec"]["template"]["metadata"].get("labels", {})
        for tag in UST:
            key = f"tags.datadoghq.com/{tag}"
            if key not in labels_d or labels_d.get(key) != labels_p.get(key):
                self.fail(f"{name}: label {key} missing or different on the Deployment and its pods")
            e = env.get(UST_ENV[tag], {})
            ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if ref != f"metadata.labels['{key}']":
                self.fail(f"{name}: {UST_ENV[tag]} is not mapped from label {key} through fieldRef (got {e or 'nothing'})")
        if labels_p.get("tags.datadoghq.com/service") != name:
            self.fail(f"{name}: tags.datadoghq.com/service is {labels_p.get('tags.datadoghq.com/service')!r}, not {name!r}")
        if labels_p.get("tags.datadoghq.com/version") != self.repo.version:
            self.fail(f"{name}: tags.datadoghq.com/version is not the workspace version {self.repo.version}")
        if df and df.env.get("DD_SERVICE") != name:
            self.fail(f"{name}: docker/{name}.Dockerfile sets DD_SERVICE={df.env.get('DD_SERVICE')}")

        # every variable is one the service reads (a typo would be silently ignored)
        known = self.repo.env_names(name)
        for var in env:
            if var not in known:
                self.fail(f"{name}: sets {var}, which the service does not read")

        # the port: PORT = containerPort = EXPOSE = the Service's port; the tutorial's NodePort
        port = c.get("ports", [{}])[0]
        try:
            port_env = int(value.get("PORT") or "")
        except ValueError:
            self.fail(f"{name}: PORT is not set to a number")
            port_env = None
        if port_env != port.get("containerPort"):
            self.fail(f"{name}: PORT={value.get('PORT')} but containerPort {port.get('containerPort')}")
        if df and str(port_env) != df.env.get("PORT"):
            self.fail(f"{name}: PORT={port_env} but docker/{name}.Dockerfile has PORT={df.env.get('PORT')}")
        sp = svc["spec"]["ports"][0]
        if sp["port"] != port_env or sp.get("targetPort") not in (port.get("name"), port_env):
            self.fail(f"{name}: Service port {sp['port']} -> {sp.get('targetPort')} does not lead to PORT {port_env}")
        if svc["spec"].get("type") != "NodePort" or sp.get("nodePort") != SERVICES[name]:
            self.fail(f"{name}: not the tutorial's NodePort {SERVICES[name]}")

        # probes: on routes the service serves, on its port
        routes = self.repo.routes(name)
        for probe in ("readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if not p:
                self.fail(f"{name}: no {probe}")
                continue
            action = p.get("httpGet") or p.get("tcpSocket")
            if not action:
                self.fail(f"{name}: {probe} is neither httpGet nor tcpSocket")
                continue
            if action.get("port") not in (port.get("name"), port_env):
                self.fail(f"{name}: {probe} on port {action.get('port')}, not PORT {port_env}")
            if "httpGet" in p and p["httpGet"].get("path") not in routes:
                self.fail(f"{name}: {probe} on {p['httpGet'].get('path')}, which {name} does not serve ({sorted(routes)})")
        ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
        if ready != "/health":
            self.fail(f"{name}: readinessProbe is not GET /health")

        # graceful termination: preStop + SHUTDOWN_TIMEOUT_S + the flush bound fit the grace period
        try:
            shutdown = int(value.get("SHUTDOWN_TIMEOUT_S") or "5")
        except ValueError:
            shutdown = 10**6
        pre = c.get("lifecycle", {}).get("preStop", {})
        pre_s = int(pre.get("sleep", {}).get("seconds", 0))
        cmd = pre.get("exec", {}).get("command", [])
        if cmd[:1] == ["sleep"]:
            pre_s = int(cmd[1])
        grace = wl["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if grace < pre_s + shutdown + FLUSH_BOUND_S:
            self.fail(f"{name}: terminationGracePeriodSeconds {grace} < preStop {pre_s} + SHUTDOWN_TIMEOUT_S {shutdown} + flush {FLUSH_BOUND_S}")

        # log collection annotation names this container and this service
        ann = wl["spec"]["template"]["metadata"].get("annotations", {})
        logs = ann.get(f"ad.datadoghq.com/{name}.logs")
        if not logs or yaml.safe_load(logs)[0].get("service") != name:
            self.fail(f"{name}: no ad.datadoghq.com/{name}.logs annotation with service {name}")

    def secret_value(self, ref: dict) -> str | None:
        for sname, s in self.objects("Secret").items():
            if sname == ref.get("name"):
                raw = s.get("data", {}).get(ref.get("key"))
                if raw is not None:
                    return base64.b64decode(raw).decode()
                return s.get("stringData", {}).get(ref.get("key"))
        return None

    def check_database(self) -> None:
        notes = self.objects("Deployment").get("notes")
        pg = self.objects("StatefulSet").get("postgres")
        if not notes or not pg:
            self.fail("no notes Deployment and postgres StatefulSet")
            return
        n_env = {e["name"]: e for e in self.container(notes, "notes").get("env", [])}
        p_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        n_ref = n_env.get("DB_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef")
        p_ref = p_env.get("POSTGRES_PASSWORD", {}).get("valueFrom", {}).get("secretKeyRef")
        if not n_ref or "value" in n_env.get("DB_PASSWORD", {}):
            self.fail("notes: DB_PASSWORD does not come from a Secret")
        elif n_ref != p_ref:
            self.fail(f"notes reads the password from {n_ref}, PostgreSQL from {p_ref}")
        else:
            pw = self.secret_value(n_ref)
            if pw is None:
                self.fail(f"notes: the Secret {n_ref.get('name')} with key {n_ref.get('key')} is not rendered")
            elif not pw or pw != pw.strip():
                self.fail("the PostgreSQL password is empty or has surrounding whitespace (a file's newline?)")
        if "DATABASE_URL" in n_env:
            self.fail("notes: DATABASE_URL would override DB_* (and carry the password in the clear)")
        svc = self.objects("Service").get(n_env.get("DB_HOST", {}).get("value"))
        if not svc or svc["spec"]["selector"] != pg["spec"]["selector"]["matchLabels"]:
            self.fail(f"notes: DB_HOST={n_env.get('DB_HOST', {}).get('value')} is not the postgres Service")
        elif str(svc["spec"]["ports"][0]["port"]) != n_env.get("DB_PORT", {}).get("value"):
            self.fail("notes: DB_PORT is not the postgres Service's port")
        for ours, theirs in (("DB_NAME", "POSTGRES_DB"), ("DB_USER", "POSTGRES_USER")):
            if n_env.get(ours, {}).get("value") != p_env.get(theirs, {}).get("value"):
                self.fail(f"notes: {ours} is not PostgreSQL's {theirs}")
        cal = self.objects("Service").get(n_env.get("CALENDAR_HOST", {}).get("value"))
        if not cal or cal["spec"]["selector"].get("app.kubernetes.io/name") != "calendar":
            self.fail(f"notes: CALENDAR_HOST={n_env.get('CALENDAR_HOST', {}).get('value')} is not the calendar Service")
        elif str(cal["spec"]["ports"][0]["port"]) != n_env.get("CALENDAR_PORT", {}).get("value"):
            self.fail("notes: CALENDAR_PORT is not the calendar Service's port")

    # -- where the traces go, per overlay --
    def check_agent(self) -> None:
        values = None
        if self.overlay.startswith("datadog"):
            path = self.repo.root / "docker/kubernetes/datadog/datadog-values.yaml"
            values = yaml.safe_load(path.read_text())
            apm = values.get("datadog", {}).get("apm", {})
            ac = values.get("clusterAgent", {}).get("admissionController", {})
            if apm.get("portEnabled") is not True:
                self.fail("datadog-values.yaml: datadog.apm.portEnabled is not true (no hostPort 8126)")
            if ac.get("configMode") != "hostip":
                self.fail("datadog-values.yaml: admissionController.configMode is not hostip (the overlays are checked for the node's IP; socket mode would switch them to the socket)")
            if values.get("datadog", {}).get("logs", {}).get("enabled") is not True:
                self.fail("datadog-values.yaml: datadog.logs.enabled is not true")
            if "apiKey" in values.get("datadog", {}):
                self.fail("datadog-values.yaml: the API key belongs in a Secret (apiKeyExistingSecret)")
        for name in SERVICES:
            wl = self.objects("Deployment").get(name)
            c = self.container(wl, name) if wl else None
            if c is None:
                continue
            env = {e["name"]: e for e in c.get("env", [])}
            host = env.get("DD_AGENT_HOST", {})
            port = env.get("DD_TRACE_AGENT_PORT", {}).get("value")
            admission = wl["spec"]["template"]["metadata"].get("labels", {}).get("admission.datadoghq.com/enabled")
            if "DD_TRACE_AGENT_URL" in env:
                self.fail(f"{name}: DD_TRACE_AGENT_URL set: it overrides DD_AGENT_HOST")
            if self.overlay == "datadog":
                if host.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "status.hostIP":
                    self.fail(f"{name}: DD_AGENT_HOST is not the node's IP (status.hostIP)")
                if port != str(values.get("datadog", {}).get("apm", {}).get("port", 8126)):
                    self.fail(f"{name}: DD_TRACE_AGENT_PORT={port} is not the Agent's APM port")
                if admission != "false":
                    self.fail(f"{name}: not opted out of the admission controller (in socket mode it would switch them to the socket)")
            elif self.overlay == "datadog-admission":
                if host or port:
                    self.fail(f"{name}: sets the Agent's address itself; the admission controller would not inject it")
                if admission != "true":
                    self.fail(f"{name}: pods lack the label admission.datadoghq.com/enabled: \"true\"")
            elif self.overlay == "testagent":
                svc = self.objects("Service").get(host.get("value"))
                ta = self.objects("Deployment").get("testagent")
                if not svc or not ta or svc["spec"]["selector"] != ta["spec"]["selector"]["matchLabels"]:
                    self.fail(f"{name}: DD_AGENT_HOST={host.get('value')} is not the testagent Service")
                elif str(svc["spec"]["ports"][0]["port"]) != port:
                    self.fail(f"{name}: DD_TRACE_AGENT_PORT={port} is not the testagent Service's port")
            else:
                self.fail(f"unknown overlay {self.overlay!r}: add its expectations to contract.py")
        if self.overlay == "testagent":
            ta = self.objects("Deployment").get("testagent")
            if ta:
                c = ta["spec"]["template"]["spec"]["containers"][0]
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                if env.get("PORT") != str(c["ports"][0]["containerPort"]):
                    self.fail("testagent: PORT is not its containerPort")
            if VIEWER not in self.objects("Deployment"):
                self.fail("no trace viewer Deployment")

    def check_viewer(self, where: str, c: dict, df: Dockerfile) -> None:
        if not df.entrypoint or not df.entrypoint[-1].endswith("tracecat"):
            self.fail(f"{where}: the args start with `serve`, but the image's ENTRYPOINT is {df.entrypoint}, not tracecat")
        args = c.get("args", [])
        if args[:1] != ["serve"]:
            self.fail(f"{where}: args do not run `tracecat serve`")

        def arg(flag: str) -> str:
            return args[args.index(flag) + 1] if flag in args[:-1] else ""

        m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", arg("--agent"))
        svc = self.objects("Service").get(m.group(1)) if m else None
        if not svc or str(svc["spec"]["ports"][0]["port"]) != m.group(2):
            self.fail(f"{where}: --agent {arg('--agent')!r} is not the testagent Service")
        listen = arg("--listen")
        if not re.fullmatch(r"0\.0\.0\.0:\d+", listen) or int(listen.rsplit(":", 1)[1]) != c["ports"][0]["containerPort"]:
            self.fail(f"{where}: --listen {listen!r} is not 0.0.0.0:<containerPort>")
        routes = self.repo.routes("tracecat")
        for probe in ("readinessProbe", "livenessProbe"):
            p = c.get(probe, {})
            action = p.get("httpGet") or p.get("tcpSocket")
            if not action or action.get("port") not in ("http", c["ports"][0]["containerPort"]):
                self.fail(f"{where}: no {probe} on its port")
            elif "httpGet" in p and p["httpGet"].get("path") not in routes:
                self.fail(f"{where}: {probe} on {p['httpGet'].get('path')}, which tracecat serve does not serve ({sorted(routes)})")
        if "serve" not in self.repo.sources("tracecat") or '"--listen"' not in self.repo.sources("tracecat"):
            self.fail(f"{where}: crates/tracecat has no `serve` with --listen")


def load(root: pathlib.Path, args: list[str]) -> tuple[Repo, dict[str, list[dict]]]:
    repo = Repo(root)
    rendered = {}
    for a in args:
        overlay, _, path = a.partition("=")
        rendered[overlay] = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    return repo, rendered


def check_all(repo: Repo, rendered: dict[str, list[dict]]) -> list[str]:
    return [f for overlay, docs in rendered.items() for f in Check(repo, overlay, docs).run()]


# ---- the self-test: each of these breakages must be caught -----------------------------------


def _container(docs: list[dict], name: str) -> dict:
    wl = next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == name)
    return wl["spec"]["template"]["spec"]["containers"][0]


def _env(docs: list[dict], name: str, var: str) -> dict:
    return next(e for e in _container(docs, name)["env"] if e["name"] == var)


def _pod(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == name)["spec"]["template"]


BREAKAGES = {
    "notes PORT differs from its containerPort": lambda d: _env(d, "notes", "PORT").update(value="8081"),
    "DD_ENV as a literal, not from the label": lambda d: _env(d, "calendar", "DD_ENV").update(value="dev") or _env(d, "calendar", "DD_ENV").pop("valueFrom"),
    "a UST label missing on the pods": lambda d: _pod(d, "notes")["metadata"]["labels"].pop("tags.datadoghq.com/version"),
    "the password as a literal": lambda d: _env(d, "notes", "DB_PASSWORD").update(value="password") or _env(d, "notes", "DB_PASSWORD").pop("valueFrom"),
    "the password from another Secret": lambda d: _env(d, "notes", "DB_PASSWORD")["valueFrom"]["secretKeyRef"].update(name="other"),
    "readiness not on /health": lambda d: _container(d, "notes")["readinessProbe"]["httpGet"].update(path="/"),
    "a probe on a path calendar does not serve": lambda d: _container(d, "calendar")["livenessProbe"]["httpGet"].update(path="/healthz"),
    "a probe on another port": lambda d: _container(d, "calendar")["livenessProbe"]["httpGet"].update(port=9091),
    "running as root": lambda d: _pod(d, "calendar")["spec"]["securityContext"].update(runAsUser=0),
    "a writable root file system": lambda d: _container(d, "postgres")["securityContext"].update(readOnlyRootFilesystem=False),
    "an image docker/ does not build": lambda d: _container(d, "notes").update(image="apm-tutorial-rust/notez:0.1.0"),
    "an image tag other than the workspace version": lambda d: _container(d, "calendar").update(image="apm-tutorial-rust/calendar:latest"),
    "a third-party image compose does not use": lambda d: _container(d, "postgres").update(image="postgres:latest"),
    "a variable the service does not read": lambda d: _container(d, "notes")["env"].append({"name": "DB_PASWORD", "value": "x"}),
    "CALENDAR_HOST not the calendar Service": lambda d: _env(d, "notes", "CALENDAR_HOST").update(value="calendar-app"),
    "memory limit under twice the measured peak": lambda d: _container(d, "notes")["resources"]["limits"].update(memory="16Mi"),
    "grace period shorter than the shutdown": lambda d: _pod(d, "notes")["spec"].update(terminationGracePeriodSeconds=5),
    "PostgreSQL without a readiness probe": lambda d: _container(d, "postgres").pop("readinessProbe"),
    "Service links left on": lambda d: _pod(d, "notes")["spec"].pop("enableServiceLinks"),
    "the tutorial's NodePort changed": lambda d: next(x for x in d if x["kind"] == "Service" and x["metadata"]["name"] == "notes")["spec"]["ports"][0].update(nodePort=30081),
}
AGENT_BREAKAGES = {
    "datadog": ("DD_AGENT_HOST not the node's IP", lambda d: _env(d, "notes", "DD_AGENT_HOST").update(valueFrom={"fieldRef": {"fieldPath": "status.podIP"}})),
    "testagent": ("DD_AGENT_HOST not the testagent Service", lambda d: _env(d, "calendar", "DD_AGENT_HOST").update(value="localhost")),
}
TESTAGENT_BREAKAGES = {
    "the viewer published on the nodes": lambda d: next(x for x in d if x["kind"] == "Service" and x["metadata"]["name"] == VIEWER)["spec"].update(type="NodePort"),
    "the viewer pointed at another agent": lambda d: _container(d, VIEWER).update(args=["serve", "--agent", "http://localhost:8126", "--listen", "0.0.0.0:8127"]),
    "the viewer listening on loopback": lambda d: _container(d, VIEWER).update(args=["serve", "--agent", "http://testagent:8126", "--listen", "127.0.0.1:8127"]),
}


def self_test(repo: Repo, rendered: dict[str, list[dict]]) -> int:
    baseline = check_all(repo, rendered)
    missed = []
    for overlay, docs in rendered.items():
        cases = dict(BREAKAGES)
        if overlay in AGENT_BREAKAGES:
            cases[AGENT_BREAKAGES[overlay][0]] = AGENT_BREAKAGES[overlay][1]
        if overlay == "testagent":
            cases.update(TESTAGENT_BREAKAGES)
        for what, breakage in cases.items():
            broken = copy.deepcopy(docs)
            breakage(broken)
            new = set(Check(repo, overlay, broken).run()) - set(baseline)
            print(f"  {'caught' if new else 'MISSED'}: {overlay}: {what}" + (f" -> {sorted(new)[0]}" if new else ""))
            if not new:
                missed.append(f"{overlay}: {what}")
    if missed:
        print(f"contract self-test: {len(missed)} breakage(s) not caught", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    test = argv[:1] == ["--self-test"]
    if test:
        argv = argv[1:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    repo, rendered = load(pathlib.Path(argv[0]), argv[1:])
    if test:
        return self_test(repo, rendered)
    failures = check_all(repo, rendered)
    for f in failures:
        print(f"  FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
