# sluice — build, test, benchmark, install.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
MANDIR = $(DESTDIR)$(PREFIX)/share/man
TOOLS = snapshots walk fetch-pack unpack verify init-repo check-repo chunk pack push
CARGO ?= cargo

.PHONY: all build deps test lint man-lint check bench bench-restore bench-backup bench-small bench-remote bench-dump bench-versions demo install uninstall clean

all: build

build:
	$(CARGO) build --release

# What the tests run besides our binaries (restic, mandoc, strace, rclone, openssl, and
# moto_server in target/venv), installed where missing: see tests/deps.sh.
deps:
	bash tests/deps.sh

# The test command of the README: unit tests, pipeline tests, interop with restic, and the
# vendored scrypt's own tests (vendor/README.md).
test: deps man-lint
	$(CARGO) test --workspace --no-fail-fast
	$(CARGO) test -p scrypt --lib

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

man-lint:
	mandoc -Tlint -W warning man/*.[157] && echo "man pages: clean"

check: lint test

# Side-by-side benchmarks against restic; print tables (see bench/RESULTS.md).
# The two benchmarks that make many files run first, and nothing a benchmark made is deleted
# until all are done: after a mass deletion, file creation on ext4 without a journal is
# slower for minutes (bench/RESULTS.md, "Many small files"), and would be measured instead.
bench: build
	$(CARGO) build --release --example latency-proxy
	BENCH_TRASH=$(CURDIR)/target/bench/trash $(MAKE) bench-small bench-remote bench-restore bench-backup bench-dump
	rm -rf target/bench/trash

bench-restore: build
	bash bench/restore.sh

bench-backup: build
	bash bench/backup.sh

# Streaming out (restic dump): a 1 GiB file to stdout and as a tar, every stage's peak RSS.
bench-dump: build
	bash bench/dump.sh

# This build against an earlier one (BEFORE=<git revision>, built in target/bench), restore
# and backup in alternating pairs: a refactor must not make either slower.
bench-versions: build
	@test -n "$(BEFORE)" || { echo "usage: make bench-versions BEFORE=<git revision>" >&2; exit 2; }
	rm -rf target/bench/before-src
	git worktree prune
	git worktree add --detach target/bench/before-src $(BEFORE)
	cd target/bench/before-src && cargo build --release --target-dir ../before-target
	bash bench/versions.sh target/bench/before-target/release target/release
	git worktree remove --force target/bench/before-src

# Many small files (50,000 of 1-16 KiB): restore against restic in alternating pairs.
bench-small: build
	bash bench/smallfiles.sh

# A restore from a rest: server 20 ms away (rclone behind the tests' proxy), restic with a
# fresh cache against sluice in alternating pairs; and every stage's peak RSS with 16 and
# 128 MiB packs, --connections 2 and 16.
bench-remote: build
	$(CARGO) build --release --example latency-proxy
	bash bench/remote.sh

# The main job: back up a directory, restore it, verify it (DIR=… to choose the directory;
# default this tree, without target/). Says so before the first, long build starts.
demo:
	@echo "make demo: building the release binaries first ($(CARGO) build --release; a few minutes the first time)" >&2
	$(CARGO) build --release
	bash bench/demo.sh $(DIR)

install: build
	install -d $(BINDIR) $(MANDIR)/man1 $(MANDIR)/man5 $(MANDIR)/man7
	for t in $(TOOLS); do install -m 755 target/release/$$t $(BINDIR)/$$t; done
	for p in man/*.1; do install -m 644 $$p $(MANDIR)/man1/; done
	for p in man/*.5; do install -m 644 $$p $(MANDIR)/man5/; done
	for p in man/*.7; do install -m 644 $$p $(MANDIR)/man7/; done

uninstall:
	for t in $(TOOLS); do rm -f $(BINDIR)/$$t; done
	for p in man/*.1; do rm -f $(MANDIR)/man1/$$(basename $$p); done
	for p in man/*.5; do rm -f $(MANDIR)/man5/$$(basename $$p); done
	for p in man/*.7; do rm -f $(MANDIR)/man7/$$(basename $$p); done

clean:
	$(CARGO) clean
