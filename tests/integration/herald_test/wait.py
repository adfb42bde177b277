"""Bounded waits on observable state (never a bare sleep as synchronisation)."""
import time


def wait_until(fn, timeout=10, interval=0.02, msg="condition"):
    """Calls fn until it returns something true (returned) or `timeout` seconds have passed
    (AssertionError naming msg and the last value)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)  # the poll interval of this bounded wait
    raise AssertionError("timed out waiting for %s (last: %r)" % (msg, last))
