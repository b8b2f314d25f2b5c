# SPDX-License-Identifier: MIT
"""Entry point: argv → Config → sockets → serve, and every failure as one line and a status.

Imports are staged: the per-connection path (Accept=yes, inetd ``nowait``) needs only the
config, activation, log, protocol and answer modules; the serving loop and its dependencies
load only when there is a loop to run.
"""

from __future__ import annotations

import os
import sys
import time

from daytime_sd import activation, config, log
from daytime_sd.activation import ActivationError, Sockets

# The per-connection path: typing.TYPE_CHECKING would import typing (bench/ "Import costs").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
STANDALONE_ONLY = ("listen", "port", "backlog", "udp", "user")


# Debian packages of the modules imported only when systemd is in the picture.
PACKAGES = {"systemd": "python3-systemd", "sdnotify": "python3-sdnotify"}


def fail(message: str, status: int = EXIT_FAILURE) -> int:
    log.error(f"error: {message}")
    return status


def missing(err: ImportError) -> int:
    """A module systemd activation or notification needs is not installed: say which."""
    name = (err.name or "").partition(".")[0]
    package = PACKAGES.get(name)
    if package is None:
        raise err
    return fail(f"the Python module {name!r} is missing: install the {package} package")


def answer_connections(cfg: config.Config, sockets: Sockets) -> None:
    """Accept=yes / inetd ``nowait``: each connection we were handed gets its line."""
    from daytime_sd.answer import answer_once
    from daytime_sd.protocol import NIST_FORMAT, render

    if cfg.format == NIST_FORMAT or cfg.require_sync:
        from daytime_sd.clock import ClockSync

        sync = ClockSync(cfg)
        sync.poll(time.monotonic(), quiet=True)
        line = sync.render(int(time.time()))
        if not line:
            log.warning(f"{sync.status()}; --require-sync: closing without an answer")
    else:
        line = render(cfg.format, time.time(), cfg.utc)
    for conn in sockets.connections:
        if cfg.log_connections:
            from daytime_sd.netaddr import format_endpoint, split

            try:
                peer: object = conn.getpeername()
            except OSError:
                peer = None
            host, port = split(peer)
            log.info(f"connection from {format_endpoint(peer)}", remote_addr=host, remote_port=port)
        answer_once(conn, line, cfg.linger)


def serve(cfg: config.Config, sockets: Sockets | None) -> int:
    """Run the loop over the sockets we were given, or over sockets we open ourselves."""
    import socket

    from daytime_sd.notify import Notifier
    from daytime_sd.server import Server

    listeners: Sequence[socket.socket]
    datagrams: Sequence[socket.socket]
    if sockets is None:
        from daytime_sd.listeners import ListenError, open_listeners

        try:
            listeners, datagrams = open_listeners(cfg.listen, cfg.port, cfg.backlog, cfg.udp)
        except ListenError as err:
            return fail(str(err))
        if cfg.user is not None:
            from daytime_sd.listeners import PrivilegeError, drop_to

            try:
                drop_to(cfg.user)
            except PrivilegeError as err:
                return fail(str(err))
        activated = False
    else:
        # activation.py wraps what it is given in the C type (the per-connection path has no
        # socket module); the loop takes the public class, on the same descriptors.
        listeners = [socket.socket(fileno=s.detach()) for s in sockets.listeners]
        datagrams = [socket.socket(fileno=s.detach()) for s in sockets.datagrams]
        activated = True
    fork = cfg.fork if cfg.fork is not None else not activated
    source = f"sockets from {sockets.source}" if sockets else "standalone"
    server = Server(cfg, listeners, datagrams, fork, activated, Notifier(), source)
    return server.run()


def main(argv: Sequence[str] | None = None) -> int:
    activation.guard_stdio()
    try:
        cfg = config.parse(sys.argv[1:] if argv is None else argv)
    except config.Exit as done:
        sys.stdout.write(done.text)
        return EXIT_OK
    except config.UsageError as err:
        log.setup("error", "stderr")
        return fail(f"{err} (see --help)", EXIT_USAGE)
    log.setup(cfg.log_level)
    asked = [f"--{name.replace('_', '-')}" for name in STANDALONE_ONLY if name in cfg.given]
    try:
        sockets = activation.detect(os.environ, standalone_asked=bool(asked))
    except ActivationError as err:
        return fail(f"{err}; is the socket unit (or inetd.conf) configured right?")
    except ImportError as err:
        return missing(err)
    if sockets is not None and asked:
        log.warning(f"{', '.join(asked)} ignored: the sockets come from {sockets.source}")
    try:
        if sockets is not None and sockets.connections:
            answer_connections(cfg, sockets)
            if not (sockets.listeners or sockets.datagrams):
                # Nothing else to do in this process: skip the interpreter's finalization,
                # a measurable share of every per-connection start (bench/: Accept=yes).
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_OK)
        return serve(cfg, sockets)
    except KeyboardInterrupt:
        return EXIT_OK
    except ImportError as err:
        return missing(err)
    except OSError as err:  # last resort: one line, never a traceback
        return fail(str(err.strerror or err))
