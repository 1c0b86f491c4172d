# carvefs - build, test, demo and install.
#
#   make            build the binaries into build/ (installs missing Debian
#                   build packages first when run as root)
#   make check      unit tests (ASan+UBSan build) and integration tests
#   make unit       unit tests only;  make integration  integration tests only
#   make demo       a pool under ./demo-run, three volumes mounted, df, ENOSPC
#   make bench      the fio benchmark suite (bench/)
#   make install    PREFIX=/usr/local DESTDIR=  (binaries, man pages, systemd units)
#   V=1             show full commands;  WERROR=0  warnings are not errors

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BUILD ?= build
SANBUILD ?= build/san
SANITIZE ?=

CFLAGS ?= -O2 -g
WERROR ?= 1
FS_PKGS := fuse3 liburing mount libxxhash jansson libmicrohttpd
PROV_PKGS := libcurl yaml-0.1 jansson mount libmicrohttpd
PKGS := $(sort $(FS_PKGS) $(PROV_PKGS))
override CFLAGS += -std=gnu11 -Wall -Wextra -Wstrict-prototypes \
	-Wmissing-prototypes -Wshadow -Wformat=2 -Wvla -fno-common \
	-D_GNU_SOURCE -DFUSE_USE_VERSION=314 -Iinclude -pthread \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null) -MMD -MP
ifneq ($(WERROR),0)
override CFLAGS += -Werror
endif
ifneq ($(SANITIZE),)
override CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
override LDFLAGS += -fsanitize=$(SANITIZE)
endif
FS_LIBS = $(shell pkg-config --libs $(FS_PKGS) 2>/dev/null) -pthread -lm
CTL_LIBS = $(shell pkg-config --libs jansson 2>/dev/null) -lm
PROV_LIBS = $(shell pkg-config --libs $(PROV_PKGS) 2>/dev/null) -pthread
UNIT_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lm -lcmocka

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Debian packages: to build, to run the tests, to benchmark.
DEB_BUILD := gcc make pkg-config libfuse3-dev fuse3 liburing-dev libmount-dev \
	libxxhash-dev libjansson-dev libyaml-dev libcurl4-openssl-dev \
	libmicrohttpd-dev
# containerd, runc, busybox-static and containernetworking-plugins: the
# Kubernetes node of the tests (tests/k8s/node.py).
DEB_TEST := $(DEB_BUILD) libcmocka-dev python3 python3-pytest python3-yaml \
	python3-jsonschema stress-ng dbench \
	fio util-linux e2fsprogs systemd \
	containerd runc busybox-static containernetworking-plugins
# The FUSE peer of the benchmarks is built from Debian's fuse3 source package
# with its own build system (bench/build-peer.sh).
DEB_BENCH := $(DEB_TEST) gnuplot-nox meson ninja-build g++ dpkg-dev pkgconf

# Each binary's sources, by folder: the folders are the processes and their
# parts (README.md, "Layout").  fs/common/ is linked by carvefs, carvectl and
# carve-provisioner; carvefs-keeper takes only the few modules it needs.
COMMON_SRCS := fs/common/log.c fs/common/quantity.c fs/common/volname.c \
	fs/common/wire.c fs/common/fileio.c fs/common/histogram.c \
	fs/common/promtext.c fs/common/httpd.c fs/common/walk.c \
	fs/common/clock.c fs/common/errmsg.c fs/common/k8sname.c fs/common/duration.c \
	fs/common/ctlclient.c fs/common/fdmsg.c

VFS_SRCS := fs/daemon/vfs/vfs.c fs/daemon/vfs/ops.c fs/daemon/vfs/inode.c \
	fs/daemon/vfs/meta.c fs/daemon/vfs/dir.c fs/daemon/vfs/file.c \
	fs/daemon/vfs/creds.c fs/daemon/vfs/handoff.c fs/daemon/vfs/record.c \
	fs/daemon/vfs/recover.c fs/daemon/vfs/recount.c fs/daemon/vfs/journal.c
# The daemon's modules with no FUSE, ring, network or clock: unit-tested.
DAEMON_PURE_SRCS := fs/daemon/table.c fs/daemon/quota.c fs/daemon/throttle.c \
	fs/daemon/volmetrics.c fs/daemon/ctlreply.c fs/daemon/pool.c \
	fs/daemon/vfs/crashstate.c fs/daemon/vfs/fhmap.c
DAEMON_SRCS := fs/daemon/main.c fs/daemon/ctlserver.c fs/daemon/control.c \
	fs/daemon/volume.c fs/daemon/keeperlink.c fs/daemon/handover.c \
	fs/daemon/uring.c fs/daemon/monitor.c $(VFS_SRCS) $(DAEMON_PURE_SRCS) \
	$(COMMON_SRCS)

# carvectl links only what a client needs: no FUSE, ring or HTTP server.
CTL_SRCS := fs/ctl/carvectl.c fs/common/quantity.c fs/common/volname.c \
	fs/common/wire.c fs/common/clock.c fs/common/errmsg.c fs/common/k8sname.c \
	fs/common/duration.c fs/common/ctlclient.c

# The keeper stays small: it must outlive every daemon it serves.
KEEPER_SRCS := fs/keeper/keeper.c fs/common/fdmsg.c fs/common/log.c \
	fs/common/volname.c fs/common/k8sname.c fs/common/errmsg.c

# The provisioner's modules with no network, mounts or clock: unit-tested.
PROV_PURE_SRCS := provisioner/config.c provisioner/pv.c provisioner/backoff.c \
	provisioner/yamlscalar.c provisioner/jpath.c provisioner/retryset.c \
	provisioner/growbuf.c \
	provisioner/metrics.c \
	provisioner/kube/kubeconfig.c \
	provisioner/dynamic/sizing.c provisioner/dynamic/dynspec.c
PROV_SRCS := provisioner/main.c provisioner/health.c \
	provisioner/kube/kube.c provisioner/kube/kwatch.c provisioner/kube/events.c \
	provisioner/static/discovery.c provisioner/static/cleaner.c \
	provisioner/dynamic/dynamic.c provisioner/dynamic/expand.c \
	provisioner/dynamic/nodecap.c provisioner/dynamic/storagecap.c \
	provisioner/sink/apisink.c provisioner/sink/dirsink.c \
	$(PROV_PURE_SRCS) $(COMMON_SRCS)

# Unit tests link every pure module; they include the private headers of
# the folders they test.
UNIT_LINK_SRCS := $(COMMON_SRCS) $(DAEMON_PURE_SRCS) $(PROV_PURE_SRCS)
UNIT_INC := -Ifs/daemon -Iprovisioner

# A binary's private headers are included relative to its folder's root.
dir_inc = $(if $(filter fs/daemon/%,$(1)),-Ifs/daemon)$(if $(filter provisioner/%,$(1)),-Iprovisioner)

obj = $(patsubst %.c,$(1)/obj/%.o,$(2))

BINS := $(BUILD)/carvefs $(BUILD)/carvefs-keeper $(BUILD)/carvectl $(BUILD)/carve-provisioner
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(SANBUILD)/tests/%,$(UNIT_SRCS))

.PHONY: all binaries check unit integration demo bench install clean \
	deps deps-test deps-bench k8s-control-plane

all: deps
	$(Q)$(MAKE) --no-print-directory binaries

binaries: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(call dir_inc,$<) -c -o $@ $<

$(BUILD)/carvefs: $(call obj,$(BUILD),$(DAEMON_SRCS))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(FS_LIBS)

$(BUILD)/carvefs-keeper: $(call obj,$(BUILD),$(KEEPER_SRCS))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/carvectl: $(call obj,$(BUILD),$(CTL_SRCS))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(CTL_LIBS)

$(BUILD)/carve-provisioner: $(call obj,$(BUILD),$(PROV_SRCS))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PROV_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(call obj,$(BUILD),$(UNIT_LINK_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(UNIT_INC) $(LDFLAGS) -o $@ $< $(filter %.o,$^) $(UNIT_LIBS)

# The inode table is tested on a real directory: no FUSE session or ring.
$(BUILD)/tests/test_inode: $(call obj,$(BUILD),fs/daemon/vfs/inode.c fs/daemon/vfs/record.c \
	fs/daemon/vfs/recount.c)

# The event loops are tested with a libfuse session over a pipe: no mount.
$(BUILD)/tests/test_uring: $(call obj,$(BUILD),fs/daemon/uring.c)

unit-binaries: $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

# The unit tests run in a separate ASan+UBSan build tree.
unit: deps-test
	$(Q)$(MAKE) --no-print-directory BUILD=$(SANBUILD) SANITIZE=address,undefined unit-binaries
	$(Q)set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# etcd, kube-apiserver and kube-controller-manager for the provisioner's
# tests, kubelet, kube-scheduler and pause for the node's; returns at once
# when they are cached.
k8s-control-plane: deps-test
	$(Q)bash tests/k8s/build-control-plane.sh

integration: deps-test k8s-control-plane
	$(Q)$(MAKE) --no-print-directory binaries
	$(Q)CARVEFS_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -p no:cacheprovider \
		-o console_output_style=classic -rsx tests/integration $(PYTEST_ARGS)

check: unit integration

demo: all
	$(Q)bash deploy/demo.sh $(abspath $(BUILD))

bench: deps-bench
	$(Q)$(MAKE) --no-print-directory binaries
	$(Q)bash bench/build-peer.sh
	$(Q)bash bench/run.sh $(abspath $(BUILD))

install: binaries
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 doc/*.8 $(DESTDIR)$(MANDIR)/man8/
	set -e; for u in deploy/systemd/*.service; do \
		sed 's|/usr/local/bin/|$(BINDIR)/|g' $$u >$(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}; \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${u##*/}; \
	done

clean:
	rm -rf build

# Installs what is missing, quietly, when root; otherwise names it.
define install_debs
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "missing Debian packages (run as root to install):" $$missing >&2; exit 1; \
		fi; \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$$missing >/dev/null; \
	fi
endef

deps:
	$(call install_debs,$(DEB_BUILD))
deps-test:
	$(call install_debs,$(DEB_TEST))
deps-bench:
	$(call install_debs,$(DEB_BENCH))

-include $(shell find build -name '*.d' 2>/dev/null)
