#!/usr/bin/env bash
# Installs the real tools the test suite checks against, from Debian's packages:
# promtool and prometheus, amtool, blackbox_exporter (unpacked into DIR, no services
# started) and chromium (installed, for the status page test).
set -euo pipefail
dir=${1:?usage: tools.sh DIR}
mkdir -p "$dir/bin" "$dir/debs"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
(
  cd "$dir/debs"
  apt-get download -qq prometheus prometheus-alertmanager prometheus-blackbox-exporter
  for deb in ./*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
)
for tool in prometheus promtool amtool prometheus-blackbox-exporter; do
  ln -sf "$dir/root/usr/bin/$tool" "$dir/bin/$tool"
done
ln -sf "$dir/root/usr/bin/prometheus-alertmanager" "$dir/bin/alertmanager"
# Debian's alertmanager reads its default templates from /usr/share at start-up.
templates=/usr/share/prometheus/alertmanager
for file in "$dir/root$templates"/*.tmpl; do
  target="$templates/$(basename "$file")"
  [ -f "$target" ] || $sudo install -D -m 0644 "$file" "$target"
done
if ! command -v chromium >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
"$dir/bin/promtool" --version | head -1
chromium --version
