"""Webhook deliveries: one per event (firing or resolved) and webhook, kept in the store (an outbox) by the
same transaction that records the event, then sent by the evaluator's notifier:

* **Payloads.** `json`: Maple's event as JSON (below); `slack`: Slack's incoming-webhook form (`text`), which
  Mattermost, Rocket.Chat and Teams' Slack-compatible hooks take too.
* **Signature.** ``X-Maple-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<X-Maple-Timestamp>.<body>``
  with the webhook's secret (shown once when the webhook is created), so a receiver can check the sender
  and refuse replays of old bodies. ``X-Maple-Delivery`` (the delivery id) lets it drop a repeat.
* **Retries.** A delivery is claimed before it is sent (an atomic update: two notifiers never send it at
  once), each attempt is recorded (status code or error, duration), and a failure (an error, a timeout, a
  non-2xx answer) is retried after 2, 4, 8 ... s, up to `api.webhook_retries` attempts.
* **Never in the way.** Attempts run on the notifier's own threads with `api.webhook_timeout_s`: a slow or
  failing receiver delays only its own deliveries, never the evaluation of rules.
* **Targets.** A webhook may not point at loopback, private or link-local addresses unless
  `api.webhook_private_targets` allows it; the address checked is the address connected to (no second DNS
  lookup), and redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update

from maple.settings import Settings
from query.store import Store, rowcount
from query.store.tables import DeliveryAttemptRow, DeliveryRow, WebhookRow

log = logging.getLogger(__name__)

BACKOFF_START_S = 2.0
BACKOFF_MAX_S = 600.0
CLAIM_BATCH = 50
USER_AGENT = "maple-alerts/1"


class TargetError(ValueError):
    """A webhook URL Maple will not call; the message says why."""


def _resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def check_target(url: str, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, the address to connect to) for `url`, or TargetError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError("url: an http:// or https:// URL is required")
    if parts.username or parts.password:
        raise TargetError("url: credentials in the URL are not accepted (the body is signed instead)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = _resolve(parts.hostname, port)
    except OSError as exc:
        raise TargetError(f"url: {parts.hostname} does not resolve ({exc})") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not allow_private and (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                                  or ip.is_multicast or ip.is_unspecified):
            raise TargetError(f"url: {parts.hostname} is {address}, a private or local address; set "
                              "api.webhook_private_targets (MAPLE_API_WEBHOOK_PRIVATE_TARGETS) to allow it")
    return parts.scheme, parts.hostname, port, addresses[0]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    """The body a webhook of `kind` gets for `event` (Maple's event fields)."""
    if kind == "slack":
        icon = ":red_circle:" if event["state"] == "firing" else ":large_green_circle:"
        group = f" {event['group']}" if event["group"] else ""
        value = "no value" if event["value"] is None else f"{event['value']:g}"
        return {"text": f"{icon} [{event['state'].upper()}] {event['rule']['name']} ({event['team']}){group}: "
                        f"{value} {event['condition']['op']} {event['condition']['threshold']:g}"}
    return event


class _Pinned(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTls(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> int:
    """POST `body`; the status code (redirects are answers, not followed). Raises OSError / TargetError."""
    scheme, host, port, address = check_target(url, allow_private)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = (_PinnedTls if scheme == "https" else _Pinned)(host, port, address, timeout)
    try:
        connection.request("POST", path, body=body, headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]})
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


class Notifier:
    """Sends the deliveries that are due, on its own threads."""

    def __init__(self, store: Store, settings: Settings, workers: int = 4) -> None:
        self.store = store
        self.settings = settings
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="maple-webhook")
        self._inflight: set[int] = set()
        self._lock = threading.Lock()

    def pump(self, now: float | None = None) -> list[Any]:
        """Claim the due deliveries and start sending them; returns their futures."""
        now = time.time() if now is None else now
        api = self.settings.api
        hold = api.webhook_timeout_s * 2 + 30  # a claim lapses if this process dies mid-attempt
        with self.store.session() as session:
            due = session.scalars(select(DeliveryRow.id).where(DeliveryRow.status == "pending",
                                                               DeliveryRow.next_attempt_at <= now)
                                  .order_by(DeliveryRow.next_attempt_at).limit(CLAIM_BATCH)).all()
        futures = []
        for delivery_id in due:
            with self._lock:
                if delivery_id in self._inflight:
                    continue
            with self.store.session() as session:
                claimed = rowcount(session.execute(update(DeliveryRow).where(
                    DeliveryRow.id == delivery_id, DeliveryRow.status == "pending", DeliveryRow.next_attempt_at <= now)
                    .values(next_attempt_at=now + hold)))
            if claimed != 1:
                continue  # another notifier has it
            with self._lock:
                self._inflight.add(delivery_id)
            futures.append(self._pool.submit(self._send, delivery_id))
        return futures

    def _send(self, delivery_id: int) -> None:
        try:
            self.attempt(delivery_id)
        except Exception:
            log.exception("webhook delivery %d failed unexpectedly", delivery_id)
        finally:
            with self._lock:
                self._inflight.discard(delivery_id)

    def attempt(self, delivery_id: int) -> bool:
        """One attempt at one delivery, recorded; True when it was delivered."""
        api = self.settings.api
        with self.store.session() as session:
            delivery = session.get(DeliveryRow, delivery_id)
            if delivery is None or delivery.status != "pending":
                return False
            hook = session.get(WebhookRow, delivery.webhook_id)
            target = (hook.url, hook.secret, hook.enabled) if hook is not None else None
            body = delivery.payload.encode()
        started = time.time()
        status: int | None = None
        error = ""
        if target is None or not target[2]:
            error = "the webhook was deleted or disabled"
        else:
            url, secret, _ = target
            stamp = str(int(started))
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Maple-Timestamp": stamp,
                       "X-Maple-Signature": signature(secret, stamp, body), "X-Maple-Delivery": str(delivery_id)}
            try:
                status = post(url, body, headers, api.webhook_timeout_s, api.webhook_private_targets)
                if not 200 <= status < 300:
                    error = f"answered {status}"
            except (OSError, TargetError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"[:1000]
        done = time.time()
        ok = not error
        with self.store.session() as session:
            delivery = session.get(DeliveryRow, delivery_id)
            if delivery is None:
                return ok
            session.add(DeliveryAttemptRow(delivery_id=delivery_id, at=started, status_code=status, error=error,
                                           duration_ms=round((done - started) * 1000, 3)))
            delivery.attempts += 1
            if ok:
                delivery.status, delivery.finished_at = "delivered", done
            elif delivery.attempts >= api.webhook_retries or target is None or not target[2]:
                delivery.status, delivery.finished_at = "failed", done
            else:
                delivery.next_attempt_at = done + min(BACKOFF_START_S * 2 ** (delivery.attempts - 1), BACKOFF_MAX_S)
        if not ok:
            log.info("webhook delivery %d: attempt failed (%s)", delivery_id, error.split(":")[0])
        return ok

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def event_body(event_id: int, team: str, rule: dict[str, Any], group: str, state: str, value: float | None,
               condition: dict[str, Any], at: float) -> dict[str, Any]:
    """Maple's event, the `json` payload (docs/alerts.md)."""
    return {"version": 1, "event_id": event_id, "team": team, "rule": rule, "group": group, "state": state,
            "value": value, "condition": {"op": condition.get("op"), "threshold": condition.get("threshold"),
                                          "kind": condition.get("kind")},
            "at": rfc3339(at), "at_unix": at}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
