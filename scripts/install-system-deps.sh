#!/usr/bin/env bash
# Installs the Debian packages of the real servers the tests start (Kannel, Dovecot, swaks),
# the browser of the console tests (Chromium, driven by Playwright), systemd-analyze (from
# systemd) that checks the units in deploy/, and pg_dump/pg_restore (postgresql-client)
# of the backup test.
# Skips apt entirely when everything is already there.
set -euo pipefail
packages=(kannel kannel-extras dovecot-imapd swaks libnet-ssleay-perl openssl chromium systemd postgresql-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing ${missing[*]} (real servers and browser for the tests)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system-wide daemons we do not use; the tests run their own copies.
for svc in kannel dovecot; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
