"""pytest plugin: Datadog's system-tests parametric suite against this project's parametric app,
run as local processes instead of Docker containers.

Loaded by tests/conformance/run.sh as `-p conformance_plugin`, with the suite (read-only, never
copied, never written to) as pytest's rootdir. It:

- makes the suite importable on Python 3.11 (one f-string of utils/_context/_scenarios/core.py
  uses 3.12 syntax; it is compiled from the suite's file with that expression respelled, in
  memory);
- sets the suite's context (scenario PARAMETRIC, library "rust") without the suite's root
  conftest (not part of the extract) or Docker;
- replaces the Docker-only parts of `scenarios.parametric`: `get_agent_pool` and
  `get_test_agent_api` start `ddapm-test-agent` processes on free loopback ports (one per distinct
  agent_env, reset between tests with /test/session/clear as the suite's own pool does), and
  `get_apm_library` starts the parametric app (one process per distinct library_env, restarted
  after a failing test, flushed after any other) and hands the suite's own `ParametricTestClientApi` a stand-in for the
  Docker container (status, logs, restart; no exec);
- takes the expected outcomes from docs/CONFORMANCE.md (strict xfail for every case not marked
  `pass`), and with `--conformance-write-table` rewrites that table from the run.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import conformance_table as table  # noqa: E402

PROJECT = HERE.parent.parent
SUITE = Path(os.environ.get("SYSTEM_TESTS_DIR", PROJECT.parent / "shared" / "system-tests")).resolve()
# Each run keeps its agents' and apps' logs in a directory of its own (runs may overlap).
OUT = Path(os.environ.get("CONFORMANCE_OUT", PROJECT / "target" / "conformance")).resolve() / f"run-{os.getpid()}"
TABLE = Path(os.environ.get("CONFORMANCE_TABLE", PROJECT / "docs" / "CONFORMANCE.md")).resolve()
APP = Path(os.environ.get("PARAMETRIC_APP", PROJECT / "target" / "debug" / "parametric")).resolve()
AGENT = os.environ.get("DDAPM_TEST_AGENT", str(PROJECT / ".venv" / "bin" / "ddapm-test-agent"))
FRESH_APPS = os.environ.get("CONFORMANCE_FRESH_APPS") == "1"
APP_START_TIMEOUT = 30.0
AGENT_START_TIMEOUT = 30.0


# --- Python 3.11: the suite targets 3.12 ------------------------------------------------------


class _Py311Shim(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Compiles the suite's utils/_context/_scenarios/core.py with its one 3.12-only f-string
    expression (a backslash inside the braces of an error message) respelled for 3.11. The file
    on disk is untouched and nothing is cached."""

    MODULE = "utils._context._scenarios.core"
    OLD = "{'\\n* '.join(names)}"
    NEW = "{(chr(10) + '* ').join(names)}"

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201, ARG002
        if fullname != self.MODULE:
            return None
        origin = SUITE / "utils" / "_context" / "_scenarios" / "core.py"
        return importlib.util.spec_from_file_location(fullname, origin, loader=self)

    def create_module(self, spec):  # noqa: ANN001, ANN201, ARG002
        return None

    def exec_module(self, module):  # noqa: ANN001, ANN201
        source = Path(module.__file__).read_text(encoding="utf-8")
        if self.OLD not in source:
            raise ImportError(f"conformance_plugin: {module.__file__} changed; update _Py311Shim")
        code = compile(source.replace(self.OLD, self.NEW), module.__file__, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102


if sys.version_info < (3, 12):
    sys.meta_path.insert(0, _Py311Shim())
    # HTTPStatus.is_success and its kin are new in 3.12; the suite's client uses them.
    from http import HTTPStatus

    for _name, (_lo, _hi) in {"is_informational": (100, 199), "is_success": (200, 299),
                              "is_redirection": (300, 399), "is_client_error": (400, 499),
                              "is_server_error": (500, 599)}.items():
        if not hasattr(HTTPStatus, _name):
            setattr(HTTPStatus, _name, property(lambda self, lo=_lo, hi=_hi: lo <= self.value <= hi))
sys.dont_write_bytecode = True


# --- packages the suite's utils import for other scenarios only -------------------------------

# `import utils` imports every scenario of system-tests, and some of them import packages that the
# parametric scenario never uses (mitmproxy: the end-to-end scenarios' proxy, whose pinned release
# conflicts with the test agent's msgpack and protobuf). Those are stand-in modules whose every
# attribute is an inert placeholder class; a parametric test touching one would fail loudly.
STUBBED = ("mitmproxy", "kubernetes", "watchdog", "paramiko", "yamlinclude", "crossplane", "jsonschema",)


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str):  # noqa: ANN204
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (), {"__module__": cls.__module__})

    def __getitem__(cls, item):  # noqa: ANN001, ANN204
        return cls

    def __call__(cls, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        raise RuntimeError(f"conformance runner: {cls.__module__}.{cls.__name__} is a stand-in "
                           "(a package the parametric tests do not use)")


class _StubModule(type(sys)):
    def __getattr__(self, name: str):  # noqa: ANN204
        if name.startswith("__"):
            raise AttributeError(name)
        return _PlaceholderMeta(name, (), {"__module__": self.__name__})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201, ARG002
        if fullname.split(".")[0] in STUBBED:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # noqa: ANN001, ANN201
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):  # noqa: ANN001, ANN201
        pass


sys.meta_path.append(_StubFinder())


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LocalProcess:
    """Stands in for the suite's docker Container: `name`, `status`, `reload()`, `logs()`,
    `restart()`, `exec_run()` (refused: there is no container to run commands in)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, ready) -> None:  # noqa: ANN001
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.ready = ready
        self.proc: subprocess.Popen | None = None
        self.status = "created"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(self.log_path.parent), start_new_session=True,
            )
        self.status = "running"
        self.ready(self)

    def reload(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.status = "exited"

    def alive(self) -> bool:
        self.reload()
        return self.status == "running"

    def logs(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        self.status = "exited"

    def restart(self) -> None:
        self.stop()
        self.start()

    def exec_run(self, cmd, demux: bool = False):  # noqa: ANN001, ANN201, ARG002, FBT001, FBT002
        # The suite writes stable-configuration files into the app's container with this; a local
        # process shares the host's filesystem, so it is refused (exit code 1, nothing on stdout).
        message = b"conformance runner: no container to exec in (local process)"
        return (1, (None, message)) if demux else (1, message)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_app_listening(lp: LocalProcess) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT
    while time.monotonic() < deadline:
        for line in lp.logs().decode("utf-8", "replace").splitlines():
            if '"listening"' not in line:
                continue
            try:
                listening = json.loads(line).get("message") == "listening"
            except ValueError:
                continue
            if listening:
                _check_ping(lp)
                return
        if not lp.alive():
            pytest.fail(f"parametric app exited at start ({lp.argv[0]}); its log {lp.log_path}:\n{_tail(lp.log_path)}",
                        pytrace=False)
        time.sleep(0.02)
    lp.stop()
    pytest.fail(f"parametric app did not log {{\"message\":\"listening\"}} within {APP_START_TIMEOUT}s; "
                f"log {lp.log_path}:\n{_tail(lp.log_path)}", pytrace=False)


def _check_ping(lp: LocalProcess) -> None:
    """The suite's client waits (60 s per test) until the app answers 404 to an unknown path;
    an app answering anything else would make every test time out, so the run stops at once."""
    import requests

    port = lp.env["PORT"]
    url = f"http://127.0.0.1:{port}/non-existent-endpoint-to-ping-until-the-server-starts"
    try:
        status = requests.get(url, timeout=5).status_code
    except requests.RequestException as e:
        status = f"no answer ({e})"
    if status != 404:  # noqa: PLR2004
        lp.stop()
        pytest.exit(f"conformance: the parametric app answers {status} to GET {url.split(port, 1)[1]}; the suite's "
                    "client (TestClientApi._is_alive) takes only 404 as 'ready', so every test would time out. "
                    "The app must answer 404 to unknown paths.", returncode=3)


def _agent_ready(expected_version: str, port: int):  # noqa: ANN202
    import requests

    def wait(lp: LocalProcess) -> None:
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                info = requests.get(f"http://127.0.0.1:{port}/info", timeout=1).json()
            except Exception:  # noqa: BLE001
                if not lp.alive():
                    break
                time.sleep(0.05)
                continue
            if info.get("version") != expected_version:
                pytest.fail(f"test agent reports version {info.get('version')}, expected {expected_version}",
                            pytrace=False)
            return
        lp.stop()
        pytest.fail(f"ddapm-test-agent did not start; log {lp.log_path}:\n{_tail(lp.log_path)}", pytrace=False)

    return wait


# --- what replaces the Docker-only parts of scenarios.parametric --------------------------------

_agents_started = 0
_apps: dict[tuple, tuple[LocalProcess, int]] = {}
_apps_started = 0


def _clean_env() -> dict[str, str]:
    """The runner's environment without tracer settings (the suite gives the app its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "OTEL_", "_DD_"))}


@contextlib.contextmanager
def _start_agent(request: pytest.FixtureRequest, agent_env: dict[str, str], otlp_http_port: int | None = None,
                 otlp_grpc_port: int | None = None) -> Generator:
    from utils.docker_fixtures import TestAgentAPI

    global _agents_started  # noqa: PLW0603
    _agents_started += 1
    port, http_port, grpc_port = free_port(), free_port(), free_port()
    env = _clean_env() | {"ENABLED_CHECKS": "trace_count_header", "PORT": str(port),
                          "OTLP_HTTP_PORT": str(http_port), "OTLP_GRPC_PORT": str(grpc_port)}
    env |= {k: v for k, v in agent_env.items() if v is not None}
    # The agent's settings come from its environment; the ports are ours (free, on loopback).
    env |= {"PORT": str(port), "OTLP_HTTP_PORT": str(http_port), "OTLP_GRPC_PORT": str(grpc_port)}
    workdir = OUT / "agents" / f"agent-{_agents_started}"
    lp = LocalProcess(f"ddapm-test-agent-{_agents_started}",
                      [AGENT, "--host", "127.0.0.1", "--port", str(port), "--otlp-http-port", str(http_port),
                       "--otlp-grpc-port", str(grpc_port)],
                      env, workdir / "agent.log", _agent_ready(agent_env.get("TEST_AGENT_VERSION", "test"), port))
    lp.start()
    try:
        api = TestAgentAPI(
            container_name="127.0.0.1", container_port=port, host_log_folder=str(OUT / "logs"), host_port=port,
            otlp_http_host_port=http_port, pytest_request=request, network="",
        )
        api.host = "127.0.0.1"
        yield api
    finally:
        lp.stop()


def get_agent_pool(worker_id: str):  # noqa: ANN201, ARG001
    from utils.docker_fixtures._test_agent_pool import WorkerAgentPool

    global _agent_pool  # noqa: PLW0603
    if _agent_pool is None:
        _agent_pool = WorkerAgentPool(_start_agent)
    return _agent_pool


_agent_pool = None


@contextlib.contextmanager
def get_test_agent_api(worker_id: str, request: pytest.FixtureRequest, test_id: str, agent_env: dict[str, str],  # noqa: ARG001
                       container_otlp_http_port: int = 4318, container_otlp_grpc_port: int = 4317) -> Generator:
    from utils.docker_fixtures._test_agent import DEFAULT_OTLP_GRPC_PORT, DEFAULT_OTLP_HTTP_PORT

    snapshot = list(request.node.iter_markers(name="snapshot"))
    default_ports = (container_otlp_http_port, container_otlp_grpc_port) == (DEFAULT_OTLP_HTTP_PORT,
                                                                            DEFAULT_OTLP_GRPC_PORT)
    if not snapshot and default_ports:
        # A non-default agent_env: one pooled agent per distinct agent_env, reset between tests.
        yield get_agent_pool(worker_id).acquire(request=request, agent_env=agent_env)
        return
    with _start_agent(request, agent_env) as api:
        if snapshot:
            kwargs = dict(snapshot[0].kwargs)
            kwargs.setdefault("token", request.node.nodeid.replace(" ", "_").replace(os.path.sep, "_"))
            with api.snapshot_context(**kwargs):
                yield api
        else:
            yield api


def _flush_app(port: int) -> None:
    """Asks a kept app to send what it holds (`/trace/span/flush`); a failure is left to the
    next test to show."""
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/trace/span/flush", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=10).close()


def _stop_app(key: tuple) -> None:
    entry = _apps.pop(key, None)
    if entry is not None:
        entry[0].stop()


@contextlib.contextmanager
def get_apm_library(request: pytest.FixtureRequest, worker_id: str, test_id: str, test_agent, library_env: dict,  # noqa: ANN001, ARG001
                    library_extra_command_arguments: list[str]) -> Generator:
    from utils.docker_fixtures import ParametricTestClientApi

    global _apps_started  # noqa: PLW0603
    if not APP.is_file():
        pytest.exit(f"conformance: no parametric app at {APP}: build it (cargo build -p parametric, or "
                    f"bash tests/run.sh builds it) or set PARAMETRIC_APP", returncode=3)
    agent_url = f"http://127.0.0.1:{test_agent.host_port}"
    settings = {
        # What the suite's container gets (ParametricTestClientFactory.get_apm_library), on loopback.
        "DD_TRACE_DEBUG": "true",
        "DD_TRACE_AGENT_URL": agent_url,
        "DD_AGENT_HOST": "127.0.0.1",
        "DD_TRACE_AGENT_PORT": str(test_agent.host_port),
        "DD_TRACE_OTEL_ENABLED": "true",
    }
    for k, v in library_env.items():
        if v is not None:
            settings[k] = str(v)
        else:
            settings.pop(k, None)
    key = (tuple(sorted(settings.items())), tuple(library_extra_command_arguments))
    entry = None if FRESH_APPS else _apps.get(key)
    if entry is not None and not entry[0].alive():
        _stop_app(key)
        entry = None
    if entry is None:
        _apps_started += 1
        port = free_port()
        env = _clean_env() | settings | {"PORT": str(port), "APM_TEST_CLIENT_SERVER_PORT": str(port)}
        lp = LocalProcess(f"parametric-{_apps_started}", [str(APP), *library_extra_command_arguments], env,
                          OUT / "apps" / f"app-{_apps_started}" / "app.log", _wait_app_listening)
        (OUT / "apps" / f"app-{_apps_started}").mkdir(parents=True, exist_ok=True)
        (OUT / "apps" / f"app-{_apps_started}" / "settings.json").write_text(json.dumps(settings, indent=1))
        lp.start()
        entry = (lp, port)
        _apps[key] = entry
    lp, port = entry
    request.node.user_properties.append(("parametric_app_log", str(lp.log_path)))
    try:
        client = ParametricTestClientApi("rust", f"http://127.0.0.1:{port}", 60, lp)
        yield client
    finally:
        failed = getattr(request.node, "_conformance_failed", False)
        if FRESH_APPS or failed or not lp.alive():
            # A failed test may leave spans open or state behind: the next test gets a fresh app.
            _stop_app(key)
            if FRESH_APPS:
                lp.stop()
        else:
            # The app is kept for the next test: what this test ended without flushing (a test
            # that never enters `with test_library`) must reach this test's agent now, not the
            # next test's (whose agent session starts cleared), as a fresh container per test
            # guarantees in the suite's own runs.
            _flush_app(port)
        request.node.add_report_section("teardown", "parametric app", f"log: {lp.log_path}")


# --- pytest hooks ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption("--conformance-write-table", action="store_true",
                    help="run every case without expectations and rewrite docs/CONFORMANCE.md from the results")


def _on_sigterm(signum, frame):  # noqa: ANN001, ANN202, ARG001
    raise KeyboardInterrupt  # pytest then stops the agents and apps (pytest_sessionfinish)


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.setdefault("PYTEST_XDIST_WORKER", "master")
    for marker in ("scenario", "features", "owners", "declaration", "skip_if_xfail", "auxiliary_test"):
        config.addinivalue_line("markers", f"{marker}: system-tests marker")
    OUT.mkdir(parents=True, exist_ok=True)

    from utils import context, scenarios
    from utils._context.component_version import ComponentVersion

    scenario = scenarios.parametric
    context.scenario = scenario
    scenario.collect_only = config.option.collectonly
    scenario.is_main_worker = not hasattr(config, "workerinput")
    scenario._library = ComponentVersion("rust", os.environ.get("PARAMETRIC_APP_VERSION", "0.0.0"))  # noqa: SLF001
    scenario._set_components()  # noqa: SLF001
    # The suite persists per-test library_env to its log folder; keep it in memory.
    scenario._parametric_tests_confs = {}  # noqa: SLF001
    scenario.get_agent_pool = get_agent_pool
    scenario.get_test_agent_api = get_test_agent_api
    scenario.get_apm_library = get_apm_library

    config._conformance = {  # noqa: SLF001
        "write": config.getoption("--conformance-write-table"),
        "rows": table.read_rows(TABLE) if TABLE.exists() else {},
        "outcomes": {},
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config._conformance  # noqa: SLF001
    state["collected"] = [item.nodeid for item in items]
    if state["write"]:
        return
    for item in items:
        row = table.lookup(state["rows"], item.nodeid)
        if row is not None and row.status != "pass":
            item.add_marker(pytest.mark.xfail(reason=f"docs/CONFORMANCE.md: {row.status}", strict=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):  # noqa: ANN001, ANN201
    yield
    if call.excinfo is not None and call.when in ("setup", "call"):
        item._conformance_failed = True  # noqa: SLF001


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcomes = _state["outcomes"] if _state else None
    if outcomes is None:
        return
    nodeid = report.nodeid
    if report.when == "setup" and report.outcome != "passed":
        outcomes[nodeid] = _classify(report)
    elif report.when == "call":
        outcomes[nodeid] = _classify(report)
    elif report.when == "teardown" and report.outcome == "failed" and outcomes.get(nodeid) == "passed":
        outcomes[nodeid] = "failed"


def _classify(report: pytest.TestReport) -> str:
    if report.skipped and hasattr(report, "wasxfail"):
        return "xfailed"
    if report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
        return "xpassed"
    if report.skipped:
        return "skipped"
    return report.outcome  # passed / failed


_state: dict | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _state  # noqa: PLW0603
    _state = session.config._conformance  # noqa: SLF001


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001
    for key in list(_apps):
        _stop_app(key)
    if _agent_pool is not None:
        _agent_pool.__exit__(None, None, None)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001, ARG001
    state = config._conformance  # noqa: SLF001
    outcomes: dict[str, str] = state["outcomes"]
    manifest = table.Manifest(SUITE / "manifests" / "rust.yml")
    tr = terminalreporter
    if state["write"] and exitstatus not in (0, 1):
        tr.write_line(f"conformance: run interrupted or broken (exit status {exitstatus}): {TABLE} left as it was")
    elif state["write"]:
        rows = table.rows_from_run(outcomes, state["rows"], manifest)
        table.write_table(TABLE, rows, manifest)
        tr.write_line(f"conformance: wrote {TABLE} ({len(rows)} rows, {len(outcomes)} cases)")
        state["rows"] = table.read_rows(TABLE)
    tr.section("conformance (docs/CONFORMANCE.md)")
    lines, totals = table.run_summary(outcomes, state["rows"], manifest)
    for line in lines:
        tr.write_line(line)
    collected = state.get("collected", [])
    files = {n.split("::", 1)[0] for n in collected}
    stale = [r for r in state["rows"] if r.split("::", 1)[0] in files
             and not any(table.row_matches(r, n) for n in collected)]
    if stale and not config.option.keyword and not config.option.markexpr:
        tr.write_line(f"conformance: {len(stale)} rows of the table match no collected case (regenerate with --write-table): "
                      + ", ".join(stale[:5]))
    tr.write_line(f"conformance: {totals['passed']} passed, {totals['failed']} failed, "
                  f"{totals['expected']} expected failures (docs/CONFORMANCE.md)")
