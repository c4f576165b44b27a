# quicfs: `make test` and `make demo` work on a fresh Debian machine as root.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# What the mount needs (libfuse3 for pyfuse3; libkrb5-dev for gssapi and krb5, the
# Python packages of Kerberos logins, which PyPI has only as source for Linux; gcc and
# python3-dev compile those three; man-db: `man quicfs` after `make install`, and
# tests/unit/test_manual.py renders the pages); the tests add the rest.
RUN_PKGS := fuse3 libfuse3-dev pkg-config libkrb5-dev gcc python3-dev man-db
# xfsprogs: xfstests/run keeps the shares on an XFS image, and
# tests/fuse/test_xfstests_stop.py runs it. samba-ad-dc, winbind and krb5-user (kinit,
# klist): the domain controller and tickets of tests/integration/test_kerberos.py
# (tools/localdc.py); the Samba step below takes them to its version with samba.
# krb5-k5tls: MIT krb5's HTTPS, to reach a KDC through an MS-KKDCP proxy.
TEST_PKGS := acl attr iproute2 git xfsprogs samba-ad-dc winbind krb5-user krb5-k5tls
# The test server: Samba 4.22 is the first to grant directory leases
# (tests/fuse/test_directory_leases.py); Debian 12 has it in bookworm-backports.
SAMBA_MIN := 4.22
PYTEST_ARGS ?=
# Test workers (pytest-xdist): the suite waits on servers, mounts and timeouts more than
# it computes, so three workers on two cores (the whole suite, same machine and load:
# 781 s with two workers, 621 s with three); tests marked quiet or serial wait for their
# turn (tests/conftest.py). --dist loadgroup hands tests out one at a time as workers
# free up (no test is in an xdist_group): 358 s, where --dist load's blocks took 398 s.
# TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 3

.PHONY: deps deps-run venv venv-run compile test test-bbr lint bench clean install man demo demo-stop

# apt-get only what is missing, so a machine that has everything stays offline.
define apt_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

deps-run:
	$(call apt_missing,$(RUN_PKGS))

deps: deps-run
	$(call apt_missing,$(TEST_PKGS))
	@have=$$(smbd --version 2>/dev/null | sed -n 's/^Version \([0-9]*\.[0-9]*\).*/\1/p'); \
	if [ -z "$$have" ] || ! printf '%s\n%s\n' "$(SAMBA_MIN)" "$$have" | sort -V -C \
	    || ! command -v smbclient >/dev/null; then \
	  . /etc/os-release; from=""; \
	  if [ "$$VERSION_CODENAME" = bookworm ]; then \
	    echo "deb http://deb.debian.org/debian bookworm-backports main" \
	      > /etc/apt/sources.list.d/quicfs-backports.list; \
	    from="-t bookworm-backports"; \
	  fi; \
	  echo "apt-get install samba samba-common-bin smbclient (at least $(SAMBA_MIN)) $$from"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$from \
	    samba samba-common-bin smbclient; \
	fi

# gssapi, krb5 and pyfuse3 have no Linux wheels: pip compiles them, ~2.5 CPU minutes,
# and setuptools compiles one C file at a time unless told (DIST_EXTRA_CONFIG, read by
# setuptools' distutils: build_ext's parallel option).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	printf '[build_ext]\nparallel = %s\n' "$$(nproc)" > $(abspath $(VENV))/build_ext.cfg
	DIST_EXTRA_CONFIG=$(abspath $(VENV))/build_ext.cfg $(PY) -m pip install -q -e '.[test]'
	touch $@

# Byte-compile our sources: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
# command would otherwise compile them afresh at each start.
compile: $(VENV)/.installed
	@$(PY) -m compileall -q quicfs tools

venv: deps $(VENV)/.installed compile

# What `make install` needs: no test server.
venv-run: deps-run $(VENV)/.installed compile

test: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The QUIC tests again with our BBR on aioquic at both ends (QUICFS_TEST_CC,
# tests/support/gateway.py): on loopback, cc=auto picks qh3's CUBIC, and no test
# would run the engine every remote peer gets.
BBR_TESTS := $(wildcard tests/integration/test_quic*.py tests/integration/test_gateway*.py) \
	tests/integration/test_connect_under_loss.py tests/integration/test_fallback.py \
	tests/fuse/test_faults.py

test-bbr: venv
	QUICFS_TEST_CC=bbr $(PY) -m pytest $(PYTEST_ARGS) $(BBR_TESTS)

lint: venv
	$(VENV)/bin/ruff check quicfs tests bench tools xfstests

bench: venv
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info

# The man pages, made from docs/quicfs.md and docs/mount.quicfs.md (tools/manpage.py,
# standard library only); the made pages are committed, and rewritten only if they change.
man:
	python3 tools/manpage.py

MANDIR := /usr/local/share/man

# mount(8) finds helpers in /sbin: `mount -t quicfs` and fstab lines then work.
# A mount shows as type fuse.quicfs, so remounts come to mount.fuse.quicfs: the same helper.
# The command and the helpers are links to this checkout; the man pages are copies, which
# man(1) finds in $(MANDIR) with or without mandb's index (mandb updates it for apropos).
install: venv-run man
	ln -sf $(CURDIR)/mount.quicfs /sbin/mount.quicfs
	ln -sf $(CURDIR)/mount.quicfs /sbin/mount.fuse.quicfs
	ln -sf $(CURDIR)/$(VENV)/bin/quicfs /usr/local/bin/quicfs
	install -D -m 644 man/quicfs.1 $(MANDIR)/man1/quicfs.1
	install -D -m 644 man/mount.quicfs.8 $(MANDIR)/man8/mount.quicfs.8
	-@mandb -q $(MANDIR) 2>/dev/null
	@echo "installed /sbin/mount.quicfs and /sbin/mount.fuse.quicfs -> $(CURDIR)/mount.quicfs,"
	@echo "/usr/local/bin/quicfs -> $(CURDIR)/$(VENV)/bin/quicfs, man pages quicfs(1) and mount.quicfs(8)"

# A local Samba, our QUIC gateway in front of it, and the share mounted over QUIC at
# ./demo/mnt (tools/demo.py: the checkout's, not in the package). `make demo-stop` undoes it.
demo: venv
	$(VENV)/bin/quicfs demo start demo

demo-stop:
	@if [ -x $(VENV)/bin/quicfs ]; then $(VENV)/bin/quicfs demo stop demo; fi
