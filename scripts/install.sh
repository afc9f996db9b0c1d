#!/usr/bin/env bash
# One install path for `make demo`, `make test`, CI and the Vagrant box: idempotent, and it does
# nothing that is already done (a second run costs a few dpkg/pip look-ups).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(mininet containernetworking-plugins bridge-utils iputils-ping iproute2 iptables nftables
          ethtool openvswitch-switch python3-venv python3-yaml python3-setuptools procps util-linux curl
          dnsmasq-base bind9-dnsutils frr conntrack jq nginx graphviz tcpdump
          chromium chromium-driver python3-selenium  # lab web's browser tests
          clang bpftool libbpf-dev)                  # `cluster.proxy: ebpf` (docs/EBPF.md)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The lab runs nginx in its own ingress pods; the distribution's web server on the machine's port
  # 80, which the package starts where a service manager runs, is not wanted: stop what we installed.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

# `lab exercise submit` runs a student's submission as an unprivileged user of its own (never a
# shared one such as nobody, which the lab's dnsmasq runs as): docs/INSTRUCTORS.md.
if ! id -u lab-student >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lab-student
fi
# The instructor's files are root's alone (git keeps no read bits: a clone makes them 0644).
find exercises tests/data/exercises -name solution.sh -exec chmod go-rwx {} + \
     -o -name SOLUTION.md -exec chmod go-rwx {} + -o -name .solution -prune -exec chmod -R go-rwx {} + 2>/dev/null || true

# Mininet's module lives in Debian's python3: the venv must be built from /usr/bin/python3 with
# --system-site-packages (a pyenv `python3` shim does not have it).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mininet' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Open vSwitch (`switch: ovs`, cloud-routes): the package's service starts it where a service manager
# runs; without one (a container, no systemd) start it here, once. Left alone when already running.
ovs_ctl=/usr/share/openvswitch/scripts/ovs-ctl
if [ -x "$ovs_ctl" ] && ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
  echo "starting Open vSwitch ($ovs_ctl start): no service manager runs it"
  "$ovs_ctl" start --system-id=random >/dev/null || echo "warning: Open vSwitch did not start; topologies with switch: ovs will not run" >&2
fi
