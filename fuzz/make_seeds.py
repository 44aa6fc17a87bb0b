#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (seeds/<target>/) in each target's input
layout (see the `//!` of fuzz_targets/<target>.rs), from the golden vectors in
vault-core/tests/vectors/ and the real files in seed-sources/. Run from this directory:

    python3 make_seeds.py [TARGET...]

Standard library only. The seed directories of the targets named (default: all) are
replaced.
"""

import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vault-core", "tests", "vectors")
SOURCES = os.path.join(HERE, "seed-sources")
SEEDS = os.path.join(HERE, "seeds")


def cases(path):
    """The `key = value` blocks of a vector file."""
    out, fields = [], {}
    with open(path) as f:
        for line in f.read().splitlines() + [""]:
            if line.startswith("#"):
                continue
            if not line.strip():
                if fields:
                    out.append(fields)
                    fields = {}
                continue
            k, v = line.split("=", 1)
            fields[k.strip()] = v.strip()
    return out


def vector(*parts):
    return cases(os.path.join(VECTORS, *parts))


def short(b: bytes) -> bytes:
    assert len(b) < 256
    return bytes([len(b)]) + b


def long(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def i64(n: int) -> bytes:
    return struct.pack(">q", n)


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


# ---- CBOR as serde + ciborium write it ----


def cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for extra, fmt in [(24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")]:
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | extra]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor(value) -> bytes:
    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)
    if isinstance(value, bytes):
        return cbor_head(2, len(value)) + value
    if isinstance(value, str):
        return cbor_head(3, len(value.encode())) + value.encode()
    if isinstance(value, list):
        return cbor_head(4, len(value)) + b"".join(cbor(v) for v in value)
    if isinstance(value, dict):  # insertion order = field order
        return cbor_head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(type(value))


# ---- One function per target: a list of (name, bytes). ----


def frames(prefix):
    wire = os.path.join(VECTORS, "wire")
    out = []
    for name in sorted(os.listdir(wire)):
        if name.startswith(prefix):
            with open(os.path.join(wire, name)) as f:
                out.append((name[: -len(".hex")], bytes.fromhex(f.read().strip())))
    return out


def stream_open():
    keys = {bytes(range(32)).hex(): 0, "a5" * 32: 1, "3c" * 32: 2}
    out = []
    for i, c in enumerate(vector("format", "stream_v1.txt")):
        sel = keys[c["key"]]
        if "index" in c:
            sealed = bytes.fromhex(c["sealed"])
            out.append((f"vector_{i}", bytes([0, sel, 0]) + u64(int(c["index"])) + bytes([int(c["last"])]) + long(sealed)))
        elif "chunk.0" in c:
            sealed = bytes.fromhex(c["chunk.0"])
            out.append((f"vector_{i}", bytes([0, sel, 0]) + u64(0) + b"\x01" + long(sealed)))
    text = b"the quick brown fox jumps over the lazy dog, twice over"
    for op in range(8):
        out.append((f"tamper_op{op}", bytes([1, 7, op]) + struct.pack(">H", 3 * op + 1) + text))
    out.append(("tamper_empty", bytes([1, 15, 0, 0, 0])))
    return out


def name_decrypt():
    out = []
    for i, c in enumerate(vector("format", "names_v1.txt")):
        if "path" in c:
            out.append((f"path_{i}", b"\x00\n" + c["encrypted_path"].encode()))
        else:
            out.append((f"segment_{i}", b"\x00" + c["parent"].encode() + b"\n" + c["encrypted"].encode()))
            out.append((f"tamper_{i}", b"\x01" + struct.pack(">H", i * 7) + b"a" + c["parent"].encode() + b"\n" + c["name"].encode()))
    return out


def meta_open():
    out = []
    for i, c in enumerate(vector("format", "meta_v1.txt")):
        out.append((f"sealed_{i}", bytes.fromhex(c["sealed"])))
        out.append((f"encoded_{i}", bytes.fromhex(c["encoded"])))
    return out


def chunk_open():
    out = []
    for i, c in enumerate(vector("format", "chunks_v2.txt")):
        if "sealed_len" in c:
            # The sealed bytes are not in the vectors: a chunk of the right length that
            # does not open still takes the opener to its tag check.
            out.append((f"chunk_{i}", b"\x00" + bytes.fromhex(c["id"]) + bytes(int(c["sealed_len"]))))
    for i, c in enumerate(vector("format", "chunk_list_v2.txt")):
        out.append((f"list_{i}", b"\x01" + bytes.fromhex(c["sealed"])))
    return out


def filekey_unwrap():
    out = []
    for i, c in enumerate(vector("format", "filekey_v1.txt")):
        if c["namespace"] == "personal":
            ns = b"\x00" + short(c["user"].encode())
        else:
            ns = b"\x01" + i64(int(c["group_id"])) + u32(int(c["generation"]))
        out.append((f"vector_{i}", ns + i64(int(c["file_id"])) + u64(int(c["version"])) + bytes.fromhex(c["wrapped"])))
    return out


def group_envelope():
    out = []
    for i, c in enumerate(vector("format", "groupkey_v1.txt")):
        signer = c["signer"]
        out.append(
            (
                f"vector_{i}",
                bytes([1 if signer == "alice" else 0])
                + i64(int(c["group_id"]))
                + u32(int(c["generation"]))
                + short(c["member"].encode())
                + short(signer.encode())
                + long(bytes.fromhex(c["envelope"]))
                + bytes.fromhex(c["signature"]),
            )
        )
    return out


def join_code():
    out = []
    for i, c in enumerate(vector("format", "invite_v1.txt")):
        out.append((f"code_{i}", b"\x00" + c["code"].encode()))
        out.append((f"code_upper_{i}", b"\x00 " + c["code"].upper().encode() + b"\n"))
        out.append((f"sealed_{i}", b"\x01" + i64(int(c["group_id"])) + bytes.fromhex(c["sealed"])))
        out.append((f"plain_{i}", b"\x02" + bytes.fromhex(c["plaintext"])))
    return out


def chat_message():
    out = []
    for i, c in enumerate(vector("format", "chat_v1.txt")):
        direct = c["kind"] == "direct"
        msg = {
            "sender": c["sender"],
            "target": {"user": {"username": c["recipient"]}} if direct else {"group": {"name": c["group"]}},
            "group_id": None if direct else int(c["group_id"]),
            "generation": None if direct else int(c["generation"]),
            "sent_at_ms": int(c["sent_at_ms"]),
            "ciphertext": bytes.fromhex(c["ciphertext"]),
            "keys": [
                {"member": m, "wrapped": bytes.fromhex(c[f"wrapped.{m}"])}
                for m in ([c["recipient"], c["sender"]] if direct else [])
            ],
            "signature": bytes.fromhex(c["signature"]),
        }
        out.append((f"sealed_{i}", b"\x00" + cbor(msg)))
        out.append((f"body_{i}", b"\x01" + bytes.fromhex(c["body"])))
    return out


def legacy_des():
    key = bytes.fromhex("0123456789abcdef")
    out = [("key_text", b"\x02" + b"0123456789abcdef"), ("key_text_upper", b"\x02  0123456789ABCDEF\n")]
    legacy = os.path.join(VECTORS, "format", "legacy")
    for name in sorted(os.listdir(legacy)):
        if not name.endswith(".des"):
            continue
        with open(os.path.join(legacy, name), "rb") as f:
            ct = f.read()
        cbc = 1 if name.startswith("cbc") else 0
        out.append((name[:-4], bytes([cbc]) + key + bytes([12]) + ct))
    return out


def read_source(name):
    with open(os.path.join(SOURCES, name), "rb") as f:
        return f.read()


def sync_state():
    state, journal = read_source("state.json"), read_source("journal.jsonl")
    return [
        ("state", state),
        ("state_and_journal", state + b"\x00" + journal),
        ("torn_journal", state + b"\x00" + journal + journal[: len(journal) // 2]),
    ]


def server_config():
    config = read_source("vault.toml")
    return [
        ("readme", config),
        ("readme_with_env", config + b"\x00VAULT_LISTEN=127.0.0.1:0\nVAULT_MAIL_FROM=ops@example.org\nVAULT_CHAT_MAX_TEXT_BYTES=1000\n"),
        ("tests", read_source("test-server.toml")),
        ("empty", b""),
    ]


TARGETS = {
    "request_frame": lambda: frames("request_"),
    "response_frame": lambda: frames("response_"),
    "stream_open": stream_open,
    "name_decrypt": name_decrypt,
    "meta_open": meta_open,
    "chunk_open": chunk_open,
    "filekey_unwrap": filekey_unwrap,
    "group_envelope": group_envelope,
    "join_code": join_code,
    "chat_message": chat_message,
    "legacy_des": legacy_des,
    "sync_state": sync_state,
    "server_config": server_config,
}

if __name__ == "__main__":
    for target in sys.argv[1:] or TARGETS:
        make = TARGETS[target]
        folder = os.path.join(SEEDS, target)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        seeds = make()
        assert seeds, target
        for name, data in seeds:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds")
