#!/usr/bin/env bash
# Installs the Debian packages Lifeboat and its tests need. Idempotent: packages already
# installed are skipped, so a second run costs a dpkg query and nothing else.
set -euo pipefail

PACKAGES=(
  qemu-utils            # qemu-img, qemu-nbd, qemu-io: the oracle of the qcow2 and NBD formats
  qemu-system-x86       # QEMU for test domains (TCG is enough)
  libnbd-bin            # nbdinfo, nbdcopy: NBD reference tools
  nbdkit                # a second NBD server for protocol tests
  libvirt-daemon-system # libvirtd + virtlogd
  libvirt-clients       # virsh
  radosgw ceph-mon ceph-osd # Ceph RGW: the S3 server of the tests
  postgresql            # the catalog's server database in tests
  jq curl procps psmisc util-linux e2fsprogs xfsprogs # xfsprogs: xfs_io seek, the hole map of raw files
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Ceph pulls in a lot through recommends; none of it is needed for a one-node memstore cluster.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
