"""Delivery latency: from the commit of an event to the message at a loopback SMTP server and the webhook
at a loopback receiver, through the real consumer's periodic tasks (default intervals unless given).

    PYTHONPATH=src python bench/notify_latency.py --events 20 [--email-interval 5 --webhook-interval 2]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from petportrait.accounts import service as accounts_service
from petportrait.integrations import service as webhooks
from petportrait.jobs.worker import Consumer
from petportrait.registry import emit
from petportrait.services import build_services
from petportrait.settings import Settings
from tests.notifications.receivers import HookReceiver, SmtpSink


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--email-interval", type=float, default=None)
    parser.add_argument("--webhook-interval", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SmtpSink() as sink, HookReceiver() as hooks:
        email: dict[str, object] = {"smtp_url": sink.url}
        if args.email_interval:
            email["deliver_interval_seconds"] = args.email_interval
        hook: dict[str, object] = {"allow_private_targets": True}
        if args.webhook_interval:
            hook["deliver_interval_seconds"] = args.webhook_interval
        settings = Settings(
            environment="test",
            data_dir=Path(tmp),
            email=email,
            webhooks=hook,  # type: ignore[arg-type]
            security={"secret_key": secrets.token_hex(32)},  # type: ignore[arg-type]
            queue={"embedded_consumer": False},  # type: ignore[arg-type]
        )
        services = build_services(settings, migrate=True)
        with services.session_factory() as session:
            user = accounts_service.create_user(session, email="bench@example.com", password="x" * 16)
            webhooks.create_endpoint(
                session, owner_id=user.id, url=hooks.url(), events=["model.failed"], settings=settings
            )
            session.commit()
            user_id = user.id
        consumer = Consumer(services)
        consumer.start()
        time.sleep(1.0)
        committed: list[float] = []
        try:
            for i in range(args.events):
                with services.session_factory() as session:
                    emit(
                        session,
                        "model.failed",
                        owner_id=user_id,
                        model_id=f"m{i}",
                        pet_id="p",
                        error_code="bench",
                    )
                    session.commit()
                committed.append(time.monotonic())
                time.sleep(0.37)  # spread events over the polling cycle
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                len(sink.arrivals()) < args.events or len(hooks.received) < args.events
            ):
                time.sleep(0.05)
        finally:
            consumer.stop(timeout=10)
        mail = [at - c for c, (at, _) in zip(committed, sink.arrivals(), strict=False)]
        hook_lat = [r.at - c for c, r in zip(committed, hooks.received, strict=False)]
        for name, values, interval in (
            ("email", mail, settings.email.deliver_interval_seconds),
            ("webhook", hook_lat, settings.webhooks.deliver_interval_seconds),
        ):
            values.sort()
            print(
                f"{name}: n={len(values)} interval={interval:g}s median={statistics.median(values):.2f}s "
                f"p95={values[int(0.95 * (len(values) - 1))]:.2f}s max={values[-1]:.2f}s"
            )
        services.engine.dispose()


if __name__ == "__main__":
    main()
