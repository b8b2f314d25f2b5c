# SPDX-License-Identifier: MIT
"""Issue 11, "Guards instead of numbers in comments": the modules the service does NOT load.

Under Accept=yes and inetd ``nowait`` every connection starts an interpreter: keeping these
modules out of that path is what its import discipline buys, and what a figure in a comment
could only describe for one Python.  The long-running process (Accept=no, the standalone
fork parent) pays an import once: since issue 22 it uses the standard library's public
modules (socket, signal, collections, ctypes) like any program, and is held only to
LOOP_FORBIDDEN: modules nothing in it has any use for, and typing, whose memory every fork
copies (its names are for mypy only there).  The service runs as a real process with
PYTHONPROFILEIMPORTTIME=1, so the interpreter itself lists every module it loads on stderr,
nested under the module that imported it; nothing here depends on how daytime_sd/ is split
into modules.  It runs through the launcher the .deb ships (``#!/usr/bin/python3 -S``) and
as ``python3 -S -m daytime_sd``, against the package under test: the source tree, or the
package's private /usr/share/daytime-sd when the autopkgtest runs these tests under each
release's python3 (support.PACKAGE_DIR).  The launcher runs must not load ``site`` at all:
that is what its ``-S`` is for, and the shebang a release's dh-python writes could lose it
(debian/rules).

What the interpreter loads starting a do-nothing program the same way is not ours and is left
out (``-m`` brings runpy, which loads functools and collections first: a later import of those
by daytime_sd is then invisible there, and the launcher runs are the ones that catch it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import daytime_sd

from .support import (
    ACTIVATE,
    LINE,
    PYTHON,
    REPO,
    Notifications,
    base_env,
    free_port,
    query,
    wait_port,
)

FORBIDDEN = (
    "socket",  # _socket is the C module the package uses instead
    "enum",
    "typing",
    "re",
    "argparse",
    "dataclasses",
    "functools",
    "collections",  # the pure-Python package (and collections.abc); _collections is fine
    "inspect",
    "logging",
    "uuid",
    "selectors",
    "subprocess",
    "threading",
    "locale",
    "gettext",
    "encodings.idna",  # what getaddrinfo() with a str host loads
    "stringprep",
    "unicodedata",
    "ctypes",
    "zoneinfo",
    "datetime",
)
# Modules excused where systemd passes the sockets (Accept=yes, Accept=no), with the reason;
# empty since activation.py reads LISTEN_FDS itself.  The check below fails once an excused
# importer is gone from such a path, so that the entry goes too.
KNOWN_DEFECTS: dict[str, str] = {}
PACKAGE_DIR = Path(daytime_sd.__file__).resolve().parents[1]  # REPO, or the private dir
PRIVATE_DIR = "/usr/share/daytime-sd"  # where the .deb installs the package
DIST_PACKAGES = "/usr/lib/python3/dist-packages"  # python3-systemd, python3-sdnotify
# The launcher that imports the package under test: the installed one beside an installed
# package, else the tree's (PYTHONPATH, which it honours, points at the tree).
LAUNCHER = (
    "/usr/sbin/daytime-sd"
    if str(PACKAGE_DIR) == PRIVATE_DIR and os.path.exists("/usr/sbin/daytime-sd")
    else str(REPO / "tools" / "daytime-sd")
)
STARTS: dict[str, list[str]] = {
    "launcher": [LAUNCHER],
    "-m": [PYTHON, "-S", "-m", "daytime_sd"],
}


# One module in the report: its indentation, its name, the modules loaded while importing it.
Node = tuple[int, str, list["Node"]]


class Imports:
    """The modules a process tree loaded, from PYTHONPROFILEIMPORTTIME's report on stderr.

    Each module's chain is the path from a top-level import down to it: the report lists a
    module after the ones it imported, each indented one step deeper than its importer.
    """

    def __init__(self, stderr: str) -> None:
        self.stderr = stderr
        self.chains: dict[str, tuple[str, ...]] = {}
        pending: list[Node] = []  # modules whose importer is not listed yet
        for line in stderr.splitlines():
            if not line.startswith("import time:") or line.count("|") != 2:
                continue
            self_us = line.split("|")[0].removeprefix("import time:").strip()
            if not self_us.isdigit():
                continue  # the header line
            field = line.rsplit("|", 1)[1]
            name = field.strip()
            indent = len(field) - len(field.lstrip())
            children: list[Node] = []
            while pending and pending[-1][0] > indent:
                children.insert(0, pending.pop())
            pending.append((indent, name, children))
        for root in pending:
            self._walk(root, ())

    def _walk(self, node: Node, above: tuple[str, ...]) -> None:
        _indent, name, children = node
        chain = (*above, name)
        self.chains.setdefault(name, chain)
        for child in children:
            self._walk(child, chain)

    def __contains__(self, module: str) -> bool:
        return module in self.chains

    def other_lines(self) -> str:
        return "\n".join(ln for ln in self.stderr.splitlines() if not ln.startswith("import time:"))


# The long-running process: what a service like this has no use for, what would come in only
# by mistake (a str host name to getaddrinfo loads the idna codec: listeners.py), and typing
# with the re it imports, whose memory every fork copies (bench/ output, "Fork cost").
LOOP_FORBIDDEN = (
    "argparse", "dataclasses", "inspect", "logging", "uuid", "subprocess", "threading",
    "locale", "gettext", "zoneinfo", "datetime", "encodings.idna", "stringprep", "unicodedata",
    "typing", "re",
)  # fmt: skip


def forbidden(module: str, names: Sequence[str] = FORBIDDEN) -> bool:
    return any(module == name or module.startswith(name + ".") for name in names)


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, frozenset[str]]:
    """start -> the modules the interpreter loads for a program that does nothing."""
    where = tmp_path_factory.mktemp("noop")
    (where / "noop.py").write_text("")
    shebang = Path(LAUNCHER).read_text().splitlines()[0].removeprefix("#!").split()
    argvs = {"launcher": [*shebang, str(where / "noop.py")], "-m": [PYTHON, "-S", "-m", "noop"]}
    found = {}
    for start, argv in argvs.items():
        env = base_env(PYTHONPATH=str(where), PYTHONPROFILEIMPORTTIME="1")
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        found[start] = frozenset(Imports(proc.stderr).chains)
    return found


def service_env(stderr: Path | None = None, **extra: str) -> dict[str, str]:
    """The package under test first, then dist-packages (as the launcher adds it under -S).

    With ``stderr``, JOURNAL_STREAM names that file, so the service takes its stderr for the
    journal (log.stderr_is_journal) and its first message would load systemd.journal.
    """
    env = base_env(
        PYTHONPATH=f"{PACKAGE_DIR}:{DIST_PACKAGES}", PYTHONPROFILEIMPORTTIME="1", **extra
    )
    if stderr is not None:
        st = os.stat(stderr)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    return env


def activate_args(env: Mapping[str, str]) -> list[str]:
    keep = ("PYTHONPATH", "PYTHONPROFILEIMPORTTIME", "NOTIFY_SOCKET", "JOURNAL_STREAM")
    return [f"-E{k}={env[k]}" for k in keep if k in env]


def activator_env(env: Mapping[str, str]) -> dict[str, str]:
    """systemd-socket-activate's own environment: JOURNAL_STREAM and NOTIFY_SOCKET go to the
    service only (-E).  systemd 262's tool logs to the journal when JOURNAL_STREAM names its
    stderr, and notifies NOTIFY_SOCKET itself, and would then print nothing we wait for."""
    return {k: v for k, v in env.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in: {path.read_text(errors='replace')}")
        time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def run_inetd(start: Sequence[str], log: Path, args: Sequence[str] = ()) -> Imports:
    """inetd ``nowait``: the client's connection as fds 0 and 1; stderr to the "journal"."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=20) as client:
            conn, _ = listener.accept()
            with conn, log.open("wb") as err:
                proc = subprocess.run(
                    [*start, *args], stdin=conn.fileno(), stdout=conn.fileno(), stderr=err, cwd="/",
                    env=service_env(log), timeout=30,
                )  # fmt: skip
            answer = client.recv(4096)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text
    assert LINE.match(answer), (answer, text)
    return Imports(text)


def run_accept_yes(start: Sequence[str], log: Path) -> Imports:
    """Accept=yes: systemd-socket-activate --accept, one process for one connection."""
    port = free_port()
    env = service_env(log)
    argv = [ACTIVATE, "--accept", "-l", f"127.0.0.1:{port}", *activate_args(env), *start]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            argv, env=activator_env(env), stdin=subprocess.DEVNULL, stderr=err, cwd="/"
        )
    try:
        wait_for_text(log, "Listening on", proc)
        assert LINE.match(query("127.0.0.1", port))
        wait_for_text(log, "died with code 0", proc)
    finally:
        stop(proc)
    return Imports(log.read_text(errors="replace"))


def run_loop(mode: str, start: Sequence[str], log: Path, notify: str | None = None) -> Imports:
    """Accept=no (the in-process loop) or standalone (the fork parent and its children),
    stopped with SIGTERM after it answered connections: all it loaded in its lifetime."""
    port = free_port()
    env = service_env(None, **({"NOTIFY_SOCKET": notify} if notify else {}))
    if mode == "accept-no":
        argv = [ACTIVATE, "-l", f"127.0.0.1:{port}", *activate_args(env), *start]
    else:
        argv = [*start, "--listen", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as err:
        own = activator_env(env) if mode == "accept-no" else env
        proc = subprocess.Popen(argv, env=own, stdin=subprocess.DEVNULL, stderr=err, cwd="/")
    try:
        if mode == "accept-no":
            wait_for_text(log, "Listening on", proc)  # it execs the service on a connection
        else:
            wait_port("127.0.0.1", port)  # a connection too
        for _ in range(3):
            assert LINE.match(query("127.0.0.1", port))
        assert proc.poll() is None, log.read_text(errors="replace")
    finally:
        code = stop(proc)
    text = log.read_text(errors="replace")
    assert code == 0, text
    return Imports(text)


def check(
    imports: Imports,
    baseline: frozenset[str],
    where: str,
    excuses: Mapping[str, str] | None = None,
    names: Sequence[str] = FORBIDDEN,
) -> None:
    """No forbidden module beyond the interpreter's own, except under an excused importer."""
    loaded = {m: c for m, c in imports.chains.items() if forbidden(m, names) and m not in baseline}
    wrong = {m: c for m, c in loaded.items() if not set(c) & (excuses or {}).keys()}
    assert not wrong, (
        f"{where} loaded "
        + "; ".join(f"{m} (via {' -> '.join(c)})" for m, c in sorted(wrong.items()))
        + f"\n{imports.other_lines()}"
    )


def check_path(imports: Imports, baseline: frozenset[str], where: str, systemd: bool) -> None:
    """``check``, with the known defects excused where systemd passes the sockets; there, a
    known importer gone from the path must take its entry in KNOWN_DEFECTS with it."""
    check(imports, baseline, where, KNOWN_DEFECTS if systemd else None)
    for module, reason in KNOWN_DEFECTS.items():
        assert not systemd or module in imports, (
            f"{where} no longer loads {module}: remove it from KNOWN_DEFECTS ({reason})"
        )


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """Where the service's stderr goes (a file: JOURNAL_STREAM can name it)."""
    path = tmp_path / "stderr"
    path.touch()
    return path


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("path", ["inetd", "accept-yes"])
def test_per_connection_path_loads_no_forbidden_module(
    path: str, start: str, baselines: dict[str, frozenset[str]], log: Path
) -> None:
    if path == "inetd":
        imports = run_inetd(STARTS[start], log)
    else:
        imports = run_accept_yes(STARTS[start], log)
    where = f"the per-connection path ({path}, {' '.join(STARTS[start])})"
    check_path(imports, baselines[start], where, systemd=path == "accept-yes")
    # No site: -S in the launcher's shebang, or on the -m command line.
    assert "site" not in imports, f"{where}: {imports.chains['site']}"
    assert "daytime_sd.cli" in imports, imports.stderr  # the report is the service's
    # A quiet connection logs nothing, so the journal binding (logging, uuid, ...) stays out,
    # although stderr is the journal here; no NOTIFY_SOCKET, no sdnotify.
    assert "systemd.journal" not in imports, f"{where}: {imports.chains['systemd.journal']}"
    assert "sdnotify" not in imports, f"{where}: {imports.chains['sdnotify']}"


def test_a_start_without_minus_s_shows_site(log: Path) -> None:
    """The control for the ``site`` assertion above: the report does show it."""
    shebang = Path(LAUNCHER).read_text().splitlines()[0].removeprefix("#!").split()
    imports = run_inetd([shebang[0], LAUNCHER], log)
    assert "site" in imports, imports.stderr


def test_the_first_log_line_loads_the_journal_binding(log: Path) -> None:
    """The control for the assertion above: the report does show systemd.journal."""
    imports = run_inetd(STARTS["launcher"], log, ["--log-connections"])
    assert "systemd.journal" in imports, imports.stderr


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("mode", ["accept-no", "standalone"])
def test_serving_loop_loads_no_forbidden_module(
    mode: str, start: str, baselines: dict[str, frozenset[str]], log: Path
) -> None:
    imports = run_loop(mode, STARTS[start], log)
    where = f"the {mode} loop ({' '.join(STARTS[start])}, no NOTIFY_SOCKET)"
    check(imports, baselines[start], where, names=LOOP_FORBIDDEN)
    assert "sdnotify" not in imports, f"{where}: {imports.chains['sdnotify']}"


@pytest.mark.parametrize("mode", ["accept-no", "standalone"])
def test_sdnotify_loads_under_notify_socket_and_nothing_else_forbidden(
    mode: str, baselines: dict[str, frozenset[str]], log: Path
) -> None:
    notify = Notifications()
    try:
        imports = run_loop(mode, STARTS["launcher"], log, notify.path)
        notify.wait_for("READY=1", timeout=5)
    finally:
        notify.close()
    where = f"the {mode} loop ({LAUNCHER}, NOTIFY_SOCKET set)"
    assert "sdnotify" in imports, imports.stderr
    check(imports, baselines["launcher"], where, names=LOOP_FORBIDDEN)
