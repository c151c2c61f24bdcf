"""A typed, synchronous Python client for the petportrait API, on httpx.

    from petportrait.client import Client
    c = Client("http://127.0.0.1:8000")
    c.sign_up("me@example.com", "a long password")        # or c.sign_in(...); either keeps the token
    pet = c.create_pet("Rex", species="dog")
    c.upload_photos(pet.id, ["a.jpg", "b.jpg", "c.jpg"])    # per-file results
    model = c.train(pet.id, wait=True, on_progress=print)   # waits on the event stream
    renders = c.render(model.id, style="oil_painting", count=2, wait=True)
    c.download(renders[0].id, "rex.png")                    # verifies the C2PA manifest

Every error is a `PetportraitError` carrying the problem's `code`, `detail` and HTTP `status`. Each creating
call sends an `Idempotency-Key` of its own, so the client retries it safely: on connection errors and on
429/503/507 (honouring `Retry-After`), with exponential backoff. Lists are iterators that follow the service's
pages (`{"items": [...], "next_cursor": ...}`) or read a plain list. Waiting follows the job's server-sent
events and falls back to polling when the stream is unavailable.

This module is an entry point for integrators: it imports nothing of the service but the C2PA reader.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

__all__ = [
    "Account",
    "Client",
    "Download",
    "Erasure",
    "Job",
    "Model",
    "Pet",
    "PetportraitError",
    "Photo",
    "Render",
    "Upload",
    "UploadResult",
    "Webhook",
]

API = "/api/v1"
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled", "deleted"})
RETRY_STATUSES = frozenset({429, 503, 507})  # 503/507: a dependency or the disk is away (a wait)
LICENCE_ASSERTION = "com.petportrait.licence"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
T = TypeVar("T")


class PetportraitError(Exception):
    """An error answer of the service (or a failed job, or a file that fails verification).

    `code` is the problem's stable code; `detail` is for a person; `status` the HTTP status (None when the
    error did not come as an HTTP answer, e.g. a job that failed); `problem` the whole problem document.
    """

    def __init__(
        self, code: str, detail: str, status: int | None = None, problem: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {detail}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.detail = detail
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise PetportraitError("unexpected_answer", f"expected a timestamp, got {value!r}")
    return parsed


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    role: str
    display_name: str | None
    created_at: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Account:
        return cls(
            id=data["id"],
            email=data["email"],
            role=data.get("role", "user"),
            display_name=data.get("display_name"),
            created_at=_required_time(data["created_at"]),
        )


@dataclass(frozen=True)
class Pet:
    id: str
    name: str
    species: str
    created_at: datetime
    photo_count: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pet:
        return cls(
            id=data["id"],
            name=data["name"],
            species=data["species"],
            created_at=_required_time(data["created_at"]),
            photo_count=int(data.get("photo_count") or 0),
        )


@dataclass(frozen=True)
class Photo:
    id: str
    pet_id: str
    original_filename: str | None
    size: int
    width: int
    height: int
    sha256: str
    uploaded_at: datetime
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Photo:
        return cls(
            id=data["id"],
            pet_id=data["pet_id"],
            original_filename=data.get("original_filename"),
            size=int(data.get("size") or 0),
            width=int(data.get("width") or 0),
            height=int(data.get("height") or 0),
            sha256=data.get("sha256") or "",
            uploaded_at=_required_time(data["uploaded_at"]),
            expires_at=_time(data.get("expires_at")),
        )


@dataclass(frozen=True)
class UploadResult:
    """One file of an upload: `stored` (with its photo) or `rejected` (with a code and a reason)."""

    filename: str | None
    status: str
    photo: Photo | None
    code: str | None
    detail: str | None

    @property
    def stored(self) -> bool:
        return self.status == "stored"


@dataclass(frozen=True)
class Upload:
    stored: int
    rejected: int
    results: list[UploadResult]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Upload:
        results = [
            UploadResult(
                filename=r.get("filename"),
                status=r["status"],
                photo=Photo.from_json(r["photo"]) if r.get("photo") else None,
                code=r.get("code"),
                detail=r.get("detail"),
            )
            for r in data.get("results", [])
        ]
        return cls(stored=int(data.get("stored", 0)), rejected=int(data.get("rejected", 0)), results=results)

    @property
    def photos(self) -> list[Photo]:
        return [r.photo for r in self.results if r.photo is not None]


@dataclass(frozen=True)
class Job:
    """A training or rendering job; `str(job)` is one line for a person (`on_progress=print` reads well)."""

    id: str
    kind: str
    state: str
    step: int
    total: int
    fraction: float
    eta_seconds: float | None
    message: str | None
    error_code: str | None
    error_message: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        progress = data.get("progress") or {}
        error = data.get("error") or {}
        return cls(
            id=data["id"],
            kind=data.get("kind", ""),
            state=data["state"],
            step=int(progress.get("step") or 0),
            total=int(progress.get("total") or 0),
            fraction=float(progress.get("fraction") or 0.0),
            eta_seconds=progress.get("eta_seconds"),
            message=data.get("message"),
            error_code=error.get("code"),
            error_message=error.get("message"),
        )

    @property
    def finished(self) -> bool:
        return self.state in FINAL_JOB_STATES

    def __str__(self) -> str:
        steps = f" {self.step}/{self.total}" if self.total else ""
        eta = f", about {self.eta_seconds:.0f}s left" if self.eta_seconds and not self.finished else ""
        return f"{self.kind} {self.state}{steps} ({self.fraction:.0%}{eta})"


@dataclass(frozen=True)
class Model:
    id: str
    pet_id: str
    state: str
    base_model: str
    is_preview: bool
    created_at: datetime
    trained_at: datetime | None
    expires_at: datetime | None
    job_id: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        return cls(
            id=data["id"],
            pet_id=data["pet_id"],
            state=data["state"],
            base_model=data.get("base_model", ""),
            is_preview=bool(data.get("is_preview")),
            created_at=_required_time(data["created_at"]),
            trained_at=_time(data.get("trained_at")),
            expires_at=_time(data.get("expires_at")),
            job_id=data.get("job_id"),
        )


@dataclass(frozen=True)
class Render:
    id: str
    model_id: str | None
    pet_id: str
    job_id: str | None
    state: str
    style: str | None
    prompt: str | None
    seed: int | None
    width: int | None
    height: int | None
    is_preview: bool
    created_at: datetime
    rendered_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Render:
        return cls(
            id=data["id"],
            model_id=data.get("model_id"),
            pet_id=data["pet_id"],
            job_id=data.get("job_id"),
            state=data["state"],
            style=data.get("style"),
            prompt=data.get("prompt"),
            seed=data.get("seed"),
            width=data.get("width"),
            height=data.get("height"),
            is_preview=bool(data.get("is_preview")),
            created_at=_required_time(data["created_at"]),
            rendered_at=_time(data.get("rendered_at")),
            expires_at=_time(data.get("expires_at")),
        )


@dataclass(frozen=True)
class Download:
    """A portrait written to `path` after its C2PA manifest verified, and the licence it names."""

    render_id: str
    path: Path
    size: int
    sha256: str
    licence_id: str
    verify_url: str | None
    manifest_state: str


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: list[str]
    secret: str | None = None  # only in the answer that created it
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        return cls(
            id=data["id"],
            url=data.get("url", ""),
            events=list(data.get("events") or []),
            secret=data.get("secret"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Erasure:
    user_id: str
    requested_at: datetime
    completes_within_seconds: float
    detail: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Erasure:
        return cls(
            user_id=data["user_id"],
            requested_at=_required_time(data["requested_at"]),
            completes_within_seconds=float(data.get("completes_within_seconds") or 0),
            detail=data.get("detail", ""),
        )


def _error_of(response: httpx.Response) -> PetportraitError:
    problem: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            problem = parsed
    except (ValueError, UnicodeDecodeError):
        pass
    code = str(problem.get("code") or f"http_{response.status_code}")
    detail = str(problem.get("detail") or response.reason_phrase or "error")
    return PetportraitError(code, detail, response.status_code, problem)


def _retry_after(response: httpx.Response | None) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Client:
    """A session with one petportrait server; keeps the bearer token of `sign_up`/`sign_in`.

    `retries` is how many times a call is tried again after a connection error or a 429/503/507 answer;
    waits grow from `backoff` seconds (doubling, with jitter) to at most `max_backoff`, or follow
    the server's `Retry-After`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        poll_interval: float = 1.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "petportrait-client", "Accept": "application/json"},
        )

    # ---- plumbing ------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _pause(self, attempt: int, response: httpx.Response | None) -> None:
        wait = _retry_after(response)
        if wait is None:
            wait = min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)
        self._sleep(min(wait, self.max_backoff))

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        files: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        creates: bool = False,
    ) -> httpx.Response:
        """One logical call: retried on connection errors and 429/503/507 (and a key still in flight),
        with one Idempotency-Key across its tries when it creates something."""
        extra = dict(headers or {})
        if creates:
            extra["Idempotency-Key"] = str(uuid.uuid4())
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    method,
                    path if path.startswith("http") else f"{API}{path}",
                    json=json_body,
                    files=files,
                    content=content,
                    params=params,
                    headers=self._headers(extra),
                )
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise PetportraitError(
                        "connection_error", f"{method} {path}: {type(exc).__name__}: {exc}"
                    ) from exc
            else:
                retry = response.status_code in RETRY_STATUSES or (
                    response.status_code == 409 and _error_of(response).code == "idempotency_key_in_flight"
                )
                if not retry or attempt >= self.retries:
                    if response.is_error:
                        raise _error_of(response)
                    return response
            self._pause(attempt, response)
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def _pages(self, path: str, parse: Callable[[Mapping[str, Any]], T], **params: Any) -> Iterator[T]:
        """Every item of a list: pages of `{"items": [...], "next_cursor": ...}`, or a plain list."""
        query = {k: v for k, v in params.items() if v is not None}
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self._json("GET", path, params={**query, **({"cursor": cursor} if cursor else {})})
            if isinstance(page, list):
                yield from (parse(item) for item in page)
                return
            yield from (parse(item) for item in page.get("items", []))
            previous, cursor = cursor, page.get("next_cursor")
            if not cursor:
                return
            if cursor == previous or cursor in seen:
                raise PetportraitError(
                    "repeated_cursor",
                    f"The server sent the same page cursor twice for {path}; stopping rather than looping "
                    "for ever (a server bug: report it).",
                )
            seen.add(cursor)

    # ---- accounts ------------------------------------------------------------------------------------

    def sign_up(self, email: str, password: str, *, display_name: str | None = None) -> Account:
        """Create an account and sign in to it (the client keeps the token).

        Sign-up answers alike whether or not the email already has an account; signing in then tells: an
        existing account with another password gives the sign-in's error.
        """
        body: dict[str, Any] = {"email": email, "password": password}
        if display_name:
            body["display_name"] = display_name
        self._json("POST", "/accounts", json_body=body, creates=True)
        self.sign_in(email, password)
        return self.me()

    def sign_in(self, email: str, password: str, *, name: str | None = None) -> str:
        """Exchange email and password for a bearer token; the client keeps it and returns it."""
        body: dict[str, Any] = {"email": email, "password": password}
        if name:
            body["name"] = name
        answer = self._json("POST", "/auth/token", json_body=body)
        self.token = str(answer["access_token"])
        return self.token

    def change_password(self, current_password: str, new_password: str) -> dict[str, Any]:
        """Change the password; every other token and session of the account is signed out."""
        body = {"current_password": current_password, "new_password": new_password}
        return dict(self._json("POST", "/me/password", json_body=body))

    def sign_out(self) -> None:
        """Revoke the token the client holds."""
        self._send("DELETE", "/auth/token")
        self.token = None

    def me(self) -> Account:
        return Account.from_json(self._json("GET", "/me"))

    # ---- pets and photos -----------------------------------------------------------------------------

    def create_pet(self, name: str, *, species: str = "dog") -> Pet:
        body = {"name": name, "species": species}
        return Pet.from_json(self._json("POST", "/pets", json_body=body, creates=True))

    def pets(self, *, limit: int | None = None) -> Iterator[Pet]:
        return self._pages("/pets", Pet.from_json, limit=limit)

    def get_pet(self, pet_id: str) -> Pet:
        return Pet.from_json(self._json("GET", f"/pets/{pet_id}"))

    def delete_pet(self, pet_id: str) -> None:
        self._send("DELETE", f"/pets/{pet_id}")

    def upload_photos(self, pet_id: str, paths: Iterable[str | os.PathLike[str]]) -> Upload:
        """Upload photos; the answer says, per file, stored or rejected (and why). A call where every
        file is rejected returns those results too, rather than raising."""
        files = []
        for raw in paths:
            path = Path(raw)
            mime = _IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
            files.append(("files", (path.name, path.read_bytes(), mime)))
        if not files:
            raise PetportraitError("no_files", "Give one or more photo files.")
        try:
            return Upload.from_json(self._json("POST", f"/pets/{pet_id}/photos", files=files, creates=True))
        except PetportraitError as exc:
            if exc.status == 422 and "results" in exc.problem:
                return Upload.from_json(exc.problem)
            raise

    def photos(self, pet_id: str, *, limit: int | None = None) -> Iterator[Photo]:
        return self._pages(f"/pets/{pet_id}/photos", Photo.from_json, limit=limit)

    # ---- jobs ----------------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return Job.from_json(self._json("GET", f"/jobs/{job_id}"))

    def cancel_job(self, job_id: str) -> Job:
        return Job.from_json(self._json("POST", f"/jobs/{job_id}/cancel"))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[Job], object] | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Wait for a job to end: its server-sent events (`progress`, then `end`), or polling when the
        stream is unavailable or breaks. A failed or cancelled job raises PetportraitError."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        job: Job | None = None
        try:
            job = self._follow_events(job_id, on_progress, deadline)
        except (httpx.HTTPError, PetportraitError, ValueError, KeyError):
            job = None
        while job is None or not job.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise PetportraitError("timeout", f"job {job_id} did not end within {timeout} seconds")
            if job is not None:
                self._sleep(self.poll_interval)
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
        if raise_on_failure and job.state != "succeeded":
            raise PetportraitError(
                job.error_code or f"job_{job.state}",
                job.error_message or f"The {job.kind or 'job'} ended {job.state}.",
                None,
                {"job_id": job.id, "state": job.state},
            )
        return job

    def _follow_events(
        self, job_id: str, on_progress: Callable[[Job], object] | None, deadline: float | None
    ) -> Job | None:
        read = 30.0 if deadline is None else max(1.0, min(30.0, deadline - time.monotonic()))
        timeout = httpx.Timeout(10.0, read=read)
        headers = self._headers({"Accept": "text/event-stream"})
        url = f"{API}/jobs/{job_id}/events"
        with self._http.stream("GET", url, headers=headers, timeout=timeout) as stream:
            if stream.status_code != 200:
                stream.read()
                raise _error_of(stream)
            if not stream.headers.get("content-type", "").startswith("text/event-stream"):
                return None
            event, data = "message", list[str]()
            for line in stream.iter_lines():
                if deadline is not None and time.monotonic() > deadline:
                    return None
                if line == "":
                    if data:
                        payload = json.loads("\n".join(data))
                        job = Job.from_json(payload) if "state" in payload else None
                        if event == "end":
                            if job is None or payload.get("state") == "deleted":
                                return Job.from_json({"id": job_id, "state": "deleted"})
                            if on_progress is not None:
                                on_progress(job)
                            return job
                        if event == "progress" and job is not None and on_progress is not None:
                            on_progress(job)
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        return None

    # ---- models and renders --------------------------------------------------------------------------

    def train(
        self,
        pet_id: str,
        *,
        wait: bool = False,
        on_progress: Callable[[Job], object] | None = None,
        timeout: float | None = None,
    ) -> Model:
        """Train a model of the pet from its photos; with `wait`, return it trained (or raise)."""
        answer = self._json("POST", f"/pets/{pet_id}/models", creates=True)
        model = Model.from_json(answer["model"])
        if not wait:
            return model
        self.wait(answer["job"]["id"], on_progress=on_progress, timeout=timeout)
        return self.get_model(model.id)

    def models(self, pet_id: str, *, limit: int | None = None) -> Iterator[Model]:
        return self._pages(f"/pets/{pet_id}/models", Model.from_json, limit=limit)

    def get_model(self, model_id: str) -> Model:
        return Model.from_json(self._json("GET", f"/models/{model_id}"))

    def delete_model(self, model_id: str) -> None:
        self._send("DELETE", f"/models/{model_id}")

    def render(
        self,
        model_id: str,
        *,
        style: str | None = None,
        prompt: str | None = None,
        count: int = 1,
        seed: int | None = None,
        width: int | None = None,
        height: int | None = None,
        steps: int | None = None,
        negative_prompt: str | None = None,
        wait: bool = False,
        on_progress: Callable[[Job], object] | None = None,
        timeout: float | None = None,
    ) -> list[Render]:
        """Render portraits from a style preset or a prompt; with `wait`, return them ready (or raise).
        A model past its week is retrained first; waiting covers that too."""
        body: dict[str, Any] = {"count": count}
        optional = {
            "style": style,
            "prompt": prompt,
            "seed": seed,
            "width": width,
            "height": height,
            "steps": steps,
            "negative_prompt": negative_prompt,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        answer = self._json("POST", f"/models/{model_id}/renders", json_body=body, creates=True)
        renders = [Render.from_json(r) for r in answer["renders"]]
        if not wait:
            return renders
        if answer.get("training_job"):
            self.wait(answer["training_job"]["id"], on_progress=on_progress, timeout=timeout)
        self.wait(answer["job"]["id"], on_progress=on_progress, timeout=timeout)
        return [self.get_render(r.id) for r in renders]

    def renders(self, *, pet_id: str | None = None, limit: int | None = None) -> Iterator[Render]:
        return self._pages("/renders", Render.from_json, pet_id=pet_id, limit=limit)

    def get_render(self, render_id: str) -> Render:
        return Render.from_json(self._json("GET", f"/renders/{render_id}"))

    def delete_render(self, render_id: str) -> None:
        self._send("DELETE", f"/renders/{render_id}")

    def styles(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/styles"))

    def download(self, render_id: str, path: str | os.PathLike[str], *, verify: bool = True) -> Download:
        """Save a portrait to `path` once its signed C2PA manifest checks out: intact and signed (read
        here), naming the licence the service answered with, and signed by the service (its verifier)."""
        response = self._send("GET", f"/renders/{render_id}/content", headers={"Accept": "image/png"})
        data = response.content
        link_licence = _licence_from_link(response.headers.get("link", ""))
        licence_id, verify_url, state = link_licence or "", None, "unverified"
        if verify:
            licence = _read_manifest(data)
            licence_id = str(licence.get("licence_id") or "")
            verify_url = licence.get("verify_url")
            if link_licence and licence_id != link_licence:
                raise PetportraitError(
                    "provenance_mismatch",
                    f"The manifest names licence {licence_id}, the service answered {link_licence}.",
                )
            if licence.get("content_sha256") is None:
                raise PetportraitError("provenance_invalid", "The manifest's licence has no content hash.")
            verdict = self._json(
                "POST", "/provenance/verify", content=data, headers={"Content-Type": "image/png"}
            )
            if not verdict.get("ok") or (verdict.get("licence") or {}).get("licence_id") != licence_id:
                raise PetportraitError(
                    "provenance_invalid",
                    f"The service does not recognise this file's signature (state {verdict.get('state')}).",
                    None,
                    verdict,
                )
            state = str(verdict.get("state"))
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(data)
        partial.replace(target)
        return Download(
            render_id=render_id,
            path=target,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            licence_id=licence_id,
            verify_url=verify_url,
            manifest_state=state,
        )

    # ---- webhooks ------------------------------------------------------------------------------------

    def create_webhook(self, url: str, events: Iterable[str]) -> Webhook:
        """Register an endpoint; the answer carries its signing secret, shown this once."""
        body = {"url": url, "events": list(events)}
        return Webhook.from_json(self._json("POST", "/webhooks", json_body=body, creates=True))

    def webhooks(self, *, limit: int | None = None) -> Iterator[Webhook]:
        return self._pages("/webhooks", Webhook.from_json, limit=limit)

    def test_webhook(self, webhook_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/webhooks/{webhook_id}/test") or {})

    def delete_webhook(self, webhook_id: str) -> None:
        self._send("DELETE", f"/webhooks/{webhook_id}")

    # ---- your data -----------------------------------------------------------------------------------

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Everything the service holds about you, as one ZIP written to `path`."""
        response = self._send("POST", "/me/export", headers={"Accept": "application/zip"}, creates=True)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        return target

    def deletions(self, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Deletion receipts: what of yours was deleted, why and when."""
        return self._pages("/me/deletions", dict, limit=limit)

    def delete_item(self, kind: str, item_id: str) -> dict[str, Any]:
        """Delete a photo, model or render now; returns its deletion receipt."""
        return dict(self._json("DELETE", f"/me/items/{kind}/{item_id}"))

    def audit_receipt(self, seq: int) -> dict[str, Any]:
        """The receipt of one audit entry about you: the entry, its inclusion proof, the signed checkpoint."""
        return dict(self._json("GET", f"/me/audit/{seq}/receipt"))

    def verify_receipt(
        self, receipt: Mapping[str, Any], *, log_key: str | None = None, online: bool = True
    ) -> dict[str, Any]:
        """Check a receipt offline against the log's key (`log_key`, else the one it names); with `online`,
        also that this server's newest signed checkpoint extends the receipt's (a consistency proof).
        Raises `ReceiptInvalid` (petportrait.retention.receipt_check) with a sentence if a check fails."""
        from petportrait.retention.receipt_check import check_extension, check_receipt, open_checkpoint

        key = log_key or str(receipt.get("log_key"))
        checkpoint = check_receipt(receipt, log_key=key)
        result: dict[str, Any] = {"origin": checkpoint.origin, "tree_size": checkpoint.size}
        if online:
            note = self._send("GET", "/transparency/checkpoint").text
            size = open_checkpoint(note, key).size
            proof: list[str] = []
            if size > checkpoint.size:
                params = {"first": checkpoint.size, "second": size}
                proof = self._json("GET", "/transparency/proofs/consistency", params=params)[
                    "consistency_path"
                ]
            result["newest_size"] = check_extension(checkpoint, note, proof, log_key=key).size
        return result

    def delete_account(self, current_password: str) -> Erasure:
        """Delete the account (the service asks for the password again): signed out now, everything
        deleted by the next sweep."""
        erasure = Erasure.from_json(
            self._json("DELETE", "/me", json_body={"current_password": current_password})
        )
        self.token = None
        return erasure


def _licence_from_link(link: str) -> str | None:
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="license"' in params.replace(" ", ""):
            return target.strip().strip("<>").rstrip("/").rsplit("/", 1)[-1] or None
    return None


def _read_manifest(data: bytes) -> dict[str, Any]:
    """The licence assertion of the file's active manifest, after checking that the signature and the
    hash binding hold (trust in the signer is the service's to confirm: its CA is not on this machine)."""
    import io

    import c2pa

    context = c2pa.Context(c2pa.Settings.from_dict({"verify": {"verify_trust": False}}))
    try:
        reader = c2pa.Reader.try_create("image/png", io.BytesIO(data), None, context)
        if reader is None:
            raise PetportraitError("provenance_missing", "The file has no C2PA manifest.")
        with reader:
            state = reader.get_validation_state() or "None"
            failures = (reader.get_validation_results() or {}).get("activeManifest", {}).get("failure", [])
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        raise PetportraitError("provenance_invalid", f"The C2PA manifest cannot be read: {exc}") from exc
    finally:
        context.close()
    if state not in ("Valid", "Trusted") or failures:
        raise PetportraitError(
            "provenance_invalid",
            f"The C2PA manifest does not validate (state {state}).",
            None,
            {"failures": failures},
        )
    created = any(
        action.get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA
        for assertion in manifest.get("assertions", [])
        if assertion.get("label", "").startswith("c2pa.actions")
        for action in (assertion.get("data") or {}).get("actions", [])
    )
    if not created:
        raise PetportraitError("provenance_invalid", "The manifest does not say the image was generated.")
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") == LICENCE_ASSERTION:
            return dict(assertion.get("data") or {})
    raise PetportraitError("provenance_invalid", "The manifest names no licence.")
