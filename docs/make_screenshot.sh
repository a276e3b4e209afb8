#!/usr/bin/env bash
# Screenshot of the real player window under Xvfb, plus a short GIF recorded with G.
# Needs: xvfb, xdotool, imagemagick (Debian: apt-get install xvfb xdotool imagemagick).
# Usage: docs/make_screenshot.sh [WORLD] [PROMPT]   -> docs/player.png, docs/player.gif
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD="${1:-coinrun}"
PROMPT="${2:-}"
OUT_DIR="$(mktemp -d)"
DISPLAY_NUM=":97"

Xvfb "$DISPLAY_NUM" -screen 0 1024x768x24 >/dev/null 2>&1 &
XVFB_PID=$!
trap 'kill "$XVFB_PID" 2>/dev/null || true' EXIT
sleep 1
export DISPLAY="$DISPLAY_NUM"

python -m genie_play play ${PROMPT:+"$PROMPT"} --world "$WORLD" --seed 0 --record-dir "$OUT_DIR" --record-fps 4 &
PLAY_PID=$!

WIN=""
for _ in $(seq 1 120); do  # wait for the window (the world loads on the worker thread)
  # xdotool search --name misses pygame's window under Xvfb; xwininfo finds it by title.
  WIN="$(xwininfo -root -tree 2>/dev/null | awk '/"genie-play/ {print $1; exit}')"
  [ -n "$WIN" ] && break
  sleep 0.5
done
[ -n "$WIN" ] || { echo "the player window did not appear" >&2; exit 1; }
sleep 15  # first frame (slow on a CPU)

press() { xdotool key --window "$WIN" "$1"; sleep "${2:-3}"; }
press g 1                     # start recording
for k in 2 2 2 1 1 3 2 2; do  # a few actions; each frame may take seconds on a CPU
  press "$k"
done
import -window root "$OUT_DIR/root.png"
geometry="$(xwininfo -id "$WIN" | awk '/Absolute upper-left X/ {x=$NF} /Absolute upper-left Y/ {y=$NF} /Width/ {w=$NF} /Height/ {h=$NF} END {print w "x" h "+" x "+" y}')"
convert "$OUT_DIR/root.png" -crop "$geometry" +repage docs/player.png
press g 3                     # stop: the GIF is written into $OUT_DIR
press Escape 2
wait "$PLAY_PID" || true
cp "$(ls -t "$OUT_DIR"/genie_play*.gif | head -n 1)" docs/player.gif
echo "wrote docs/player.png and docs/player.gif"
