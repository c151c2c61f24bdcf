"""Commands for checking the transparency log from outside: `verify-receipt` and `witness`.

Both need nothing of the service but its HTTP API: a person checks a receipt with the log's public key,
and a second party runs a witness that follows the log, checks that each new checkpoint extends the last
one it cosigned (an RFC 9162 consistency proof), cosigns it (C2SP tlog-cosignature) and posts the
cosignature back; a log that forked (rewrote or rolled back its history) is refused and reported.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from petportrait.client import Client, PetportraitError
from petportrait.retention import signed_notes
from petportrait.retention.receipt_check import ReceiptInvalid, check_extension, open_checkpoint

FORK_EXIT = 3
API = "/api/v1/transparency"


def verify_receipt(
    file: Annotated[Path, typer.Argument(help="The receipt (JSON) to check", exists=True, dir_okay=False)],
    key: Annotated[
        str | None, typer.Option(help="The log's verifier key, as you got it apart from the receipt")
    ] = None,
    online: Annotated[
        bool, typer.Option("--online/--offline", help="Also check the log's newest checkpoint extends it")
    ] = True,
    log: Annotated[str | None, typer.Option(help="The log's base URL (default: the receipt's)")] = None,
) -> None:
    """Check a receipt: signed checkpoint, entry hash and inclusion proof; online, that the log still
    extends the receipt's checkpoint. A consent receipt's `log_receipts` are checked each. Exits 1 if any
    check fails."""
    try:
        loaded = json.loads(file.read_text())
        receipts = loaded.get("log_receipts", [loaded])
    except (OSError, ValueError, TypeError) as exc:
        typer.echo(f"cannot read the receipt: {exc}", err=True)
        raise typer.Exit(1) from exc
    for receipt in receipts:
        _verify_one(receipt, key=key, online=online, log=log)


def _verify_one(receipt: dict[str, Any], *, key: str | None, online: bool, log: str | None) -> None:
    base = log or str(receipt.get("log_url") or "")
    try:
        with Client(base or "http://127.0.0.1", retries=1) as client:
            result = client.verify_receipt(receipt, log_key=key, online=online and bool(base))
    except ReceiptInvalid as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from exc
    except PetportraitError as exc:
        typer.echo(f"could not reach the log to check it online: {exc}", err=True)
        raise typer.Exit(2) from exc
    extended = result.get("newest_size")
    typer.echo(
        f"OK: entry {receipt['entry']['seq']} ({receipt['entry']['action']}) is in {result['origin']} "
        f"at tree size {result['tree_size']}"
        + ("" if extended is None else f"; the log's checkpoint of size {extended} extends it")
        + ("" if key else " (checked with the key the receipt names; pass --key to pin the log's key)")
    )


def _load_witness_key(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip(), validate=True))


class ForkDetected(Exception):
    """The log's new checkpoint does not extend the one the witness cosigned last."""


@dataclass
class Witness:
    """One witness of one log: its key, its name, and the state file holding the last checkpoint cosigned."""

    http: httpx.Client
    key: Ed25519PrivateKey
    name: str
    state_path: Path
    log_key: str | None = None

    @property
    def verifier_key(self) -> str:
        return signed_notes.verifier_key(self.name, self.key.public_key(), signed_notes.COSIGNATURE_V1)

    def _state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def _get(self, path: str, **params: Any) -> httpx.Response:
        response = self.http.get(f"{API}{path}", params=params)
        response.raise_for_status()
        return response

    def step(self) -> signed_notes.Checkpoint:
        """Fetch the newest checkpoint; check it extends the last one cosigned; cosign and post it.
        Raises ForkDetected (and keeps the evidence) if the log forked."""
        state = self._state()
        log_key = state.get("log_key") or self.log_key or self._get("/key").text.strip()
        note = self._get("/checkpoint").text
        try:
            newer = open_checkpoint(note, log_key)
        except ReceiptInvalid as exc:
            raise ForkDetected(f"the log's checkpoint is not signed by its key: {exc}") from exc
        older_note = state.get("checkpoint")
        if older_note:
            older = open_checkpoint(older_note, log_key)
            if newer.size > older.size or newer.root != older.root:
                proof: list[str] = []
                if older.size < newer.size:
                    proof = self._get("/proofs/consistency", first=older.size, second=newer.size).json()[
                        "consistency_path"
                    ]
                try:
                    check_extension(older, note, proof, log_key=log_key)
                except ReceiptInvalid as exc:
                    self._keep_evidence(older_note, note, proof)
                    raise ForkDetected(str(exc)) from exc
        line = signed_notes.cosign(newer.body, self.name, self.key, int(time.time()))
        response = self.http.post(
            f"{API}/cosignatures",
            json={"tree_size": newer.size, "cosignature": line, "witness_key": self.verifier_key},
        )
        response.raise_for_status()
        self._save({"log_key": log_key, "checkpoint": note})
        return newer

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_path)

    def _keep_evidence(self, older: str, newer: str, proof: list[str]) -> None:
        evidence = self.state_path.with_name(f"fork-{int(time.time())}.json")
        evidence.write_text(
            json.dumps({"cosigned": older, "offered": newer, "consistency_path": proof}, indent=2)
        )


def witness(
    log: Annotated[str, typer.Option(help="The log's base URL, e.g. https://portraits.example")],
    key: Annotated[Path, typer.Option(help="The witness's Ed25519 key file (base64 seed; made if missing)")],
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example.org")],
    state: Annotated[Path | None, typer.Option(help="Where the last cosigned checkpoint is kept")] = None,
    log_key: Annotated[
        str | None, typer.Option(help="The log's verifier key (default: fetched once, then pinned)")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between checks")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Check once and exit")] = False,
) -> None:
    """Follow a log: cosign each checkpoint that extends the last one cosigned, refuse and report a fork
    (exit 3, evidence kept beside the state file)."""
    signing_key = _load_witness_key(key)
    state_path = state or key.with_suffix(".state.json")
    with httpx.Client(base_url=log.rstrip("/"), timeout=30.0) as http:
        runner = Witness(http=http, key=signing_key, name=name, state_path=state_path, log_key=log_key)
        typer.echo(f"witness key: {runner.verifier_key}")
        while True:
            try:
                checkpoint = runner.step()
                typer.echo(f"cosigned {checkpoint.origin} at size {checkpoint.size}")
            except ForkDetected as exc:
                typer.echo(f"FORK: refused to cosign: {exc}", err=True)
                sys.exit(FORK_EXIT)
            except httpx.HTTPError as exc:
                typer.echo(f"could not reach the log: {exc}", err=True)
                if once:
                    sys.exit(1)
            if once:
                return
            time.sleep(interval)
