# sluice — build, test, benchmark, install.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
MANDIR = $(DESTDIR)$(PREFIX)/share/man
TOOLS = snapshots walk fetch-pack unpack verify init-repo chunk pack push
CARGO ?= cargo

.PHONY: all build test lint man-lint check bench bench-restore demo install uninstall clean

all: build

build:
	$(CARGO) build --release

# The test command of the README: unit tests, pipeline tests, interop with restic.
test: man-lint
	$(CARGO) test --workspace

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check

man-lint:
	@if command -v mandoc >/dev/null; then \
		mandoc -Tlint -W warning man/*.[157] && echo "man pages: clean"; \
	else echo "man-lint: mandoc not installed, skipped" >&2; fi

check: lint test

# Side-by-side restore benchmark against restic; prints a table (see bench/RESULTS.md).
bench: bench-restore

bench-restore: build
	bash bench/restore.sh

# The main job: back up a directory, restore it, verify it (DIR=… to choose the directory).
demo: build
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
