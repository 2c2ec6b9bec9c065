#!/bin/sh
# Sets up a fresh Debian 12 machine and builds smlp in place:
# installs the Debian packages it needs (when run as root), then
# bootstrap, configure and make.  Extra arguments go to configure.
set -e
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        build-essential autoconf automake libtool pkg-config \
        libuv1-dev libopenblas-dev libjansson-dev zlib1g-dev check \
        flatbuffers-compiler python3 libopenmpi-dev openmpi-bin >/dev/null
fi
./bootstrap
if [ ! -f Makefile ] || [ configure -nt Makefile ] || [ $# -gt 0 ]; then
    ./configure "$@"
fi
make -j"$(nproc)"
