"""The worker's consumer, reconnecting to the broker at most RECONNECT_INTERVAL_MAX seconds after it
is back (make_celery sets it as Celery's `worker_consumer`).

Celery's consumer retries a lost broker connection 2, 4, 6 ... 30 s apart: kombu's
Connection.ensure_connection defaults, which Celery 5.x passes no setting for
(`broker_connection_retry*` only switch retrying on or off and bound the attempts;
`broker_transport_options` and `broker_connection_timeout` do not reach this loop). After a long
Redis outage the worker would take jobs again up to 30 s after Redis is back.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery.worker.consumer import Consumer

# 1, 2, 3, 4, then 5 s apart: jobs resume at most 5 s after the broker is back, for one connection
# attempt every 5 s while it is down (a TCP connect, refused at once or timed out by
# broker_connection_timeout).
RECONNECT_INTERVAL_MAX = 5


class PromptlyReconnectingConsumer(Consumer):
    def ensure_connected(self, conn: Any) -> Any:
        # Celery calls conn.ensure_connection(errback, max_retries, callback=...) on the connection
        # it has just made for this consumer: give that one call kombu's interval arguments.
        conn.ensure_connection = partial(
            conn.ensure_connection, interval_start=1, interval_step=1, interval_max=RECONNECT_INTERVAL_MAX
        )
        return super().ensure_connected(conn)
