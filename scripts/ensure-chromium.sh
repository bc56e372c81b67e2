#!/bin/sh
# ensure-chromium.sh: the consent-page browser test (tests/browser_test.go)
# needs Debian's Chromium at /usr/bin/chromium. Install it when missing and
# running as root; otherwise say how, and let the test fail.
set -eu
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "ensure-chromium: installing chromium (apt-get)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	exit 0
fi
echo "ensure-chromium: /usr/bin/chromium is missing; install it (apt-get install chromium) or the browser test fails" >&2
