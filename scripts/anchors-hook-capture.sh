#!/usr/bin/env bash
# scripts/anchors-hook.sh with a PacketCapture of every pod that matches none of the harness's traffic: the
# datapath cost of an idle capture, as its own variant next to `porin` in one run
# (`--hook porin=scripts/anchors-hook.sh --hook porin-cap=scripts/anchors-hook-capture.sh`).
PORIN_HOOK_CAPTURE=nomatch exec "$(dirname "$0")/anchors-hook.sh" "$@"
