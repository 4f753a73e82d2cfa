# kqueue — run `make` for the list of targets.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Debian packages the runtime, the tests and the demo need.
DEPS := php-cli php-redis php-sqlite3 php-mysql php-pgsql php-mbstring php-laravel-framework redis-server redis-tools mariadb-server postgresql systemd phpunit iproute2 faketime chromium prometheus
# An execution count, not a duration: Go 1.26's fuzzing coordinator can fail a
# duration-bound run with "context deadline exceeded" as the time runs out
# on a loaded machine, with no failing input (fixed in Go 1.27).
FUZZTIME ?= 50000x
# The demo's queue: redis, or database (the jobs table in the app's SQLite).
DRIVER ?= redis

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z\/]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install the Debian packages kqueue's tests and demo need (as root)
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: build
build: ## build bin/kqueue
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kqueue ./cmd/kqueue

.PHONY: demo
demo: deps build ## run the demo: real Laravel jobs through kqueue on a private Redis (DRIVER=database: from the jobs table)
	DRIVER=$(DRIVER) demo/demo.sh

.PHONY: test
test: unit e2e ## run every test: make unit, then the VM tier (make e2e)

.PHONY: unit
unit: deps lint chroots ## every test but the VM tier (with the race detector), and a short fuzz of every parser
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory phpunit fuzz

.PHONY: chroots
chroots: chroot-deps ## build the Laravel 10 (trixie) and 13 (sid) chroots in /var/tmp/kqueue-chroots, once (as root)
	testdata/chroots.sh

.PHONY: phpunit
phpunit: ## php -l every file of the PHP library (php-library/), then its PHPUnit tests
	@for f in $$(find php-library -name '*.php'); do out=$$(php -l $$f 2>&1) || { echo "$$out"; exit 1; }; done
	phpunit -c php-library/phpunit.xml.dist

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: fuzz
fuzz: ## fuzz every parser (and the log line writer, and the byte tests they share) for FUZZTIME each (default 50000x: executions)
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./payload
	$(GO) test -run '^$$' -fuzz '^FuzzScanMatchesEncodingJSON$$' -fuzztime $(FUZZTIME) ./payload
	$(GO) test -run '^$$' -fuzz '^FuzzReadCommand$$' -fuzztime $(FUZZTIME) ./payload
	$(GO) test -run '^$$' -fuzz '^FuzzMatchesBytes$$' -fuzztime $(FUZZTIME) ./internal/swar
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./protocol
	$(GO) test -run '^$$' -fuzz '^FuzzTextHandlerWritesWhatSlogWrites$$' -fuzztime $(FUZZTIME) ./journal

.PHONY: bench
bench: deps build ## measure kqueue against php artisan queue:work, side by side; the table goes into BENCHMARKS.md
	KQ_BENCH_WRITE=1 $(GO) test -run '^$$' -bench . -benchtime 1x -count 3 -timeout 60m ./bench

.PHONY: chaos
chaos: deps ## fault injection: 10,000 jobs, 60 faults (kills, Redis restarts and freezes); nothing may be lost
	KQ_CHAOS_JOBS=10000 KQ_CHAOS_FAULTS=60 $(GO) test -count=1 -v -run '^TestChaos$$' -timeout 20m ./chaos

.PHONY: microbench
microbench: ## Go benchmarks of the hot paths: frame codec, payload reading, reserve/ack batching, the job log line
	$(GO) test -run '^$$' -bench . -benchmem ./protocol ./payload ./poller/... ./journal

.PHONY: deb
deb: pkg-deps ## build dist/kqueue_VERSION_ARCH.deb and check it with lintian
	rm -f dist/*.deb
	GO=$(GO) packaging/deb.sh
	lintian --fail-on error dist/*.deb

.PHONY: apt-repo
apt-repo: deb ## build a local apt repository of the package in dist/apt
	packaging/apt-repo.sh

.PHONY: e2e
e2e: vm-deps apt-repo ## install, run and remove the package on real systemd in a qemu VM
	packaging/vm/vm.sh run dist/apt

.PHONY: pkg-deps vm-deps chroot-deps
pkg-deps: # the packaging tools
	@$(MAKE) --no-print-directory deps DEPS="dpkg-dev lintian gcc"
chroot-deps: # the chroot tools
	@$(MAKE) --no-print-directory deps DEPS="mmdebstrap debian-archive-keyring"
vm-deps: # the VM tools
	@$(MAKE) --no-print-directory deps DEPS="qemu-system-x86 qemu-utils mmdebstrap e2fsprogs debian-archive-keyring zstd"

.PHONY: clean
clean: ## remove build output
	rm -rf bin dist
