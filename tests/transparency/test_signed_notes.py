"""C2SP signed notes, checkpoints and cosignatures: byte for byte what Go's note package signs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from petportrait.retention import signed_notes, transparency
from tests.conftest import make_settings

# The example key and note of golang.org/x/mod/sumdb/note (its documentation and tests).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIGNATURE = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_a_note_signed_here_is_the_one_go_signs() -> None:
    key = Ed25519PrivateKey.from_private_bytes(GO_SKEY_SEED)
    assert signed_notes.verifier_key("PeterNeumann", key.public_key()) == GO_VKEY
    note = signed_notes.sign_note(GO_TEXT, "PeterNeumann", key)
    assert note == GO_TEXT + "\n" + GO_SIGNATURE
    assert signed_notes.open_note(note, signed_notes.parse_verifier_key(GO_VKEY)) == GO_TEXT


def test_an_altered_note_or_another_key_is_refused() -> None:
    verifier = signed_notes.parse_verifier_key(GO_VKEY)
    altered = GO_TEXT.replace("cryptography", "blockchain") + "\n" + GO_SIGNATURE
    with pytest.raises(signed_notes.NoteError, match="does not verify"):
        signed_notes.open_note(altered, verifier)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(signed_notes.NoteError, match="no signature"):
        signed_notes.open_note(signed_notes.sign_note(GO_TEXT, "Other", other), verifier)
    with pytest.raises(signed_notes.NoteError):
        signed_notes.parse_verifier_key(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_checkpoints_and_cosignatures_round_trip() -> None:
    root = bytes(range(32))
    body = signed_notes.checkpoint_body("portraits.example/audit-log", 42, root)
    assert body == f"portraits.example/audit-log\n42\n{base64.b64encode(root).decode()}\n"
    parsed = signed_notes.parse_checkpoint(body)
    assert (parsed.origin, parsed.size, parsed.root) == ("portraits.example/audit-log", 42, root)
    witness = Ed25519PrivateKey.generate()
    vkey = signed_notes.verifier_key("witness.example", witness.public_key(), signed_notes.COSIGNATURE_V1)
    verifier = signed_notes.parse_verifier_key(vkey)
    line = signed_notes.cosign(body, "witness.example", witness, 1_700_000_000)
    assert signed_notes.verify_cosignature(body, line, verifier) == 1_700_000_000
    with pytest.raises(signed_notes.NoteError):
        signed_notes.verify_cosignature(body.replace("42", "43"), line, verifier)
    with pytest.raises(signed_notes.NoteError):
        signed_notes.parse_checkpoint("origin\n-1\nAAAA\n")


def test_the_logs_signing_key_is_made_once_outside_production_and_required_in_production(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "dev")
    first = transparency.verifier_key(settings)
    assert transparency.verifier_key(settings) == first and first.startswith("127.0.0.1:8000/audit-log+")
    assert transparency.signing_key_path(settings).stat().st_mode & 0o777 == 0o600
    with pytest.raises(transparency.SigningKeyMissing):
        transparency.load_signing_key(make_settings(tmp_path / "prod", environment="production"))
    configured = make_settings(
        tmp_path / "set",
        transparency={"signing_key": base64.b64encode(GO_SKEY_SEED).decode(), "key_name": "PeterNeumann"},
    )
    assert transparency.verifier_key(configured) == GO_VKEY
    with pytest.raises(ValidationError, match="must decode to 32 bytes"):
        make_settings(tmp_path / "bad", transparency={"signing_key": base64.b64encode(b"short").decode()})
