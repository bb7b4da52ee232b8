# efs-relay. `make demo` and `make test` install what they need (npm ci, and
# as root the Debian packages) and build first.
SHELL := /bin/bash
NPM_STAMP := node_modules/.installed
SYS_PKGS := nfs-ganesha nfs-ganesha-vfs libnfs-utils rpcbind openssl ca-certificates prometheus stunnel4 rpm lintian rpmlint debootstrap systemd valgrind faketime
SYS_BINS := ganesha.nfsd nfs-cp nfs-cat rpcbind openssl prometheus promtool stunnel rpmbuild lintian rpmlint debootstrap systemd-analyze valgrind vgdb faketime
# The directories too (as dir/., so that test/ is not the phony target test):
# deleting or renaming a file changes its directory, so the build reruns.
SOURCES := $(shell find daemon cli test -name '*.ts' 2>/dev/null) $(shell find daemon cli test -type d -printf '%p/.\n' 2>/dev/null) package.json tsconfig.json packaging/bundle.mjs

.DELETE_ON_ERROR:

.PHONY: all build lint test demo bench sea package clean deps sysdeps ca-bundle

all: build

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NPM_STAMP)

# The Debian packages the stand-in EFS server and the NFS client need.
sysdeps:
	@missing=""; for b in $(SYS_BINS); do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	[ -f /usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt ] || missing="$$missing ca-certificates"; \
	[ -e /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ] || ls /usr/lib/*/ganesha/libfsalvfs.so >/dev/null 2>&1 || missing="$$missing nfs-ganesha-vfs"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages (missing:$$missing)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYS_PKGS) >/dev/null; \
	  else \
	    echo "Missing:$$missing. As root run: apt-get install $(SYS_PKGS) (tests that need them will be skipped)"; \
	  fi; \
	fi

# build/js is compiled afresh: a test left there from a renamed or deleted source would still run.
build/.built: $(NPM_STAMP) $(SOURCES)
	rm -rf build/js
	npx tsc -p .
	node packaging/bundle.mjs
	@touch $@

build: build/.built

lint: $(NPM_STAMP)
	npx tsc --noEmit -p .

test: sysdeps build package
	@node build/js/test/run.js

demo: sysdeps build
	@node build/js/test/demo.js

# efs-relay against stunnel and plain TCP. BENCH_ARGS=--quick for the short set,
# BENCH_ARGS=--instructions for instruction and cache-miss counts under callgrind.
bench: sysdeps build
	@node --expose-gc build/js/test/bench/bench.js $(BENCH_ARGS)

# The self-contained binary: Node's single executable application support, on
# the Node.js LTS pinned in packaging/node-runtime.json (fetched from the npm
# registry once, into build/node-runtime). SEA_NODE=/path/to/node builds on
# another one (make -B sea SEA_NODE=…, since a changed variable alone does not rebuild).
build/sea/efs-relayd: $(NPM_STAMP) $(SOURCES) packaging/sea.mjs packaging/node-runtime.mjs packaging/node-runtime.json packaging/node-support.mjs
	node packaging/sea.mjs

sea: build/sea/efs-relayd

# The deb and the rpm (dpkg-deb, rpmbuild from Debian's rpm package).
package: build/sea/efs-relayd
	@bash packaging/package.sh

# Regenerates etc/amazon-root-cas.pem from Debian's ca-certificates.
ca-bundle:
	@for n in 1 2 3 4; do f=/usr/share/ca-certificates/mozilla/Amazon_Root_CA_$$n.crt; \
	  [ -r $$f ] || { echo "missing $$f: apt-get install ca-certificates" >&2; exit 1; }; \
	  echo "# Amazon Root CA $$n"; openssl x509 -in $$f -noout -fingerprint -sha256 | sed 's/^/# /'; cat $$f; done > etc/amazon-root-cas.pem
	@echo "wrote etc/amazon-root-cas.pem"

clean:
	rm -rf build
