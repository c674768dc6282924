"""Load generation: wrk runs (parsed) and a polling client for reloads."""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

from servers import http_get, read_response_head, run_command


HERE = os.path.dirname(os.path.abspath(__file__))
STOP_AFTER_LUA = os.path.join(HERE, "stop_after.lua")

_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def wrk_path():
    return shutil.which("wrk")


def _size(number, unit):
    return float(number) * _UNITS[unit]


def parse_wrk(text):
    """Numbers from wrk's summary: requests/s, bytes/s, errors."""
    result = {
        "requests": 0,
        "rps": 0.0,
        "bytes_per_s": 0.0,
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non_2xx": 0,
    }
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        result["rps"] = float(m.group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
    if m:
        result["bytes_per_s"] = _size(m.group(1), m.group(2))
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if m:
        for key, value in zip(("connect", "read", "write", "timeout"), m.groups()):
            result["errors"][key] = int(value)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        result["non_2xx"] = int(m.group(1))
    return result


def wrk(url, connections, duration, threads=1, headers=(), timeout=10, log_path=None):
    """Run wrk against ``url``; return parse_wrk()'s dict (+ "raw" text)."""
    threads = max(1, min(threads, connections))
    argv = [
        wrk_path(),
        "-t", str(threads),
        "-c", str(connections),
        "-d", f"{duration}s",
        "--timeout", f"{timeout}s",
    ]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    code, text = run_command(argv, timeout=duration + timeout + 30, log_path=log_path)
    if code != 0:
        raise RuntimeError(f"wrk failed ({code}): {text.strip()[-500:]}")
    result = parse_wrk(text)
    result["raw"] = text
    return result


def wrk_count(url, requests, connections, max_duration, workdir, log_path=None):
    """Send ``requests`` requests with wrk (one thread), then stop it.

    The Lua script drops a marker file when the count is reached; wrk is then
    interrupted with SIGINT, which makes it print its summary and exit.
    Returns parse_wrk()'s dict (+ "raw", "completed").
    """
    done_file = os.path.join(workdir, f"wrk-done-{os.getpid()}-{time.monotonic_ns()}")
    argv = [
        wrk_path(), "-t", "1", "-c", str(connections), "-d", f"{max_duration}s",
        "--timeout", "10s", "-s", STOP_AFTER_LUA, url,
    ]
    env = dict(os.environ, BENCH_STOP_AFTER=str(requests), BENCH_DONE_FILE=done_file)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    completed = False
    try:
        deadline = time.monotonic() + max_duration + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(done_file):
                completed = True
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.02)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if os.path.exists(done_file):
            os.unlink(done_file)
    text = out.decode("utf-8", "replace")
    if log_path:
        with open(log_path, "a") as f:
            f.write("$ " + " ".join(argv) + "\n" + text + "\n")
    result = parse_wrk(text)
    result["raw"] = text
    result["completed"] = completed
    return result


class _Downloader(threading.Thread):
    """One connection that GETs ``path`` again and again until ``deadline``.

    The body goes socket -> pipe -> /dev/null with splice(2), so the client
    never copies it into user space: on two cores, wrk and curl (which
    parse or copy every byte) saturate before a sendfile server does.
    Without os.splice it falls back to recv_into a reused buffer.
    """

    CHUNK = 1 << 20

    def __init__(self, port, path, deadline):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.deadline = deadline
        self.bytes = 0
        self.responses = 0
        self.errors = []
        self.statuses = {}

    def run(self):
        splice = getattr(os, "splice", None)
        pipe = null = None
        buf = memoryview(bytearray(self.CHUNK))
        if splice is not None:
            pipe = os.pipe()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                import fcntl

                fcntl.fcntl(pipe[1], 1031, self.CHUNK)  # F_SETPIPE_SZ
            except OSError:
                pass
        sock = None
        try:
            while time.monotonic() < self.deadline:
                try:
                    if sock is None:
                        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                        sock.settimeout(None)  # splice needs a blocking socket
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                        struct.pack("ll", 30, 0))
                    keep = self._one(sock, splice, pipe, null, buf)
                except (OSError, ValueError) as exc:
                    if time.monotonic() < self.deadline:
                        self.errors.append(type(exc).__name__)
                    keep = False
                if not keep and sock is not None:
                    sock.close()
                    sock = None
        finally:
            if sock is not None:
                sock.close()
            if pipe is not None:
                os.close(pipe[0])
                os.close(pipe[1])
                os.close(null)

    def _one(self, sock, splice, pipe, null, buf):
        """One request/response; returns whether the connection stays open."""
        sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head, rest = read_response_head(sock, 4096)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split()[:2]
        self.statuses[status] = self.statuses.get(status, 0) + 1
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        length = int(fields["content-length"])
        keep = fields.get("connection") != "close" and (
            version == "HTTP/1.1" or fields.get("connection") == "keep-alive"
        )
        got = len(rest)
        self.bytes += got
        while got < length:
            if time.monotonic() >= self.deadline:
                return False
            want = min(self.CHUNK, length - got)
            if splice is not None:
                n = splice(sock.fileno(), pipe[1], want)
                left = n
                while left:
                    left -= splice(pipe[0], null, left)
            else:
                n = sock.recv_into(buf, want)
            if not n:
                raise ValueError("truncated body")
            got += n
            self.bytes += n
        self.responses += 1
        return keep


def download(port, path, connections, duration):
    """Fetch ``path`` over ``connections`` connections for ``duration`` s.

    Returns {"bytes_per_s", "bytes", "responses", "errors", "statuses"}.
    """
    start = time.monotonic()
    workers = [_Downloader(port, path, start + duration) for _ in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration + 60)
    elapsed = time.monotonic() - start
    total = sum(w.bytes for w in workers)
    statuses = {}
    for worker in workers:
        for status, count in worker.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "bytes_per_s": total / elapsed,
        "bytes": total,
        "responses": sum(w.responses for w in workers),
        "errors": [e for w in workers for e in w.errors],
        "statuses": statuses,
    }


class Poller(threading.Thread):
    """A client that GETs on a new connection every ``interval`` seconds.

    Records every response (end time, status, body) and every failure (time,
    kind), like ``while true; do curl ...; sleep 0.01; done``.
    """

    def __init__(self, port, interval=0.01, request_timeout=15.0):
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.request_timeout = request_timeout
        self.responses = []  # (time, status, body)
        self.errors = []  # (time, kind)
        self._stop_event = threading.Event()
        self._cond = threading.Condition()

    def run(self):
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                status, body = http_get(self.port, timeout=self.request_timeout)
            except (OSError, ValueError) as exc:
                with self._cond:
                    self.errors.append((time.monotonic(), type(exc).__name__))
                    self._cond.notify_all()
            else:
                with self._cond:
                    self.responses.append((time.monotonic(), status, body))
                    self._cond.notify_all()
            pause = self.interval - (time.monotonic() - started)
            if pause > 0:
                self._stop_event.wait(pause)

    def stop(self):
        self._stop_event.set()
        self.join(timeout=self.request_timeout + 5)

    def wait_for(self, text, after, timeout):
        """Time of the first 200 response received after ``after`` whose body
        contains ``text``; None on timeout."""
        deadline = time.monotonic() + timeout
        index = 0
        with self._cond:
            while True:
                while index < len(self.responses):
                    when, status, body = self.responses[index]
                    index += 1
                    if when >= after and status == 200 and text in body:
                        return when
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.1))

    def errors_between(self, start, end):
        with self._cond:
            return [kind for when, kind in self.errors if start <= when <= end]

    def bad_status_between(self, start, end):
        with self._cond:
            return sum(
                1 for when, status, _ in self.responses
                if start <= when <= end and status != 200
            )
