"""Peers: the other projects' programs Maple is tested and benchmarked against, built on this machine.

Every peer is built from its registry (the Go module proxy, or npm for the Node client) into
``<cache_dir>/peers/<name>-<version>/`` (``~/.cache/maple/peers`` by default). A ``build.json`` in that
directory records a hash of everything the build reads (the peer's recipe, its files, the Go or Node
version); `ensure` rebuilds only when that hash changes, so a second run on the same machine (CI's
cached run) costs a hash and a stat. Builds take a file lock, so parallel test processes build once.

The peers:

* ``otelcol`` — an OpenTelemetry Collector distribution made with the Collector's builder (ocb), with
  the components the compatibility tests and the side-by-side benchmarks use.
* ``telemetrygen`` — the Collector contrib load generator.
* ``chgo`` — the clickhouse-go v2 test program kept in ``tests/peers/chgo`` (go.mod and go.sum there).
* ``chnode`` — the Node test program in ``tests/peers/chnode`` using ``@clickhouse/client``, installed
  with ``npm ci`` from its committed package-lock.json.

``python -m apps.peers build [NAME ...]`` builds from the command line (``--list`` shows them); the
tests and ``maple bench`` call `ensure`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_SOURCE = REPO / "tests" / "peers"

# The Collector release the peers are built at. Core modules are versioned v0.x and the stable ones
# (confmap, pdata, ...) v1.x; contrib follows core. These resolve on the Go module proxy together
# (newer contrib releases lack packages the kafka and transform components need).
COLLECTOR_CORE = "v0.155.0"
COLLECTOR_STABLE = "v1.61.0"
COLLECTOR_CONTRIB = "v0.155.0"
TELEMETRYGEN = "v0.161.0"

_CORE = "go.opentelemetry.io/collector"
_CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
OTELCOL_COMPONENTS: dict[str, tuple[str, ...]] = {
    "receivers": (f"{_CORE}/receiver/otlpreceiver {COLLECTOR_CORE}",
                  f"{_CONTRIB}/receiver/kafkareceiver {COLLECTOR_CONTRIB}"),
    "exporters": (f"{_CONTRIB}/exporter/clickhouseexporter {COLLECTOR_CONTRIB}",
                  f"{_CONTRIB}/exporter/kafkaexporter {COLLECTOR_CONTRIB}",
                  f"{_CORE}/exporter/debugexporter {COLLECTOR_CORE}"),
    "processors": (f"{_CORE}/processor/batchprocessor {COLLECTOR_CORE}",
                   f"{_CORE}/processor/memorylimiterprocessor {COLLECTOR_CORE}",
                   f"{_CONTRIB}/processor/tailsamplingprocessor {COLLECTOR_CONTRIB}",
                   f"{_CONTRIB}/processor/transformprocessor {COLLECTOR_CONTRIB}"),
    "connectors": (f"{_CONTRIB}/connector/spanmetricsconnector {COLLECTOR_CONTRIB}",),
    "providers": (f"{_CORE}/confmap/provider/envprovider {COLLECTOR_STABLE}",
                  f"{_CORE}/confmap/provider/fileprovider {COLLECTOR_STABLE}",
                  f"{_CORE}/confmap/provider/yamlprovider {COLLECTOR_STABLE}"),
}


class PeerBuildError(RuntimeError):
    """A peer could not be built; the message says which step failed and what to do."""


def _say(message: str) -> None:
    print(f"maple peers: {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """``<cache_dir>/peers``; MAPLE_CACHE_DIR moves it as it moves the Kafka jars."""
    base = os.environ.get("MAPLE_CACHE_DIR") or "~/.cache/maple"
    return Path(base).expanduser() / "peers"


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerBuildError(f"`{name}` is not on PATH; {hint}")
    return path


def _tool_version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerBuildError(f"`{' '.join(argv)}` failed: {exc}") from exc


def go_env() -> dict[str, str]:
    """The environment Go builds run in: module and build caches under the peers cache, the module proxy."""
    root = cache_root().parent / "go"
    env = dict(os.environ)
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    env["GOMODCACHE"] = str(root / "mod")
    env["GOCACHE"] = str(root / "build")
    env["GOPATH"] = str(root / "path")
    # Module cache files are read-only by default, which makes the cache hard to clear; -modcacherw does not.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -modcacherw -buildvcs=false").strip()
    env["CGO_ENABLED"] = "0"
    return env


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], step: str, log: Path) -> None:
    """Run one build step, streaming its output into `log`; a failure quotes the log's tail."""
    _say(f"{step}: {' '.join(argv)}")
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}  (in {cwd})\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        last = started
        while proc.poll() is None:
            time.sleep(1)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                _say(f"{step}: still running ({last - started:.0f} s; log {log})")
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise PeerBuildError(f"{step} failed (exit {proc.returncode}); the last lines of {log}:\n" + "\n".join(tail))
    _say(f"{step}: done in {time.monotonic() - started:.0f} s")


@dataclass(frozen=True)
class Peer:
    """One buildable peer: what it depends on (hashed) and how to build it into a directory."""

    name: str
    version: str
    toolchain: Callable[[], str]            # the compiler/runtime version; part of the hash
    recipe: str                             # everything the build reads besides files, as text
    files: Callable[[], list[Path]]         # source files the build reads; part of the hash
    build: Callable[[Path, Path], Path]     # (directory, log) -> the built program
    doc: str = ""
    requires: tuple[str, ...] = field(default=())

    @property
    def directory(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}"

    def inputs_hash(self) -> str:
        digest = hashlib.sha256()
        for part in (self.name, self.version, self.toolchain(), self.recipe):
            digest.update(part.encode() + b"\0")
        for path in sorted(self.files()):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def built(self) -> Path | None:
        """The program if it is built from the current inputs, else None."""
        try:
            stamp = json.loads((self.directory / "build.json").read_text())
        except (OSError, ValueError):
            return None
        program = self.directory / str(stamp.get("program", ""))
        if stamp.get("inputs") == self.inputs_hash() and program.is_file():
            return program
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(name: str) -> Path:
    """The peer's program, built first if it is missing or its inputs changed."""
    peer = PEERS.get(name)
    if peer is None:
        raise PeerBuildError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    program = peer.built()
    if program is not None:
        return program
    with _locked(cache_root() / f".{peer.name}.lock"):
        program = peer.built()  # another process may have built it while we waited
        if program is not None:
            return program
        inputs = peer.inputs_hash()
        if peer.directory.exists():
            _say(f"{peer.name} {peer.version}: inputs changed, rebuilding")
            shutil.rmtree(peer.directory)
        work = Path(tempfile.mkdtemp(prefix=f".{peer.name}-", dir=cache_root()))
        log = work / "build.log"
        _say(f"building {peer.name} {peer.version} (log {log}); this happens once per machine")
        started = time.monotonic()
        try:
            program = peer.build(work, log)
            (work / "build.json").write_text(json.dumps({
                "inputs": inputs, "program": str(program.relative_to(work)), "name": peer.name,
                "version": peer.version, "toolchain": peer.toolchain(),
                "seconds": round(time.monotonic() - started, 1)}, indent=1))
            work.rename(peer.directory)
        except BaseException as exc:
            # Keep the log where the message says it is; the half-built directory goes.
            kept = cache_root() / f"{peer.name}-{peer.version}.failed.log"
            if log.exists():
                shutil.copy2(log, kept)
            shutil.rmtree(work, ignore_errors=True)
            if isinstance(exc, PeerBuildError):
                raise PeerBuildError(str(exc).replace(str(log), str(kept))) from None
            raise
        _say(f"{peer.name} {peer.version} built in {time.monotonic() - started:.0f} s: {peer.directory}")
    result = peer.built()
    assert result is not None
    return result


# -- Go peers ----------------------------------------------------------------------------------------


def _go() -> str:
    return _tool("go", "install Go (https://go.dev/dl) to build the Go peers from the Go module proxy")


def _go_version() -> str:
    return _tool_version([_go(), "env", "GOVERSION"])


def _ocb_manifest(output: Path) -> str:
    lines = ["dist:", "  name: otelcol-maple", "  module: maple.local/otelcol-maple",
             "  description: OpenTelemetry Collector for Maple's compatibility tests and benchmarks",
             f"  version: {COLLECTOR_CORE.lstrip('v')}", f"  output_path: {output}"]
    for kind, modules in OTELCOL_COMPONENTS.items():
        lines.append(f"{kind}:")
        lines.extend(f"  - gomod: {module}" for module in modules)
    return "\n".join(lines) + "\n"


def _otelcol_go_mod() -> str:
    """The distribution's go.mod: every component, plus the core modules its generated main imports, at
    the one release (left out, `go mod tidy` would take their newest versions, which do not fit)."""
    modules = [m for group in OTELCOL_COMPONENTS.values() for m in group]
    modules += [f"{_CORE}/otelcol {COLLECTOR_CORE}", f"{_CORE}/service {COLLECTOR_CORE}"]
    requires = "\n".join(f"\t{m}" for m in modules)
    return f"module maple.local/otelcol-maple\n\ngo 1.25.0\n\nrequire (\n{requires}\n)\n"


def _build_otelcol(work: Path, log: Path) -> Path:
    go, env = _go(), go_env()
    tools = work / "tools"
    env_tools = {**env, "GOBIN": str(tools)}
    _run([go, "install", f"{_CORE}/cmd/builder@{COLLECTOR_CORE}"], cwd=work, env=env_tools,
         step="otelcol: install the Collector builder (ocb)", log=log)
    manifest = work / "builder-config.yaml"
    manifest.write_text(_ocb_manifest(work / "src"))
    _run([str(tools / "builder"), f"--config={manifest}", "--skip-get-modules", "--skip-compilation"], cwd=work,
         env=env, step="otelcol: generate the distribution's sources", log=log)
    # ocb generates the sources; the modules are resolved here instead, because ocb's own `go mod tidy`
    # also resolves the components' test-only modules and one of those (contrib's pkg/golden at this
    # release) is not served by the module proxy. -e lets tidy finish without it: the binary does not
    # import it.
    (work / "src" / "go.mod").write_text(_otelcol_go_mod())
    _run([go, "mod", "tidy", "-e"], cwd=work / "src", env=env, step="otelcol: resolve modules (go mod tidy)", log=log)
    _run([go, "build", "-trimpath", "-ldflags=-s -w", "-o", "otelcol-maple", "."], cwd=work / "src", env=env,
         step="otelcol: compile (several minutes on 2 cores)", log=log)
    program = work / "src" / "otelcol-maple"
    if not program.is_file():
        raise PeerBuildError(f"the Collector builder finished but {program} is missing; see {log}")
    target = work / "otelcol-maple"
    program.rename(target)
    shutil.rmtree(work / "src", ignore_errors=True)  # generated sources; the module cache keeps the rest
    shutil.rmtree(tools, ignore_errors=True)
    return target


def _build_telemetrygen(work: Path, log: Path) -> Path:
    env = {**go_env(), "GOBIN": str(work)}
    _run([_go(), "install", f"{_CONTRIB}/cmd/telemetrygen@{TELEMETRYGEN}"], cwd=work, env=env,
         step="telemetrygen: go install", log=log)
    return work / "telemetrygen"


def _source_files(directory: Path, patterns: tuple[str, ...]) -> Callable[[], list[Path]]:
    def files() -> list[Path]:
        return sorted(p for pattern in patterns for p in directory.glob(pattern) if p.is_file())
    return files


def _build_chgo(work: Path, log: Path) -> Path:
    source = PEERS_SOURCE / "chgo"
    program = work / "chgo"
    # -mod=readonly: the committed go.sum is the truth; a missing sum is an error, not a silent update.
    _run([_go(), "build", "-mod=readonly", "-o", str(program), "."], cwd=source, env=go_env(),
         step="chgo: go build", log=log)
    return program


# -- Node peers --------------------------------------------------------------------------------------


def _node_version() -> str:
    node = _tool("node", "install Node.js 20 or newer to run the Node peers")
    npm = _tool("npm", "install npm (it comes with Node.js) to install the Node peers")
    return _tool_version([node, "--version"]) + " npm " + _tool_version([npm, "--version"])


def _build_chnode(work: Path, log: Path) -> Path:
    source = PEERS_SOURCE / "chnode"
    for name in ("package.json", "package-lock.json", "main.mjs"):
        shutil.copy2(source / name, work / name)
    npm = _tool("npm", "install npm (it comes with Node.js) to install the Node peers")
    env = {**os.environ, "npm_config_cache": str(cache_root().parent / "npm"), "npm_config_fund": "false",
           "npm_config_audit": "false", "npm_config_update_notifier": "false"}
    _run([npm, "ci", "--omit=dev", "--no-progress"], cwd=work, env=env, step="chnode: npm ci", log=log)
    return work / "main.mjs"


PEERS: dict[str, Peer] = {
    "otelcol": Peer("otelcol", COLLECTOR_CORE, _go_version,
                    _ocb_manifest(Path("OUTPUT")) + _otelcol_go_mod(), lambda: [],
                    _build_otelcol, "OpenTelemetry Collector (ocb): otlp+kafka receivers; clickhouse, kafka, debug "
                    "exporters; batch, memory_limiter, tail_sampling, transform; spanmetrics"),
    "telemetrygen": Peer("telemetrygen", TELEMETRYGEN, _go_version, f"{_CONTRIB}/cmd/telemetrygen@{TELEMETRYGEN}",
                         lambda: [], _build_telemetrygen, "the Collector contrib load generator"),
    "chgo": Peer("chgo", "v2", _go_version, "go build -mod=readonly",
                 _source_files(PEERS_SOURCE / "chgo", ("go.mod", "go.sum", "*.go")), _build_chgo,
                 "clickhouse-go v2 test program (tests/peers/chgo)"),
    "chnode": Peer("chnode", "1", _node_version, "npm ci --omit=dev",
                   _source_files(PEERS_SOURCE / "chnode", ("package.json", "package-lock.json", "main.mjs")),
                   _build_chnode, "@clickhouse/client test program (tests/peers/chnode)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.peers",
        description="Build the peer programs Maple's compatibility tests and benchmarks run, into "
                    f"{cache_root()}/<name>-<version>/ (rebuilt only when their inputs change).")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build peers (all when none is named) and print their paths")
    build.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(PEERS)}")
    sub.add_parser("list", help="list the peers, their versions and whether they are built")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for peer in PEERS.values():
                program = peer.built()
                print(f"{peer.name:<13} {peer.version:<9} {program or 'not built'}  {peer.doc}")
            return 0
        for name in args.names or list(PEERS):
            print(ensure(name))
    except PeerBuildError as exc:
        print(f"maple peers: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
