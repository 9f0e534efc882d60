#!/usr/bin/env bash
# System packages the browser tests need: Debian's Chromium and a CJK font.
# Installed only when missing and apt-get is usable; otherwise the browser tests skip and say why.
set -u
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
fc-list 2>/dev/null | grep -qi "wenquanyi\|wqy\|noto sans cjk" || need+=(fonts-wqy-microhei)
[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "Installing ${need[*]} for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" fontconfig) \
    >/tmp/kbqa-apt.log 2>&1 || echo "apt-get failed (see /tmp/kbqa-apt.log); browser tests will be skipped"
else
  echo "Missing ${need[*]} and no root apt-get: browser tests will be skipped"
fi
exit 0
