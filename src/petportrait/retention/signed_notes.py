"""C2SP signed notes, tlog checkpoints and tlog cosignatures, with Ed25519 keys (`cryptography`).

- A checkpoint (c2sp.org/tlog-checkpoint) is the note body "<origin>\\n<tree size>\\n<base64 root>\\n".
- A signed note (c2sp.org/signed-note) is the body, a blank line and one line per signature:
  "— <key name> <base64(key id || signature)>", the key id being SHA-256(name || "\\n" || 0x01 || public
  key)[:4] and the signature Ed25519 over the body. A verifier key reads "<name>+<hex key id>+<base64(0x01
  || public key)>".
- A cosignature (c2sp.org/tlog-cosignature, cosignature/v1) is a witness's signature line whose payload
  is key id (type 0x04) || 8-byte big-endian Unix time || Ed25519 over
  "cosignature/v1\\ntime <t>\\n" + the checkpoint body.

These are the formats Go's checksum database, Sigsum and the transparency-dev witnesses speak.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "


class NoteError(ValueError):
    """A note, checkpoint, key or signature that is malformed or does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint body says."""

    origin: str
    size: int
    root: bytes
    body: str


@dataclass(frozen=True)
class NoteVerifier:
    """A public key able to check a note's (or a cosignature's) signature line."""

    name: str
    key: Ed25519PublicKey
    kind: int = ED25519  # 0x01 signs notes (a log), 0x04 cosigns checkpoints (a witness)

    def key_id(self) -> bytes:
        return key_id(self.name, self.key, self.kind)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, key: Ed25519PublicKey, kind: int = ED25519) -> bytes:
    """The 4-byte key id: SHA-256(name || "\\n" || kind || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + raw_public(key)).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"a key name has no spaces or '+': {name!r}")


def verifier_key(name: str, key: Ed25519PublicKey, kind: int = ED25519) -> str:
    """The verifier key text: "<name>+<hex key id>+<base64(kind || public key)>"."""
    _check_name(name)
    encoded = base64.b64encode(bytes([kind]) + raw_public(key)).decode()
    return f"{name}+{key_id(name, key, kind).hex()}+{encoded}"


def parse_verifier_key(text: str) -> NoteVerifier:
    """Read a verifier key; raises NoteError unless it is a well-formed Ed25519 one."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key reads name+keyid+key")
    name, hex_id, encoded = parts
    try:
        raw = base64.b64decode(encoded, validate=True)
        wanted = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as exc:
        raise NoteError("a verifier key's id or key is not hex or base64") from exc
    if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise NoteError("only Ed25519 verifier keys (note or cosignature/v1) are supported")
    verifier = NoteVerifier(name, Ed25519PublicKey.from_public_bytes(raw[1:]), raw[0])
    if verifier.key_id() != wanted:
        raise NoteError("the verifier key's id does not match its name and key")
    return verifier


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The checkpoint note body."""
    if not origin or "\n" in origin:
        raise NoteError("a checkpoint origin is one non-empty line")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Read a checkpoint body (extension lines are allowed and ignored)."""
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "" or not lines[0]:
        raise NoteError("a checkpoint has an origin, a size and a root hash, one a line")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise NoteError("a checkpoint's size or root hash is malformed") from exc
    if size < 0 or str(size) != lines[1] or len(root) != 32:
        raise NoteError("a checkpoint's size or root hash is malformed")
    return Checkpoint(origin=lines[0], size=size, root=root, body=body)


def sign_note(body: str, name: str, key: Ed25519PrivateKey) -> str:
    """The signed note: the body, a blank line, and the signature line of `name`."""
    _check_name(name)
    if not body.endswith("\n"):
        raise NoteError("a note body ends with a newline")
    signature = key.sign(body.encode())
    payload = key_id(name, key.public_key()) + signature
    return f"{body}\n{_DASH}{name} {base64.b64encode(payload).decode()}\n"


def split_note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The body of a signed note and its signature lines as (key name, decoded payload)."""
    body, sep, signatures = text.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise NoteError("a signed note is a body, a blank line and signature lines")
    lines: list[tuple[str, bytes]] = []
    for line in signatures[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise NoteError("a signature line starts with an em dash")
        name, _, encoded = line[len(_DASH) :].partition(" ")
        try:
            lines.append((name, base64.b64decode(encoded, validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise NoteError("a signature is not base64") from exc
    return body + "\n", lines


def open_note(text: str, verifier: NoteVerifier) -> str:
    """The body of a note that `verifier` signed; raises NoteError if it did not."""
    body, signatures = split_note(text)
    wanted = verifier.key_id()
    if verifier.kind != ED25519:
        raise NoteError("a cosignature key does not sign notes")
    for name, payload in signatures:
        if name == verifier.name and payload[:4] == wanted:
            try:
                verifier.key.verify(payload[4:], body.encode())
            except InvalidSignature as exc:
                raise NoteError(f"the signature of {name} does not verify") from exc
            return body
    raise NoteError(f"the note carries no signature of {verifier.name}")


def _cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """A witness's cosignature line (cosignature/v1) on a checkpoint body."""
    _check_name(name)
    signature = key.sign(_cosigned_message(body, timestamp))
    payload = key_id(name, key.public_key(), COSIGNATURE_V1) + timestamp.to_bytes(8, "big") + signature
    return f"{_DASH}{name} {base64.b64encode(payload).decode()}"


def verify_cosignature(body: str, line: str, verifier: NoteVerifier) -> int:
    """Check a cosignature line of `verifier` on a checkpoint body; returns its timestamp."""
    _, signatures = split_note(f"x\n\n{line.strip()}\n")
    name, payload = signatures[0]
    if name != verifier.name or len(payload) != 4 + 8 + 64:
        raise NoteError("not a cosignature/v1 line of this witness")
    if verifier.kind != COSIGNATURE_V1 or payload[:4] != verifier.key_id():
        raise NoteError("the cosignature's key id is not this witness's")
    timestamp = int.from_bytes(payload[4:12], "big")
    try:
        verifier.key.verify(payload[12:], _cosigned_message(body, timestamp))
    except InvalidSignature as exc:
        raise NoteError(f"the cosignature of {name} does not verify") from exc
    return timestamp
