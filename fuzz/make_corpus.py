#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/corpus/<target>/.

Seeds are small valid files plus a few deliberately malformed ones, so the
fuzzers start from every branch of the parsers: PNG/BMP/PGM/PPM/GIF images
(written here with the standard library), JPEGs (fuzz/make_jpeg_seeds.c,
through stb_image_write), little- and big-endian TIFFs (8/16-bit, gray/RGB,
multi-strip, multi-page, thumbnail, WhiteIsZero, and rejected variants),
safetensors files (no checksum, so mutations are not all stopped by the
CRC), Oxford-IIIT Pet split lines and crfseg command lines.

Run from the repository root:  python3 fuzz/make_corpus.py
It is deterministic; the output is committed (total well under 300 KB).
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- images ----

def png(width, height, color_type, depth, rows, palette=None):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 per row
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bmp24(width, height):
    row = bytearray()
    for x in range(width):
        row += bytes([x * 40 & 255, 128, 255 - x * 40 & 255])
    row += b"\x00" * ((4 - len(row) % 4) % 4)
    pixels = bytes(row) * height
    header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def bmp8(width, height):
    palette = b"".join(bytes([i, i, i, 0]) for i in range(4))
    row = bytes([x % 4 for x in range(width)])
    row += b"\x00" * ((4 - len(row) % 4) % 4)
    pixels = row * height
    offset = 54 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 8, 0, len(pixels), 2835, 2835, 4, 0)
    return header + info + palette + pixels


def images():
    t = "fuzz_image"
    w, h = 5, 4
    write(t, "png_gray8.png", png(w, h, 0, 8, [bytes((x * 50 + y) & 255 for x in range(w)) for y in range(h)]))
    write(t, "png_gray16.png", png(w, h, 0, 16, [b"".join(struct.pack(">H", x * 13000 + y) for x in range(w))
                                                  for y in range(h)]))
    write(t, "png_rgb8.png", png(w, h, 2, 8, [bytes((x * 50 + c * 80) & 255 for x in range(w) for c in range(3))
                                              for _ in range(h)]))
    write(t, "png_rgba8.png", png(w, h, 6, 8, [bytes((x * 50 + c * 60) & 255 for x in range(w) for c in range(4))
                                               for _ in range(h)]))
    write(t, "png_gray_alpha8.png", png(w, h, 4, 8, [b"".join(bytes([x * 50, 200]) for x in range(w))
                                                     for _ in range(h)]))
    write(t, "png_palette.png", png(w, h, 3, 8, [bytes(x % 3 for x in range(w)) for _ in range(h)],
                                    palette=b"\x00\x00\x00\xff\x00\x00\x00\xff\x00"))
    write(t, "png_rgb16.png", png(2, 2, 2, 16, [b"\x12\x34\x56\x78\x9a\xbc" * 2] * 2))
    write(t, "bmp24.bmp", bmp24(w, h))
    write(t, "bmp8_topdown.bmp", bmp8(w, h))
    write(t, "pgm8.pgm", b"P5\n5 4\n255\n" + bytes(range(0, 200, 10)))
    write(t, "pgm16.pgm", b"P5\n# a comment\n3 2\n65535\n" + b"".join(struct.pack(">H", v * 9000) for v in range(6)))
    write(t, "ppm8.ppm", b"P6\n2 2\n255\n" + bytes(range(12)))
    write(t, "pgm_ascii.pgm", b"P2\n2 2\n255\n0 1\n2 3\n")  # ASCII netpbm: stb rejects it
    write(t, "gif_1x1.gif", bytes.fromhex("4749463839610100010080000000000000ffffff21f90401000000002c00000000"
                                          "010001000002024401003b"))
    write(t, "tiff_gray8.tif", tiff([gray_page(3, 2, 8)], big_endian=False))
    write(t, "tiff_rgb16_be.tif", tiff([rgb_page(2, 2, 16)], big_endian=True))
    write(t, "empty.bin", b"")
    write(t, "png_truncated.png", png(w, h, 0, 8, [bytes(w)] * h)[:40])
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_jpeg_seeds.c")
        exe = os.path.join(tmp, "make_jpeg_seeds")
        cc = os.environ.get("CC", "cc")
        try:
            subprocess.run([cc, "-O1", src, "-o", exe, "-lm"], check=True)
            subprocess.run([exe, os.path.join(ROOT, t)], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"make_corpus: no JPEG seeds ({e}); install a C compiler and libstb-dev", file=sys.stderr)


# ------------------------------------------------------------------ TIFF ----
# A page is a list of (tag, type, values) entries plus its strips' bytes; the
# writer lays out strips, out-of-line values and IFDs, in the given order.

BYTE, SHORT, LONG, RATIONAL, DOUBLE = 1, 3, 4, 5, 12
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 12: 8}


def page(width, height, spp, bits, photometric, rows_per_strip=None, extra=(), sample=lambda i: i * 37,
         offsets_type=LONG, subfile=None):
    rps = rows_per_strip or height
    bps = bits // 8
    strips = []
    for y0 in range(0, height, rps):
        n = min(rps, height - y0) * width * spp
        strips.append(b"".join((sample(y0 * width * spp + i) & (255 if bps == 1 else 65535)).to_bytes(bps, "little")
                               for i in range(n)))
    entries = []
    if subfile is not None:
        entries.append((254, LONG, [subfile]))
    entries += [(256, LONG, [width]), (257, SHORT, [height]), (258, SHORT, [bits] * spp), (259, SHORT, [1]),
                (262, SHORT, [photometric]), (273, offsets_type, None), (277, SHORT, [spp]),
                (278, LONG, [rps]), (279, LONG, [len(s) for s in strips]), (284, SHORT, [1])]
    entries += list(extra)
    return {"entries": sorted(entries, key=lambda e: e[0]), "strips": strips, "bps": bps}


def gray_page(width, height, bits, **kw):
    return page(width, height, 1, bits, 1, **kw)


def rgb_page(width, height, bits, **kw):
    return page(width, height, 3, bits, 2, **kw)


def tiff(pages, big_endian=False, loop=False):
    e = ">" if big_endian else "<"
    out = bytearray((b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 0))
    next_ptr = 4
    first_ifd = None
    for p in pages:
        offsets = []
        for s in p["strips"]:
            if len(out) % 2:
                out += b"\x00"
            offsets.append(len(out))
            if p["bps"] == 2 and big_endian:  # samples in the file's byte order
                s = b"".join(s[i:i + 2][::-1] for i in range(0, len(s), 2))
            out += s
        resolved = []
        for tag, typ, values in p["entries"]:
            resolved.append((tag, typ, offsets if values is None else values))
        blobs = {}
        for tag, typ, values in resolved:
            body = pack_values(e, typ, values)
            if len(body) > 4:
                if len(out) % 2:
                    out += b"\x00"
                blobs[tag] = len(out)
                out += body
        if len(out) % 2:
            out += b"\x00"
        ifd = len(out)
        first_ifd = ifd if first_ifd is None else first_ifd
        struct.pack_into(e + "I", out, next_ptr, ifd)
        out += struct.pack(e + "H", len(resolved))
        for tag, typ, values in resolved:
            body = pack_values(e, typ, values)
            field = struct.pack(e + "I", blobs[tag]) if len(body) > 4 else body.ljust(4, b"\x00")
            out += struct.pack(e + "HHI", tag, typ, len(values)) + field
        next_ptr = len(out)
        out += struct.pack(e + "I", 0)
    if loop:
        struct.pack_into(e + "I", out, next_ptr, first_ifd)
    return bytes(out)


def pack_values(e, typ, values):
    if typ == RATIONAL:
        return b"".join(struct.pack(e + "II", n, d) for n, d in values)
    if typ == DOUBLE:
        return b"".join(struct.pack(e + "d", v) for v in values)
    fmt = {BYTE: "B", SHORT: "H", LONG: "I"}[typ]
    return b"".join(struct.pack(e + fmt, v) for v in values)


def tiffs():
    t = "fuzz_tiff"
    write(t, "le_gray8.tif", tiff([gray_page(4, 3, 8)]))
    write(t, "be_gray8.tif", tiff([gray_page(4, 3, 8)], big_endian=True))
    write(t, "le_gray16_strips.tif", tiff([gray_page(3, 5, 16, rows_per_strip=2)]))
    write(t, "be_gray16_strips.tif", tiff([gray_page(3, 5, 16, rows_per_strip=2)], big_endian=True))
    write(t, "le_rgb8.tif", tiff([rgb_page(3, 2, 8)]))
    write(t, "be_rgb16.tif", tiff([rgb_page(2, 3, 16, rows_per_strip=1)], big_endian=True))
    write(t, "le_rgba8.tif", tiff([page(2, 2, 4, 8, 2, extra=[(338, SHORT, [2])])]))
    write(t, "le_gray_alpha8.tif", tiff([page(2, 2, 2, 8, 1, extra=[(338, SHORT, [1])])]))
    write(t, "le_white_is_zero.tif", tiff([page(3, 3, 1, 8, 0)]))
    write(t, "le_multipage3.tif", tiff([gray_page(3, 2, 8), gray_page(2, 2, 8), gray_page(4, 1, 8)]))
    write(t, "be_multipage_mixed.tif", tiff([gray_page(2, 2, 16), rgb_page(2, 1, 8)], big_endian=True))
    write(t, "le_thumbnail_then_page.tif", tiff([gray_page(1, 1, 8, subfile=1), gray_page(3, 3, 8, subfile=0)]))
    write(t, "le_short_offsets.tif", tiff([gray_page(2, 4, 8, rows_per_strip=1, offsets_type=SHORT)]))
    write(t, "le_with_resolution.tif", tiff([gray_page(2, 2, 8, extra=[(282, RATIONAL, [(72, 1)]),
                                                                       (283, RATIONAL, [(72, 1)]),
                                                                       (296, SHORT, [2])])]))
    write(t, "le_sampleformat_float.tif", tiff([gray_page(2, 2, 8, extra=[(339, SHORT, [3])])]))
    lzw = gray_page(2, 2, 8)
    lzw["entries"] = [(tag, typ, [5] if tag == 259 else v) for tag, typ, v in lzw["entries"]]
    write(t, "le_lzw_rejected.tif", tiff([lzw]))
    write(t, "le_tiled_rejected.tif", tiff([gray_page(2, 2, 8, extra=[(322, SHORT, [16]), (323, SHORT, [16])])]))
    write(t, "le_loop.tif", tiff([gray_page(2, 2, 8), gray_page(2, 2, 8)], loop=True))
    write(t, "le_truncated.tif", tiff([gray_page(8, 8, 8)])[:60])
    write(t, "bigtiff_header.tif", b"II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00")


# ----------------------------------------------------------- safetensors ----

def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    import json
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensor_seeds():
    t = "fuzz_safetensors"
    f32 = struct.pack("<6f", *[0.5 * i for i in range(6)])
    write(t, "f32_2x3.safetensors", safetensors([("weight", "F32", [2, 3], f32)]))
    write(t, "mixed_dtypes.safetensors", safetensors([
        ("a.f64", "F64", [2], struct.pack("<2d", 1.0, -2.5)),
        ("b.i32", "I32", [3], struct.pack("<3i", 1, -2, 3)),
        ("c.i64", "I64", [1, 1], struct.pack("<q", 1 << 40)),
        ("d.u8", "U8", [4], bytes([0, 1, 254, 255])),
    ], metadata={"step": "12", "format": "pt"}))
    write(t, "scalar_and_empty.safetensors", safetensors([
        ("scalar", "F32", [], struct.pack("<f", 3.0)),
        ("empty", "F32", [0, 4], b""),
    ]))
    write(t, "metadata_only.safetensors", safetensors([], metadata={"note": "caf\u00e9 \u2603", "esc": "a\"b\\n"}))
    write(t, "unpadded.safetensors", safetensors([("x", "U8", [3], b"abc")], pad=False))
    write(t, "f16.safetensors", safetensors([("h", "F16", [2], b"\x00\x3c\x00\x40")]))  # 1.0, 2.0
    write(t, "gap_rejected.safetensors", safetensors([("x", "U8", [2], b"ab")])[:-1] + b"")
    hdr = b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
    write(t, "duplicate_rejected.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\x00" * 8)
    write(t, "huge_header_len.safetensors", struct.pack("<Q", 1 << 62) + b"{}")
    hdr = b'{"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}'
    write(t, "overflow_shape.safetensors", struct.pack("<Q", len(hdr)) + hdr)
    hdr = b'{"n":{"dtype":"I64","shape":[1e3, -1],"data_offsets":[0,8]}}'
    write(t, "bad_numbers.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\x00" * 8)
    hdr = b'{"__metadata__":{"a":"\\ud83d\\ude00","b":"\\u0000"},"z":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    write(t, "unicode_escapes.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\x07")


# ----------------------------------------------------- text and argv ----

def pets():
    t = "fuzz_pets_split"
    write(t, "trainval.txt", "Abyssinian_100 1 1 1\nAbyssinian_101 1 1 1\nyorkshire_terrier_99 37 2 25\n")
    write(t, "list_with_comments.txt", "#Image CLASS-ID SPECIES BREED ID\n#ID: 1:37 Class ids\n"
                                       "Abyssinian_1 1 1 1\n\nBengal_12 6 1 6\n")
    write(t, "crlf_tabs.txt", "Bombay_1\t8\t1\t8\r\n   \r\nboxer_2 10 2 4\r\n")
    write(t, "bad_stem.txt", "../images/evil 1 1 1\n")
    write(t, "only_comments.txt", "# nothing here\n\n")


def argv():
    t = "fuzz_args"
    commands = {"info": 0, "train": 1, "eval": 2, "predict": 3}
    examples = [
        ("info", ["--encoder", "unet", "--base", "8", "--depth", "2", "--crf", "--crf-mode", "dense"]),
        ("info", ["--encoder=resnet50", "--imagenet-norm", "--in-channels", "3", "--size=224"]),
        ("train", ["--data", "synth:16", "--epochs", "2", "--batch", "4", "--lr", "1e-3", "--crf",
                   "--crf-weights", "3,5", "--synth-classes", "3", "--synth-size", "32"]),
        ("train", ["--data=pets:/data/pets", "--pets-border", "ignore", "--val-fraction", "0.1", "--schedule", "step",
                   "--step-size", "5", "--gamma", "0.5", "--augment", "full", "--resume"]),
        ("train", ["--data", "microct:/d/ct", "--microct-context", "2", "--encoder", "vgg16_bn", "--up", "bilinear",
                   "--crf-theta-alpha", "80", "--crf-theta-beta", "13", "--crf-theta-gamma", "3"]),
        ("train", ["--data", "folder:/d/f", "--channels", "1", "--optimizer", "sgd", "--momentum", "0.9"]),
        ("eval", ["--checkpoint", "runs/best.safetensors", "--split", "val", "--size", "0", "--pictures", "4"]),
        ("eval", ["--checkpoint=x", "--data", "synth", "--seed", "7", "--crf-eval-iters", "10"]),
        ("predict", ["--checkpoint", "c.safetensors", "--raw-mask", "a.png", "b.jpg", "--size", "128"]),
        ("train", ["--help"]),
        ("train", ["--epochs"]),
        ("eval", ["--nope", "1"]),
        ("train", ["--lr", "nan", "--batch", "99999999999999999999999", "--data", "synth:-3"]),
    ]
    for i, (cmd, args) in enumerate(examples):
        write(t, f"{i:02d}_{cmd}.argv", bytes([commands[cmd]]) + b"\x00".join(a.encode() for a in args))


# Inputs that crashed a target once (see README "Fuzzing"), kept as seeds so
# every run replays them first.
REGRESSIONS = {
    ("fuzz_image", "regress_jpeg_dht_257_codes.jpg"):
        "/9j/4AAQSkZJRgABAQAAAQABAAD/2wCEAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgoBAgICAgICBQMDBQoHBgcKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCv/AABEIAAYACAMBEQACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUGBwgJCgsQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2NzhHSUY4OWEBAAEAgAAAAAAAOTpDREVGR0hJSlNUVVZXWFlaY2RlZmdoaWpzdHV2d3h5eoOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbXAP///yH5BAEAAAAALAAAAADY2drh4uPk5ebn6Onq8fLz9PX29/j5+gEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoLEQACAQIEBAEAAQAAAgJEAQADBDsHBQQEAAECdwABAgMRBAUhMQYSQVEHYXETIjKBCBRCkaGxwQkjM1LwFWJy0QoWJDThJfEXGBkaJicoKSo1Njc4OTpDREVGR0gKFhcYGRolJicoKSo0NWdoaWpzdHV2d3h5",
    ("fuzz_image", "regress_jpeg_only_fill_bytes.jpg"): "/9j//////////w==",
    ("fuzz_image", "regress_png_idat_2gb.png"):
        "iVBORw0KGgoAAAANSUhEUgAAAAUAAAAECAIAAADJUWIXAAAAHElEQVR42mOj96ef1HQpZQvLtGdmJyQxGEjkA1N0OXRHSUY4N2EAABxJREFU/9j/4AAQSkZJRgABAQAAAQABAAD/jQQDAgICAgU5dHlwZV8XAAAAHElEQVT/2P/gABBKRklGAAEBAAABAAEAAP/bBAMCAgICBQQEAwQGBQYGBgUGBgYHDQgGBwkHBgYICwgJMAoKCgoKBggLDAsKDAkKCgoBAgICAgICBQMDBQoHBgcKCgoKCgoKCgoKCgoKCgoKYAoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCv/AABEIAAb3CAMBEQACEQEDEQH/xAGiAAABBQEBAQEBAQAAAAAAAAAAAQIDBAUBAQEBAQEBAQAAAACqvspVJU51K3s5Sh7VxqRje6Pk50v+IdeCNCP1J0vaR/5d4TDyjGtBSXJOM61WUU2Kx00AAAAAAAAAADkoAAAABQAAAAQAAAABAAUAAAICr3hSUltSUlJSUlJSUlJSUlJSUlKAh18AjOP7ynUw8VGSjJI//9k=",
    ("fuzz_image", "regress_pnm_int_overflow.ppm"):
        "UDYKNSA0CjI1NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NooyPERQWpagqrS+",
    ("fuzz_safetensors", "regress_empty_noncontiguous.safetensors"):
        "SgAAAAAAAAB7InQiOnsiZHR5cGUiOiJGMzIiLCJzaGFwZSI6WzkyMjMsNzIwMzY4NTA3NzU4MDgsMF0sImRhdGFfb2Zmc2V0cyI6WzAsMF19fQ==",
}


def regressions():
    import base64
    for (target, name), data in REGRESSIONS.items():
        write(target, name, base64.b64decode(data))


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    images()
    tiffs()
    safetensor_seeds()
    pets()
    argv()
    regressions()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    count = sum(len(fs) for _, _, fs in os.walk(ROOT))
    print(f"make_corpus: {count} seeds, {total} bytes in {ROOT}")


if __name__ == "__main__":
    main()
