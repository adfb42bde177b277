"""Raw sockets: bytes in, bytes out, for requests a client library would refuse to send and
for reading until the server closes. Every read has a timeout and every loop a deadline."""
import socket
import time


def recv_until_close(s, total=30, reset_is_close=False, quiet_is_close=False):
    """Everything s receives until the server closes it. Each recv is bounded by s's own
    timeout: socket.timeout propagates, unless quiet_is_close (then the read ends there);
    with reset_is_close a reset ends the read like a close. A server still sending after
    `total` seconds fails the test."""
    deadline = time.time() + total
    out = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            if reset_is_close:
                return out
            raise
        except socket.timeout:
            if quiet_is_close:
                return out
            raise
        if not chunk:
            return out
        out += chunk
    raise AssertionError("the server still sends after %ss (%d bytes)" % (total, len(out)))


def raw_http(addr, data, timeout=5, port=8500, total=60):
    """Sends raw bytes and returns everything the server answers until it closes (or until
    `timeout` seconds pass without a byte). A server still sending after `total` seconds
    fails the test."""
    s = socket.create_connection((addr, port), timeout=timeout)
    try:
        s.sendall(data)
        return recv_until_close(s, total=total, quiet_is_close=True)
    finally:
        s.close()
