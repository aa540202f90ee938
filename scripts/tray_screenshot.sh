#!/usr/bin/env bash
# Screenshots of the tray app: a virtual X display (Xvfb) with a tray host (trayer), the tray app on
# the bundled sample clip, its menu, preview, enrolment and About windows, saved as PNGs.
#
#   scripts/tray_screenshot.sh OUT_DIR        (PYTHON=... to use another interpreter than .venv)
#
# Installs what is missing with apt-get (Xvfb, trayer, the xcb libraries Qt's X11 plugin needs).
set -euo pipefail

out=${1:?usage: scripts/tray_screenshot.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v trayer >/dev/null || need+=(trayer)
for pkg in libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 \
           libxcb-randr0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libfontconfig1 fonts-dejavu-core; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "tray_screenshot: installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Xvfb picks a free display number and writes it to fd 3 once it accepts connections.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" 2>"$work/xvfb.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
[ -s "$work/display" ] || { cat "$work/xvfb.log" >&2; echo "tray_screenshot: Xvfb did not start" >&2; exit 1; }
export DISPLAY=":$(cat "$work/display")"

trayer --edge top --align right --widthtype request --height 30 --padding 8 --SetDockType true \
       --SetPartialStrut true --transparent false 2>"$work/trayer.log" &
pids+=($!)
sleep 1  # trayer takes the system-tray selection shortly after it starts

mkdir -p "$work/runtime" && chmod 700 "$work/runtime"
XDG_RUNTIME_DIR="$work/runtime" QT_QPA_PLATFORM=xcb "$py" "$root/scripts/tray_screenshot.py" "$out"
