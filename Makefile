# SPDX-License-Identifier: MIT
# daytime-sd developer entry points.  Everything a target needs is installed by `make deps`
# (as root it runs apt-get; otherwise it prints the command to run).

PYTHON      := /usr/bin/python3
VENV        := .venv
VPY         := $(VENV)/bin/python
PORT        ?= 1313
PYTEST_ARGS ?=

# Debian packages the service, the tests, the real-systemd rig and the .deb build need, on a
# fresh Debian 12 or 13 (debootstrap minbase plus git, make and ca-certificates: what
# `make test-fresh` starts from); nothing else of the machine is assumed.  build-essential:
# dpkg-buildpackage's implicit build dependency (and gcc for bench/*.c).  Not here: the
# libraries of the inetds `make bench` compares with (libwrap0, libevent, ...; their names
# differ between releases): bench/run.py fetches them with the daemons, installing nothing.
APT_PACKAGES := python3 python3-venv python3-systemd python3-sdnotify systemd git \
	systemd-container debootstrap iproute2 build-essential gcc make \
	debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools \
	lintian mandoc groff-base man-db autopkgtest python3-matplotlib \
	python3-pytest python3-hypothesis
# Tools only the tests and linters use, at the versions pinned there; they live in a venv on
# top of Debian's python3 and shadow Debian's pytest and hypothesis, so that lint and mypy
# give one verdict whichever release is underneath.
PIP_REQUIREMENTS := requirements-dev.txt

.PHONY: all deps run query test test-unstable lint unit soak bench bench-systemd deb clean mutants qa
all: test

deps: $(VENV)/.stamp
$(VENV)/.stamp: Makefile $(PIP_REQUIREMENTS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		else \
			echo "Missing Debian packages. Run as root:"; \
			echo "  apt-get install -y --no-install-recommends $$missing"; exit 1; \
		fi; \
	fi
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -r $(PIP_REQUIREMENTS)
	touch $@

# Standalone service in the foreground on an unprivileged loopback port.
# Query it from another terminal with `make query` (HOST=localhost PORT=13 for the package).
run: deps
	$(PYTHON) -m daytime_sd --listen 127.0.0.1 --port $(PORT) --log-connections

# One TCP query, printed as the client receives it; needs nothing but Debian's python3.
HOST ?= 127.0.0.1
query:
	@$(PYTHON) -c 'import socket, sys; s = socket.create_connection(("$(HOST)", $(PORT)), 5); \
		sys.stdout.write(s.makefile("rb").read().decode("ascii", "replace"))'

lint: deps
	$(VENV)/bin/ruff check daytime_sd tests bench
	$(VENV)/bin/ruff format --check daytime_sd tests bench
	$(VENV)/bin/mypy daytime_sd tests bench

unit: deps
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)

# Everything, with the real-systemd tests (tests/e2e) in booted bookworm and trixie.  The
# integration tests (tests/integration, but the .deb build and the bench smoke run, which need
# the source tree) run there, inside each release's autopkgtest, against the installed .deb
# under that release's python3 (tests/e2e/test_deb.py), rather than a third time here.
HOST_TESTS := tests/unit tests/integration/test_deb_build.py tests/integration/test_bench_smoke.py
test: deps lint
	$(VPY) -m pytest $(HOST_TESTS) tests/e2e $(PYTEST_ARGS)

# The real-systemd tests in booted sid (unstable): the .deb, the units, the in-release build
# and lintian; kept out of `make test` for time (another rootfs, two Pythons).
test-unstable: deps
	DAYTIME_E2E_RELEASES=sid $(VPY) -m pytest tests/e2e $(PYTEST_ARGS)

# README's set-up on a fresh Debian 12 and 13 (tests/fresh/test_fresh_host.py): in a pristine
# debootstrap root of each (minbase, git, make, ca-certificates), a clone of the committed HEAD
# runs make deps, make run + make query, lint, unit, deb and the bench smoke test.  Not part of
# `make test` (about 4 minutes per release, half of it make deps); CI runs it after `make test`.
# FRESH_RELEASES=bookworm,trixie,sid adds sid.
FRESH_RELEASES ?= bookworm,trixie
.PHONY: test-fresh
test-fresh: deps
	DAYTIME_FRESH_RELEASES=$(FRESH_RELEASES) $(VPY) -m pytest tests/fresh $(PYTEST_ARGS)

soak: deps
	DAYTIME_SOAK_SECONDS=60 $(VPY) -m pytest tests/integration/test_soak.py $(PYTEST_ARGS)

bench: deps
	$(VPY) bench/run.py

# Companion of `make bench`: Accept=no and Accept=yes as each release's PID 1 runs them
# (booted bookworm and trixie; RELEASES=bookworm,trixie,sid to add sid).
RELEASES ?= bookworm,trixie
bench-systemd: deps
	$(VPY) bench/systemd_rows.py --releases $(RELEASES)

deb: deps
	./tools/build-deb

clean:
	rm -rf $(VENV) dist build *.egg-info .mypy_cache .pytest_cache .ruff_cache bench/build

# What Debian's QA runs on the package (issue 23): reprotest (two builds, tests on, the second
# varied in time zone, locale, umask, build path, user, a clock 400 days ahead, ...; the .debs
# identical) and piuparts in bookworm and trixie (install/purge, remove/reinstall, upgrade from
# the build of QA_OLD_REV).  tools/qa installs what it uses (reprotest, piuparts, faketime,
# disorderfs, locales-all, ...) itself; results in dist/qa/.  A few minutes; not in `make test`
# (piuparts debootstraps and needs the mirror, reprotest builds twice), see debian/README.source.
RUN ?= all
qa:
	./tools/qa $(RUN)

# Mutation testing (issue 13): cosmic-ray over daytime_sd/ in a copy of the tree, about 25
# minutes on 2 cores; not part of `make test`.  Writes tests/mutation/results.md.
mutants: deps
	$(VPY) -m pip install -q --disable-pip-version-check cosmic-ray
	nice -n 19 $(VPY) tests/mutation/mutants.py
