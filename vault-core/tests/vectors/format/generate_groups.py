#!/usr/bin/env python3
"""Generates the golden vectors of group-key envelopes, join codes and chat messages
(docs/FORMAT.md sections 8 and 9) with Python `cryptography`, independent of Vault's own
code. Run from this directory (only `cryptography` is needed):

    python3 generate_groups.py

RSA-OAEP and RSA-PSS are randomized, so every run writes different envelopes, wrapped
keys and signatures (all equally valid); the AES-GCM parts use fixed nonces and come out
the same. The member (or recipient) key is the TEST-ONLY key of ../rsa_v1.txt, whose
private half the Rust tests hold; the other party is a key made afresh by each run, of
which only the public half is written, so Rust can verify what it signed but never sign.
"""

import os
import struct
from base64 import b32encode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))


def hkdf(ikm: bytes, info: str, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, None, info.encode()).derive(ikm)


def seal_blob(key: bytes, nonce12: bytes, ad: bytes, pt: bytes) -> bytes:
    return b"\x01" + nonce12 + AESGCM(key).encrypt(nonce12, pt, ad)


def oaep(public_key, plaintext: bytes, label: bytes) -> bytes:
    return public_key.encrypt(
        plaintext,
        padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()),
            algorithm=hashes.SHA256(),
            label=label,
        ),
    )


def pss(private_key, message: bytes) -> bytes:
    return private_key.sign(
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def spki(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_key():
    """The TEST-ONLY key of rsa_v1.txt."""
    with open(os.path.join(HERE, "..", "rsa_v1.txt")) as f:
        fields = dict(
            line.split(" = ", 1) for line in f.read().splitlines() if " = " in line
        )
    return serialization.load_der_private_key(bytes.fromhex(fields["pkcs8"]), None)


def write(name: str, header: str, cases):
    with open(os.path.join(HERE, name), "w") as f:
        f.write(header.strip() + "\n")
        for case in cases:
            f.write("\n")
            for k, v in case:
                f.write(f"{k} = {v}\n")


# ---- A minimal CBOR encoder: what serde + ciborium write for the message body. ----


def cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for extra, fmt in [(24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")]:
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | extra]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor(value) -> bytes:
    if isinstance(value, bool):
        raise TypeError("no booleans in a message body")
    if isinstance(value, int):
        return cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)
    if isinstance(value, bytes):
        return cbor_head(2, len(value)) + value
    if isinstance(value, str):
        data = value.encode()
        return cbor_head(3, len(data)) + data
    if isinstance(value, list):  # a struct: [(field, value)] in declaration order
        return cbor_head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value)
    raise TypeError(type(value))


# ---- Group-key envelopes (FORMAT.md 8.2) ----


def groupkey(member_key, other_key):
    cases = []
    for group_id, gen, member, signer, signer_key, gk in [
        (7, 0, "bob", "alice", other_key, bytes(range(0x40, 0x60))),
        (9223372036854775807, 4294967295, "bob", "bob", member_key, bytes([0x5E] * 32)),
        (12, 3, "b.o-b_9", "alice", other_key, bytes(range(32))),
    ]:
        label = f"vault/v1/ad/group-key;group={group_id};gen={gen};member={member}"
        envelope = oaep(member_key.public_key(), gk, label.encode())
        signed_text = (
            f"vault/v1/sig/group-key;group={group_id};gen={gen};member={member};signer={signer}"
        )
        signed = signed_text.encode() + b"\x00" + envelope
        cases.append(
            [
                ("group_id", str(group_id)),
                ("generation", str(gen)),
                ("member", member),
                ("signer", signer),
                ("signer_spki", spki(signer_key).hex()),
                ("group_key", gk.hex()),
                ("label", label),
                ("envelope", envelope.hex()),
                ("signed", signed.hex()),
                ("signature", pss(signer_key, signed).hex()),
            ]
        )
    write(
        "groupkey_v1.txt",
        """
# Group-key envelopes, v1: envelope = RSA-OAEP(SHA-256, MGF1-SHA-256) of GK_g (32 bytes)
# to the member's key with the label shown (text); signature = RSA-PSS-SHA256 (salt 32)
# by the signer over `signed` = "vault/v1/sig/group-key;group=G;gen=N;member=M;signer=S"
# || 0x00 || envelope. The member's key is the TEST-ONLY key of ../rsa_v1.txt; the signer's
# public key is `signer_spki` (DER). Generated by generate_groups.py with Python
# `cryptography`. Checked by tests/format_vectors.rs::groupkey_v1.
""",
        cases,
    )


# ---- Join codes (FORMAT.md 8.3) ----


def invite():
    cases = []
    for secret, invite_id, group_id, nonce12, keys in [
        (bytes(range(32)), 17, 7, bytes(range(12)), [(0, bytes([0x11] * 32))]),
        (
            bytes([0xFE] * 32),
            9223372036854775807,
            42,
            bytes([0xA0] * 12),
            [(0, bytes(range(32))), (1, bytes([0x22] * 32)), (4294967295, bytes([0x33] * 32))],
        ),
    ]:
        code = f"{invite_id}." + b32encode(secret).decode().rstrip("=").lower()
        invite_key = hkdf(secret, "vault/v1/invite-key")
        ad = f"vault/v1/ad/invite-keys;group={group_id}"
        plain = b"".join(struct.pack(">I", g) + k for g, k in keys)
        cases.append(
            [
                ("secret", secret.hex()),
                ("invite_id", str(invite_id)),
                ("code", code),
                ("auth", hkdf(secret, "vault/v1/invite-auth").hex()),
                ("invite_key", invite_key.hex()),
                ("group_id", str(group_id)),
                ("keys", ",".join(f"{g}:{k.hex()}" for g, k in keys)),
                ("ad", ad),
                ("plaintext", plain.hex()),
                ("nonce", nonce12.hex()),
                ("sealed", seal_blob(invite_key, nonce12, ad.encode(), plain).hex()),
            ]
        )
    write(
        "invite_v1.txt",
        """
# Join codes, v1: code = "<invite_id>." || lowercase unpadded base32 of the 32-byte secret S;
# auth = HKDF(S, "vault/v1/invite-auth") (sent to the server); sealed = 0x01 || nonce ||
# AES-256-GCM under HKDF(S, "vault/v1/invite-key") with ad "vault/v1/ad/invite-keys;group=G"
# of `plaintext` = gen (u32 BE) || GK_gen for each of `keys` (gen:hex, in order). Generated
# by generate_groups.py with Python `cryptography`. Checked by
# tests/format_vectors.rs::invite_v1.
""",
        cases,
    )


# ---- Chat messages (FORMAT.md 9.1) ----


def chat(test, other):
    cases = []
    file_ref = [
        ("name", "report.pdf"),
        ("size", 1234567),
        ("file_id", 42),
        ("version", 3),
        ("key", bytes([0xAB] * 32)),
        ("blake3", bytes(range(0xC0, 0xE0))),
    ]
    people = {"alice": other, "bob": test}
    # Direct messages: (sender, recipient, sent_at_ms, message key, nonce, text).
    for sender, recipient, at, mk, nonce12, text in [
        ("alice", "bob", 1700000000123, bytes(range(0x80, 0xA0)), bytes(range(12)), "hi bob"),
        ("bob", "alice", 1700000000999, bytes([0x4D] * 32), bytes([0x07] * 12), "Grüße ✓"),
    ]:
        header = f"vault/v1/chat;from={sender};to=user:{recipient};at={at}"
        body = cbor([("text", text)])
        ciphertext = seal_blob(mk, nonce12, header.encode(), body)
        signed = b"vault/v1/sig/" + header.encode() + b"\x00" + ciphertext
        case = [
            ("kind", "direct"),
            ("sender", sender),
            ("recipient", recipient),
            ("sent_at_ms", str(at)),
            ("sender_spki", spki(people[sender]).hex()),
            ("header", header),
            ("text", text),
            ("body", body.hex()),
            ("message_key", mk.hex()),
            ("nonce", nonce12.hex()),
            ("ciphertext", ciphertext.hex()),
        ]
        for member in [recipient, sender]:
            label = f"{header};member={member}"
            case.append((f"label.{member}", label))
            case.append(
                (f"wrapped.{member}", oaep(people[member].public_key(), mk, label.encode()).hex())
            )
        case += [("signed", signed.hex()), ("signature", pss(people[sender], signed).hex())]
        cases.append(case)
    # Group messages: (sender, group name, id, generation, sent_at_ms, GK_g, nonce, body).
    for sender, name, group_id, gen, at, gk, nonce12, fields in [
        ("alice", "team", 7, 2, 1700000001000, bytes([0x21] * 32), bytes([0x33] * 12),
         [("text", "the report"), ("file", file_ref)]),
        ("bob", "ops", 9223372036854775807, 0, -5, bytes(range(1, 33)), bytes(12),
         [("text", "")]),
    ]:
        header = f"vault/v1/chat;from={sender};to=group:{group_id};gen={gen};at={at}"
        chat_key = hkdf(gk, "vault/v1/chat")
        body = cbor(fields)
        ciphertext = seal_blob(chat_key, nonce12, header.encode(), body)
        signed = b"vault/v1/sig/" + header.encode() + b"\x00" + ciphertext
        case = [
            ("kind", "group"),
            ("sender", sender),
            ("group", name),
            ("group_id", str(group_id)),
            ("generation", str(gen)),
            ("sent_at_ms", str(at)),
            ("sender_spki", spki(people[sender]).hex()),
            ("header", header),
            ("text", dict(fields)["text"]),
            ("body", body.hex()),
            ("group_key", gk.hex()),
            ("chat_key", chat_key.hex()),
            ("nonce", nonce12.hex()),
            ("ciphertext", ciphertext.hex()),
            ("signed", signed.hex()),
            ("signature", pss(people[sender], signed).hex()),
        ]
        cases.append(case)
    write(
        "chat_v1.txt",
        """
# Chat messages, v1: header = "vault/v1/chat;from=S;to=user:R;at=T" (direct) or
# "vault/v1/chat;from=S;to=group:G;gen=N;at=T" (group); body = CBOR {text, file?};
# ciphertext = 0x01 || nonce || AES-256-GCM(key, ad = header, body) with key = the message
# key (direct) or chat_key = HKDF(GK_g, "vault/v1/chat") (group); a direct message's key is
# wrapped with RSA-OAEP-SHA256 for each end under the label `label.<member>`; signature =
# RSA-PSS-SHA256 (salt 32) by the sender over `signed` = "vault/v1/sig/" || header || 0x00 ||
# ciphertext. bob's key is the TEST-ONLY key of ../rsa_v1.txt; alice's public key is the
# `sender_spki` of her messages. Generated by generate_groups.py with Python `cryptography`
# (CBOR written by hand). Checked by tests/format_vectors.rs::chat_v1.
""",
        cases,
    )


if __name__ == "__main__":
    bob = test_key()
    alice = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    groupkey(bob, alice)
    invite()
    chat(bob, alice)
