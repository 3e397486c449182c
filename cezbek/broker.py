"""kombu's Redis transport, keeping one redis-py client per channel instead of one per command.

kombu's Redis channel builds a new `redis.Redis` object for every broker command it sends outside
its consuming loop: each publish, and, in a worker, each message's ack and each delivery's
unacked bookkeeping. The object is only a front to the channel's connection pool (the sockets are
pooled either way), but redis-py 8 fills ~170 response callbacks into it: about 0.18 ms of CPU
each (measured; a PING round trip costs 0.09 ms), two or three times per task a worker runs.

Here the channel makes the client once and reuses it, until its pool is replaced (kombu drops
the pools after a fork or a lost connection, and the next command makes a new client on the new
pool). A redis-py client is safe to share between threads: every command takes its own
connection from the pool. Used when the broker URL is `redis://` (settings.CELERY_BROKER_TRANSPORT).
"""

from contextlib import contextmanager

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(redis.Transport):
    Channel = Channel
