#!/usr/bin/env bash
# Feeds the crfseg program every bad input we know of and prints a markdown
# table of what it answered (the README's "Bad inputs" table is its output).
# Each case must end with exit code 1 (error) or 2 (usage), never a crash or
# a signal, and the good checkpoint made at the start must stay
# byte-identical through all of them; the script fails otherwise.
#   scripts/bad_inputs.sh [path/to/crfseg]     (default: build/tools/crfseg)
set -euo pipefail
cd "$(dirname "$0")/.."
CRFSEG=$(realpath "${1:-build/tools/crfseg}")
T=$(mktemp -d)
trap 'umount "$T/full" 2>/dev/null || true; rm -rf "$T"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
tiny=(--data synth:16 --synth-size 16 --size 16 --base 4 --depth 2 --batch 4 --quiet --workers 0)
"$CRFSEG" train "${tiny[@]}" --epochs 1 --out "$T/run" >/dev/null
good="$T/run/last.safetensors"
good_sum=$(sha256sum "$good" | cut -d' ' -f1)

# Files for the cases, written with Python's standard library only.
python3 - "$T" "$good" <<'PY'
import os, struct, sys, zlib
t, good = sys.argv[1], sys.argv[2]
def png(path, w, h, channels, value):
    color = {1: 0, 3: 2}[channels]
    row = bytes([0]) + bytes([value % 256]) * (w * channels)
    raw = row * h
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(path, "wb").write(data)
def folder(name, pairs):
    for sub in ("images", "masks"):
        os.makedirs(f"{t}/{name}/{sub}", exist_ok=True)
    for stem, (iw, ih, mw, mh, mval) in pairs.items():
        png(f"{t}/{name}/images/{stem}.png", iw, ih, 3, 100)
        png(f"{t}/{name}/masks/{stem}.png", mw, mh, 1, mval)
folder("sizes", {"a": (16, 16, 16, 16, 1), "b": (16, 16, 12, 16, 0)})
folder("truncpng", {"a": (16, 16, 16, 16, 1), "b": (16, 16, 16, 16, 0)})
b = open(f"{t}/truncpng/images/b.png", "rb").read()
open(f"{t}/truncpng/images/b.png", "wb").write(b[: len(b) // 2])
folder("empty", {})
os.makedirs(f"{t}/notimage", exist_ok=True)
open(f"{t}/notimage/photo.png", "wb").write(b"this is not a picture\n")
ck = open(good, "rb").read()
open(f"{t}/truncated.safetensors", "wb").write(ck[: len(ck) // 2])
flipped = bytearray(ck); flipped[-100] ^= 0x10
open(f"{t}/flipped.safetensors", "wb").write(bytes(flipped))
open(f"{t}/rekeyed.safetensors", "wb").write(ck.replace(b"crfseg.crc32c", b"crfsef.crc32c", 1))
open(f"{t}/random.safetensors", "wb").write(os.urandom(64))
open(f"{t}/empty.safetensors", "wb").write(b"")
hdr = b'{"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4000000000000]}}'
open(f"{t}/huge.safetensors", "wb").write(struct.pack("<Q", len(hdr)) + hdr)
os.makedirs(f"{t}/pets/images", exist_ok=True); os.makedirs(f"{t}/pets/annotations/trimaps", exist_ok=True)
png(f"{t}/pets/images/cat_1.jpg", 8, 8, 3, 50)  # a PNG named .jpg: accepted (content decides)
png(f"{t}/pets/annotations/trimaps/cat_1.png", 8, 8, 1, 1)
png(f"{t}/pets/images/cat_2.jpg", 8, 8, 3, 60)
png(f"{t}/pets/annotations/trimaps/cat_2.png", 8, 8, 1, 2)
open(f"{t}/pets/annotations/trainval.txt", "w").write("cat_1 1 1 1\ncat_2 1 1 1\n../../etc/passwd 1 1 1\n")
open(f"{t}/pets/annotations/test.txt", "w").write("cat_1 1 1 1\n")
os.makedirs(f"{t}/ct/images", exist_ok=True); os.makedirs(f"{t}/ct/labels", exist_ok=True)
for z in range(3):
    png(f"{t}/ct/images/s{z}.png", 8, 8, 1, 10)
open(f"{t}/ct/labels/labels.tif", "wb").write(b"II*\x00\x08\x00\x00\x00\x01\x00\x03\x01\x03\x00\x01\x00\x00\x00\x05\x00")
PY

rows=()
fail=0
# bad DESCRIPTION -- ARGS...: runs crfseg ARGS and records one table row.
bad() {
  local what=$1; shift 2
  local code=0 out
  out=$(cd "$T" && "$CRFSEG" "$@" 2>&1 >/dev/null) || code=$?
  local msg
  msg=$(printf '%s\n' "$out" | { grep -E "^crfseg" || true; } | tail -1 | sed "s#$T/#T/#g; s#$T#T#g; s/|/\\\\|/g")
  [ -n "$msg" ] || msg=$(printf '%s\n' "$out" | tail -1)
  local cmd="crfseg $*"
  cmd=${cmd//$T\//T/}
  if [ "$code" -ne 1 ] && [ "$code" -ne 2 ]; then
    echo "FAIL: '$what' exited with $code: $out" >&2
    fail=1
  fi
  if [ "$(sha256sum "$good" | cut -d' ' -f1)" != "$good_sum" ]; then
    echo "FAIL: '$what' changed $good" >&2
    fail=1
  fi
  rows+=("| $what | \`$cmd\` | $code | $msg |")
}

run=(--out "$T/run")
bad "checkpoint truncated to half" -- eval --checkpoint "$T/truncated.safetensors" --data synth:16
bad "checkpoint with one flipped bit" -- eval --checkpoint "$T/flipped.safetensors" --data synth:16
bad "checkpoint whose checksum key is damaged" -- eval --checkpoint "$T/rekeyed.safetensors" --data synth:16
bad "64 random bytes as a checkpoint" -- eval --checkpoint "$T/random.safetensors" --data synth:16
bad "empty file as a checkpoint" -- predict --checkpoint "$T/empty.safetensors" "$T/notimage"
bad "header declaring a 4 TB tensor" -- eval --checkpoint "$T/huge.safetensors" --data synth:16
bad "missing checkpoint" -- eval --checkpoint "$T/nope.safetensors"
bad "--resume with no checkpoint" -- train "${tiny[@]}" --resume --out "$T/fresh"
bad "--resume with another --data" -- train "${tiny[@]}" --data synth:32 --resume "${run[@]}"
bad "a run directory that already holds a run" -- train "${tiny[@]}" "${run[@]}"
bad "a non-image file to predict" -- predict --checkpoint "$good" "$T/notimage/photo.png"
bad "a missing dataset folder" -- train "${tiny[@]}" --data folder:"$T/nowhere" --out "$T/o1"
bad "an image folder with no pairs" -- train "${tiny[@]}" --data folder:"$T/empty" --out "$T/o2"
bad "an image and mask of different sizes" -- train --data folder:"$T/sizes" --size 0 --batch 2 --base 4 --depth 2 --quiet --workers 0 --out "$T/o3"
bad "a truncated PNG in the data" -- train --data folder:"$T/truncpng" --size 16 --batch 2 --base 4 --depth 2 --quiet --workers 2 --out "$T/o4"
bad "an Oxford-IIIT Pet split line naming a path outside images/" -- train "${tiny[@]}" --data pets:"$T/pets" --out "$T/o5"
bad "a truncated TIFF label volume" -- train "${tiny[@]}" --data microct:"$T/ct" --out "$T/o6"
bad "an unknown data kind" -- train --data coco:"$T/coco" --out "$T/o7"
bad "a malformed number" -- train --lr fast --out "$T/o8"
bad "an out-of-range value" -- train --batch 0 --out "$T/o9"
bad "an unknown option" -- train --epocs 3 --out "$T/o10"
bad "a missing option value" -- train --out
bad "an unknown encoder" -- train "${tiny[@]}" --encoder alexnet --out "$T/o11"
bad "--device cuda on a machine without a GPU" -- train "${tiny[@]}" --device cuda --out "$T/o12"
bad "a diverging run (--lr 1e6)" -- train "${tiny[@]}" --epochs 2 --optimizer sgd --momentum 0 --lr 1e6 --checkpoint-every 1 --out "$T/o13"
bad "an output folder that cannot be created" -- train "${tiny[@]}" --out /proc/crfseg
if mkdir -p "$T/full" && mount -t tmpfs -o size=64k tmpfs "$T/full" 2>/dev/null; then
  bad "a full disk (64 KiB tmpfs) at the first checkpoint" -- train "${tiny[@]}" --base 16 --epochs 1 --out "$T/full/run"
  umount "$T/full"
else
  echo "note: cannot mount a tmpfs here; the full-disk case is left out" >&2
fi

echo "| Bad input | Command | Exit | Message |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $fail
