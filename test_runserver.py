"""Tests for runserver.py: real sockets on loopback, real subprocesses for the CLI.

Run with:  python -m unittest -v test_runserver

One TestCase per area of runserver.py, in the file's reading order.  Servers
listen on port 0; tests wait on events, banner lines and responses, never on
fixed sleeps.
"""

import ast
import collections
import contextlib
import email.utils
import errno
import hashlib
import importlib
import io
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import wsgiref.validate
import zipfile

import runserver

HERE = os.path.dirname(os.path.abspath(__file__))
RUNSERVER = os.path.join(HERE, "runserver.py")
TIMEOUT = 10          # seconds any single wait may take before the test fails


# ---- Shared helpers ---------------------------------------------------------------

class LogCapture(logging.Handler):
    """Collects the 'runserver' logger's records; tests can wait for one."""

    def __init__(self):
        super().__init__()
        self.records = []
        self.changed = threading.Condition()

    def emit(self, record):
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def messages(self):
        with self.changed:
            return [record.getMessage() for record in self.records]

    def clear(self):
        with self.changed:
            self.records.clear()

    def wait_for(self, pattern, timeout=TIMEOUT):
        """Return the first message matching the regex `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for record in self.records:
                    message = record.getMessage()
                    if re.search(pattern, message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no log line matching %r in %r"
                                         % (pattern, [r.getMessage() for r in self.records]))
                self.changed.wait(remaining)


LOG = LogCapture()


def setUpModule():
    logger = logging.getLogger("runserver")
    logger.addHandler(LOG)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False


def tearDownModule():
    logging.getLogger("runserver").removeHandler(LOG)


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello world\n"]


def echo_app(environ, start_response):
    """Answers with the request body and a few environ values as headers."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Content-Length", environ.get("CONTENT_LENGTH", "")),
                              ("X-Path", environ["PATH_INFO"].encode("latin-1").hex()),
                              ("Content-Length", str(len(body)))])
    return [body]


class ServerThread:
    """A make_server() server on 127.0.0.1:0, serving in a daemon thread."""

    def __init__(self, app, **options):
        options.setdefault("quiet", True)
        host = options.pop("host", "127.0.0.1")
        self.server = runserver.make_server(app, host, 0, **options)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.server.serving.wait(TIMEOUT)       # its threads are started: counts are stable

    def close(self):
        self.server.shutdown()
        self.server.close_idle_and_wait(2)
        self.server.server_close()
        self.thread.join(TIMEOUT)


class Response:
    """A response read off a socket: status, headers (lower-case names), body."""

    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.raw_head = raw_head

    def header(self, name, default=None):
        values = [value for key, value in self.headers if key == name.lower()]
        return values[0] if values else default

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


class Reader:
    """Reads HTTP responses from a socket, keeping what is left for the next."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed; had %r" % self.buffer[:200])
        self.buffer += data

    def read_until(self, marker):
        while marker not in self.buffer:
            self.fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def read_exactly(self, size):
        while len(self.buffer) < size:
            self.fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_eof(self):
        while True:
            try:
                self.fill()
            except EOFError:
                data, self.buffer = self.buffer, b""
                return data

    def response(self, method="GET"):
        head = self.read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status, reason = (lines[0].decode("latin-1").split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(int(status), reason, headers, b"", head)
        if response.status == 100:
            return response
        if method == "HEAD" or response.status in (204, 304) or response.status < 200:
            return response
        if response.header("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                parts.append(self.read_exactly(size))
                assert self.read_exactly(2) == b"\r\n"
            response.body = b"".join(parts)
        elif response.header("content-length") is not None:
            response.body = self.read_exactly(int(response.header("content-length")))
        else:
            response.body = self.read_to_eof()
        return response


class ServerTestCase(unittest.TestCase):
    """Base class: start servers, connect, send raw bytes, read responses."""

    def setUp(self):
        LOG.clear()

    def start_server(self, app=hello_app, **options):
        server = ServerThread(app, **options)
        self.addCleanup(server.close)
        return server

    def connect(self, server, timeout=TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.addCleanup(sock.close)
        return sock

    def request(self, server, raw, method="GET"):
        """Send raw bytes on a new connection and read one response."""
        sock = self.connect(server)
        sock.sendall(raw)
        return Reader(sock).response(method)

    def exchange(self, server, raw):
        """Send raw bytes on a new connection; return all bytes until the server closes."""
        sock = self.connect(server)
        sock.sendall(raw)
        return Reader(sock).read_to_eof()

    def assertClosed(self, sock):
        """The server closed the connection (EOF or reset) within TIMEOUT."""
        sock.settimeout(TIMEOUT)
        try:
            data = sock.recv(65536)
            while data:
                data = sock.recv(65536)
        except ConnectionResetError:
            pass


def get(path="/", host="127.0.0.1", extra=b""):
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(), extra)


class CLIProcess:
    """`python PROGRAM ARGS` (runserver.py by default) in its own process group,
    stdout and stderr read in a thread; `env` adds variables (None removes one)."""

    def __init__(self, args, cwd=None, env=None, program=RUNSERVER):
        environ = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
        environ.update(env or {})
        environ = {name: value for name, value in environ.items() if value is not None}
        self.process = subprocess.Popen(
            [sys.executable, program] + list(args), cwd=cwd, env=environ,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.lines = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            with self.changed:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)             # end of output
            self.changed.notify_all()

    def output(self):
        with self.changed:
            return "\n".join(line for line in self.lines if line is not None)

    def wait_for(self, pattern, timeout=TIMEOUT, start=0):
        """Wait for an output line matching `pattern`; return the match."""
        deadline = time.monotonic() + timeout
        with self.changed:
            index = start
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    if line is None:
                        raise AssertionError("process ended without printing %r; output:\n%s"
                                             % (pattern, self.output()))
                    match = re.search(pattern, line)
                    if match:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("no line matching %r within %ss; output:\n%s"
                                         % (pattern, timeout, self.output()))
                self.changed.wait(remaining)

    def wait_for_banner(self):
        """Wait for the banner; return the URL it shows."""
        return self.wait_for(r"Starting development server at (\S+)").group(1)

    def port(self):
        return int(re.search(r":(\d+)/$", self.wait_for_banner()).group(1))

    def signal(self, signum):
        os.killpg(self.process.pid, signum)

    def wait(self, timeout=TIMEOUT):
        code = self.process.wait(timeout)
        self.reader.join(timeout)
        return code

    def kill(self):
        try:            # the whole group, even if its leader is gone: no orphan worker
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(TIMEOUT)
        self.process.stdout.close()


class CLITestCase(unittest.TestCase):
    """Base class: run the command line in subprocesses, in a scratch directory."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="runserver-test-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write(self, name, text):
        path = os.path.join(self.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, path)        # an atomic save, as editors do
        return path

    def start(self, *args, env=None, launcher=None):
        """runserver.py ARGS, or `python LAUNCHER runserver.py ARGS`."""
        if launcher is None:
            process = CLIProcess(args, cwd=self.directory, env=env)
        else:
            process = CLIProcess((RUNSERVER,) + args, self.directory, env, program=launcher)
        self.addCleanup(process.kill)
        return process

    def assertOneLineError(self, args, status, fragment):
        """The CLI with `args` exits with `status` after one line containing `fragment`."""
        code, output = self.run_cli(*args)
        self.assertEqual(code, status, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn(fragment, output)
        self.assertNotIn("Traceback", output)

    def run_cli(self, *args, timeout=TIMEOUT):
        """Run the CLI to completion; return (exit status, combined output)."""
        result = subprocess.run([sys.executable, RUNSERVER] + list(args), cwd=self.directory,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=timeout,
                                env=dict(os.environ, NO_COLOR="1"))
        return result.returncode, result.stdout.decode("utf-8", "replace")


def http_get(port, path="/", headers=b"", host="127.0.0.1"):
    """One GET on a new connection to 127.0.0.1:port; return the Response."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n"
                     % (path.encode(), host.encode(), headers))
        return Reader(sock).response()


# ---- HTTP grammar and parsing, without sockets -----------------------------------

class ParseRequestHeadTests(unittest.TestCase):

    def parse(self, data):
        return runserver.parse_request_head(data)

    def test_simple_request(self):
        head = self.parse(b"GET /a?b=1 HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nX-A: 2")
        self.assertEqual((head.method, head.target, head.version), ("GET", b"/a?b=1", "HTTP/1.1"))
        self.assertEqual(head.environ["HTTP_X_A"], "1, 2")
        self.assertTrue(head.keep_alive)

    def test_cookies_are_joined_with_semicolons(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nCookie: a=1\r\nCookie: b=2")
        self.assertEqual(head.environ["HTTP_COOKIE"], "a=1; b=2")

    def test_underscore_header_names_are_dropped(self):
        head = self.parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nX_Auth: evil\r\nX-Auth: good")
        self.assertEqual(head.environ["HTTP_X_AUTH"], "good")

    def test_connection_semantics(self):
        cases = [(b"HTTP/1.1", b"", True), (b"HTTP/1.1", b"Connection: close\r\n", False),
                 (b"HTTP/1.1", b"Connection: Keep-Alive, CLOSE\r\n", False),
                 (b"HTTP/1.0", b"", False), (b"HTTP/1.0", b"Connection: keep-alive\r\n", True)]
        for version, extra, keep_alive in cases:
            with self.subTest(version=version, extra=extra):
                head = self.parse((b"GET / %s\r\nHost: localhost\r\n%s" % (version, extra))[:-2])
                self.assertEqual(head.keep_alive, keep_alive)

    def test_absolute_form_replaces_host(self):
        head = self.parse(b"GET http://example.test:8/p?q HTTP/1.1\r\nHost: other")
        self.assertEqual(head.target, b"/p?q")
        self.assertEqual(head.environ["HTTP_HOST"], "example.test:8")

    def test_chunk_headers(self):
        self.assertEqual(runserver.parse_chunk_header(b"1a"), 26)
        self.assertEqual(runserver.parse_chunk_header(b"A;name=value;x=\"q\\\"s\""), 10)
        for bad in (b"", b"-1", b"+1", b"0x1", b"g", b"1" * 17, b"1;", b"1; =x"):
            with self.subTest(line=bad), self.assertRaises(runserver.BadRequest):
                runserver.parse_chunk_header(bad)

    def test_http_date_is_imf_fixdate(self):
        self.assertEqual(runserver.http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT")

    def test_escape_control(self):
        self.assertEqual(runserver.escape_control("a\x1b[31mb\r\n"), "a\\x1b[31mb\\x0d\\x0a")



# ---- WSGI request handler: HTTP/1.1 semantics -------------------------------------

def generator_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one,"
    yield b""
    yield b"two"


class KeepAliveTests(ServerTestCase):

    def test_two_requests_on_one_connection(self):
        server = self.start_server()
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get())
            response = reader.response()
            self.assertEqual((response.status, response.body), (200, b"Hello world\n"))
            self.assertIsNone(response.header("connection"))

    def test_connection_close_is_honoured(self):
        server = self.start_server()
        data = self.exchange(server, get(extra=b"Connection: close\r\n") + get())
        self.assertEqual(data.count(b"HTTP/1.1 200"), 1)
        self.assertIn(b"Connection: close", data)

    def test_http10_closes_unless_keep_alive_is_asked(self):
        server = self.start_server()
        data = self.exchange(server, b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"))
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = reader.response()
            self.assertEqual(response.header("connection"), "keep-alive")

    def test_pipelined_requests_are_answered_in_order(self):
        def path_app(environ, start_response):
            body = environ["PATH_INFO"].encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = self.start_server(path_app)
        sock = self.connect(server)
        sock.sendall(b"".join(get("/%d" % i) for i in range(20)))
        reader = Reader(sock)
        self.assertEqual([reader.response().body for _ in range(20)],
                         [b"/%d" % i for i in range(20)])

    def test_leading_empty_lines_are_ignored(self):
        server = self.start_server()
        self.assertEqual(self.request(server, b"\r\n" + get()).status, 200)

    def test_nothreading_server_closes_after_each_response(self):
        server = self.start_server(threading=False)
        data = self.exchange(server, get())
        self.assertIn(b"Connection: close", data)


class ResponseFramingTests(ServerTestCase):

    def test_response_without_length_is_chunked_for_http11(self):
        server = self.start_server(generator_app)
        response = self.request(server, get())
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertEqual(response.body, b"one,two")

    def test_response_without_length_closes_for_http10(self):
        server = self.start_server(generator_app)
        data = self.exchange(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(body, b"one,two")

    def test_single_chunk_list_gets_a_content_length(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"abc"]
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.header("content-length"), "3")

    def test_head_keeps_content_length_but_sends_no_body(self):
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n" + get())
        reader = Reader(sock)
        head = reader.response("HEAD")
        self.assertEqual(head.header("content-length"), "12")
        self.assertEqual(reader.response().body, b"Hello world\n")   # nothing was in between

    def test_no_body_statuses_never_carry_a_body(self):
        for status in ("204 No Content", "304 Not Modified"):
            def app(environ, start_response, status=status):
                start_response(status, [])
                return [b"ignored"]
            with self.subTest(status=status):
                server = self.start_server(app)
                sock = self.connect(server)
                sock.sendall(get() + get())
                reader = Reader(sock)
                first = reader.response()
                self.assertEqual(first.status, int(status[:3]))
                self.assertIsNone(first.header("transfer-encoding"))
                self.assertEqual(reader.response().status, int(status[:3]))

    def test_date_and_server_headers(self):
        response = self.request(self.start_server(), get())
        self.assertRegex(response.header("date"), r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertTrue(response.header("server").startswith("runserver.py/"))

    def test_empty_response_gets_content_length_zero(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return []
        response = self.request(self.start_server(app), get())
        self.assertEqual((response.header("content-length"), response.body), ("0", b""))


class RequestBodyTests(ServerTestCase):

    def test_read_without_size_stops_at_the_body_end(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello" + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().body, b"hello")
        self.assertEqual(reader.response().status, 200)

    def test_readline_and_iteration(self):
        def app(environ, start_response):
            stream = environ["wsgi.input"]
            first = stream.readline()
            second = stream.readline(3)
            rest = list(stream)
            body = repr((first, second, rest)).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        server = self.start_server(app)
        body = b"line one\nline two\nthree"
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(body), body))
        self.assertEqual(response.body, repr((b"line one\n", b"lin", [b"e two\n", b"three"])).encode())

    def test_chunked_body_is_decoded_with_content_length_set(self):
        seen = {}

        def app(environ, start_response):
            seen["terminated"] = environ["wsgi.input_terminated"]
            return echo_app(environ, start_response)
        server = self.start_server(app)
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                                        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        self.assertEqual(response.body, b"hello world")
        self.assertEqual(response.header("x-content-length"), "11")
        self.assertTrue(seen["terminated"])

    def test_large_chunked_body_spools_to_a_file(self):
        data = os.urandom(3 << 20)
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(data), 1 << 20):
            block = data[start:start + (1 << 20)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        sock.sendall(b"0\r\n\r\n")
        self.assertEqual(Reader(sock).response().body, data)

    def test_unread_body_is_drained_before_the_next_request(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\n\r\nGET /evil HTTP" + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(LOG.messages().count("x"), 0)
        self.assertNotIn(b"HTTP", reader.buffer)

    def test_expect_100_continue_is_sent_once_when_the_app_reads(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 100)
        sock.sendall(b"body")
        response = reader.response()
        self.assertEqual((response.status, response.body), (200, b"body"))
        self.assertNotIn(b"100 Continue", reader.buffer)

    def test_no_100_continue_when_the_app_does_not_read(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        response = reader.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("connection"), "close")

    def test_chunked_upload_with_expect_100_continue(self):
        server = self.start_server(echo_app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        self.assertEqual(reader.response().status, 100)
        sock.sendall(b"3\r\nabc\r\n0\r\n\r\n")
        self.assertEqual(reader.response().body, b"abc")


class EnvironTests(ServerTestCase):

    def capture(self, raw, **options):
        seen = {}

        def app(environ, start_response):
            seen.update(environ)
            return hello_app(environ, start_response)
        server = self.start_server(app, **options)
        self.request(server, raw)
        return seen, server

    def test_cgi_variables(self):
        environ, server = self.capture(
            b"GET /a%20b/%C3%A9?x=%20 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/x\r\n"
            b"X-Many: 1\r\nx-many: 2\r\n\r\n")
        self.assertEqual(environ["REQUEST_METHOD"], "GET")
        self.assertEqual(environ["SCRIPT_NAME"], "")
        self.assertEqual(environ["PATH_INFO"], "/a b/\xc3\xa9")
        self.assertEqual(environ["QUERY_STRING"], "x=%20")
        self.assertEqual(environ["CONTENT_TYPE"], "text/x")
        self.assertEqual(environ["SERVER_NAME"], "127.0.0.1")
        self.assertEqual(environ["SERVER_PORT"], str(server.port))
        self.assertEqual(environ["SERVER_PROTOCOL"], "HTTP/1.1")
        self.assertEqual(environ["REMOTE_ADDR"], "127.0.0.1")
        self.assertTrue(environ["REMOTE_PORT"].isdigit())
        self.assertEqual(environ["HTTP_X_MANY"], "1, 2")
        self.assertEqual(environ["HTTP_HOST"], "localhost")
        self.assertNotIn("HTTP_CONTENT_TYPE", environ)
        self.assertEqual(environ["wsgi.version"], (1, 0))
        self.assertEqual(environ["wsgi.url_scheme"], "http")
        self.assertIs(environ["wsgi.multithread"], True)
        self.assertIs(environ["wsgi.multiprocess"], False)
        self.assertIs(environ["wsgi.run_once"], False)
        self.assertIs(environ["wsgi.file_wrapper"], runserver.FileWrapper)

    def test_wsgiref_validator_accepts_the_server(self):
        def app(environ, start_response):
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        server = self.start_server(wsgiref.validate.validator(app))
        with warnings_as_errors():
            for raw in (get("/v?q=1"), b"POST /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
                        b"POST /p HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"):
                with self.subTest(raw=raw):
                    self.assertEqual(self.request(server, raw).body, b"ok")


@contextlib.contextmanager
def warnings_as_errors():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


class StartResponseTests(ServerTestCase):

    def test_write_callable_and_headers_on_first_nonempty_chunk(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "6")])
            write(b"abc")
            return [b"", b"def"]
        self.assertEqual(self.request(self.start_server(app), get()).body, b"abcdef")

    def test_error_before_the_first_chunk_can_still_become_a_500(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b""
            raise ValueError("late but not too late")
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.status, 500)
        self.assertIn(b"late but not too late", response.body)

    def test_exc_info_replaces_headers_before_they_are_sent(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            try:
                raise KeyError("x")
            except KeyError:
                start_response("503 Service Unavailable", [("Content-Length", "4")], sys.exc_info())
            return [b"oops"]
        response = self.request(self.start_server(app), get())
        self.assertEqual((response.status, response.body), (503, b"oops"))

    def test_exc_info_after_headers_were_sent_reraises(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "100")])
            write(b"partial")
            try:
                raise KeyError("after")
            except KeyError:
                start_response("500 Error", [], sys.exc_info())
            return [b"never"]
        server = self.start_server(app)
        data = self.exchange(server, get())
        self.assertTrue(data.startswith(b"HTTP/1.1 200"))
        self.assertTrue(data.endswith(b"partial"))
        LOG.wait_for(r"response cut short")

    def test_close_is_always_called(self):
        closed = threading.Event()

        class Body:
            def __iter__(self):
                yield b"x"

            def close(self):
                closed.set()

        def app(environ, start_response):
            start_response("200 OK", [])
            return Body()
        self.assertEqual(self.request(self.start_server(app), get()).body, b"x")
        self.assertTrue(closed.wait(TIMEOUT))

    def test_invalid_app_output_becomes_a_500_with_a_log_line(self):
        cases = {
            "status is bytes": lambda s: s(b"200 OK", []),
            "header with newline": lambda s: s("200 OK", [("X-A", "a\r\nSet-Cookie: x")]),
            "hop-by-hop header": lambda s: s("200 OK", [("Connection", "close")]),
            "headers as a tuple": lambda s: s("200 OK", ()),
        }
        for name, call in cases.items():
            def app(environ, start_response, call=call):
                call(start_response)
                return [b"body"]
            with self.subTest(name):
                LOG.clear()
                response = self.request(self.start_server(app), get())
                self.assertEqual(response.status, 500)
                self.assertNotIn(b"Set-Cookie: x", response.raw_head)
                LOG.wait_for(r"Error in the app")

    def test_non_bytes_chunk_is_a_500(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return ["text"]
        self.assertEqual(self.request(self.start_server(app), get()).status, 500)


class AppErrorTests(ServerTestCase):

    @staticmethod
    def failing_app(environ, start_response):
        raise RuntimeError("the app's own bug")

    def test_debug_500_shows_the_traceback_as_text_or_html(self):
        server = self.start_server(self.failing_app, debug=True)
        text = self.request(server, get())
        self.assertEqual(text.status, 500)
        self.assertTrue(text.header("content-type").startswith("text/plain"))
        self.assertIn(b"RuntimeError: the app's own bug", text.body)
        page = self.request(server, get(extra=b"Accept: text/html\r\n"))
        self.assertTrue(page.header("content-type").startswith("text/html"))
        self.assertIn(b"RuntimeError: the app&#x27;s own bug", page.body)
        LOG.wait_for(r"RuntimeError: the app's own bug")

    def test_without_debug_the_page_is_generic_but_the_log_has_it(self):
        server = self.start_server(self.failing_app, debug=False)
        response = self.request(server, get())
        self.assertEqual(response.status, 500)
        self.assertNotIn(b"RuntimeError", response.body)
        LOG.wait_for(r"RuntimeError: the app's own bug")

    def test_error_after_headers_truncates_the_response(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            yield b"first"
            raise RuntimeError("mid-stream")
        server = self.start_server(app)
        data = self.exchange(server, get())
        self.assertIn(b"5\r\nfirst\r\n", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"))
        LOG.wait_for(r"response cut short")

    def test_client_disconnect_mid_response_is_one_quiet_line(self):
        sent = threading.Event()

        def app(environ, start_response):
            start_response("200 OK", [])
            for _ in range(10000):
                yield b"x" * 65536
                sent.set()
        server = self.start_server(app)
        sock = self.connect(server)
        sock.sendall(get())
        sock.recv(100)
        self.assertTrue(sent.wait(TIMEOUT))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()
        LOG.wait_for(r"client disconnected")
        self.assertFalse([m for m in LOG.messages() if "Traceback" in m])


class FileWrapperTests(ServerTestCase):

    def setUp(self):
        super().setUp()
        file = tempfile.NamedTemporaryFile(delete=False)
        file.write(bytes(range(256)) * 1024)
        file.close()
        self.path = file.name
        self.addCleanup(os.unlink, self.path)

    def wrapper_app(self, offset=0, length=None):
        def app(environ, start_response):
            file = open(self.path, "rb")
            file.seek(offset)
            headers = [] if length is None else [("Content-Length", str(length))]
            start_response("200 OK", headers)
            return environ["wsgi.file_wrapper"](file)
        return app

    def test_sendfile_from_the_current_position(self):
        response = self.request(self.start_server(self.wrapper_app(offset=1000)), get())
        self.assertEqual(response.body, (bytes(range(256)) * 1024)[1000:])
        self.assertEqual(response.header("content-length"), str(256 * 1024 - 1000))

    def test_sendfile_never_past_the_content_length(self):
        server = self.start_server(self.wrapper_app(offset=10, length=100))
        sock = self.connect(server)
        sock.sendall(get() + get())
        reader = Reader(sock)
        self.assertEqual(reader.response().body, (bytes(range(256)) * 1024)[10:110])
        self.assertEqual(reader.response().status, 200)       # the stream stayed in sync

    def test_non_file_objects_are_read_in_blocks(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            return environ["wsgi.file_wrapper"](io.BytesIO(b"y" * 700000), 4096)
        response = self.request(self.start_server(app), get())
        self.assertEqual(response.body, b"y" * 700000)


class LoggingTests(ServerTestCase):

    def test_access_log_line(self):
        server = self.start_server(quiet=False)
        self.request(server, get("/path?q=1"))
        line = LOG.wait_for(r"GET /path")
        self.assertRegex(line, r'^"GET /path\?q=1 HTTP/1.1" 200 12 \d+\.\dms$')

    def test_quiet_has_no_access_log(self):
        server = self.start_server(quiet=True)
        self.request(server, get("/quiet"))
        self.request(server, b"BAD\r\n\r\n")
        LOG.wait_for(r"request line")
        self.assertFalse([m for m in LOG.messages() if "/quiet" in m])

    def test_control_characters_are_escaped(self):
        server = self.start_server(quiet=False)
        self.request(server, b"GET /\x1b[31m HTTP/1.1\r\nHost: localhost\r\n\r\n")
        line = LOG.wait_for(r"400")
        self.assertNotIn("\x1b", line)
        self.assertIn("\\x1b", line)


# ---- Hardening: hostile input, host checks, limits, load and app faults -----------

HOST = b"Host: 127.0.0.1\r\n"
POST = b"POST / HTTP/1.1\r\n" + HOST
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
HALF_CLOSE = b"<client half-closes>"    # a row ending with this shuts down the sending side

HOSTILE_LIMITS = dict(max_request_line=1024, max_header_size=2048, max_headers=20, max_body=1000)

# (name, raw request, expected status, regex for the reason in the log line).
# The server above uses HOSTILE_LIMITS; every row must be refused and closed.
HOSTILE_REQUESTS = [
    ("no version", b"GET /\r\n" + HOST + b"\r\n", 400, "not 'METHOD target HTTP/x.y'"),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "not 'METHOD target"),
    ("trailing space", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400, "not 'METHOD target"),
    ("tab separator", b"GET\t/\tHTTP/1.1\r\n" + HOST + b"\r\n", 400, "control character"),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n", 400, "not 'METHOD target"),
    ("lower-case version", b"GET / http/1.1\r\n" + HOST + b"\r\n", 400, "malformed request line"),
    ("version without minor", b"GET / HTTP/1\r\n" + HOST + b"\r\n", 400, "malformed request line"),
    ("two-digit major", b"GET / HTTP/11.1\r\n" + HOST + b"\r\n", 400, "malformed request line"),
    ("method not a token", b"G@T / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "method is not a token"),
    ("method with bracket", b"GET[] / HTTP/1.1\r\n" + HOST + b"\r\n", 400, "method is not a token"),
    ("relative target", b"GET foo HTTP/1.1\r\n" + HOST + b"\r\n", 400, "must start with '/'"),
    ("bare LF everywhere", b"GET / HTTP/1.1\nHost: 127.0.0.1\n\n", 400, "bare LF"),
    ("bare LF after request line", b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("bare LF in header", b"GET / HTTP/1.1\r\nX: a\nY: b\r\n" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("bare CR after request line", b"GET / HTTP/1.1\r" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("bare CR in header", b"GET / HTTP/1.1\r\nX: a\rY: b\r\n" + HOST + b"\r\n", 400, "bare CR or LF"),
    ("NUL in target", b"GET /\x00 HTTP/1.1\r\n" + HOST + b"\r\n", 400, "control character in the request line"),
    ("ESC in target", b"GET /\x1b[31m HTTP/1.1\r\n" + HOST + b"\r\n", 400, "control character in the request line"),
    ("NUL in header value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x00b\r\n\r\n", 400, "control character in a header value"),
    ("ESC in header value", b"GET / HTTP/1.1\r\n" + HOST + b"X: \x1b[2J\r\n\r\n", 400, "control character in a header value"),
    ("DEL in header value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x7f\r\n\r\n", 400, "control character in a header value"),
    ("header name not a token", b"GET / HTTP/1.1\r\n" + HOST + b"X Y: z\r\n\r\n", 400, "header name is not a token"),
    ("header name with bracket", b"GET / HTTP/1.1\r\n" + HOST + b"X[1]: z\r\n\r\n", 400, "header name is not a token"),
    ("empty header name", b"GET / HTTP/1.1\r\n" + HOST + b": z\r\n\r\n", 400, "header name is not a token"),
    ("header without colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-Y\r\n\r\n", 400, "without a colon"),
    ("space before colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-Y : z\r\n\r\n", 400, "whitespace before the colon"),
    ("tab before colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-Y\t: z\r\n\r\n", 400, "whitespace before the colon"),
    ("obs-fold with space", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n b\r\n\r\n", 400, "obsolete line folding"),
    ("obs-fold with tab", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n\tb\r\n\r\n", 400, "obsolete line folding"),
    ("fold before first header", b"GET / HTTP/1.1\r\n " + HOST + b"\r\n", 400, "obsolete line folding"),
    ("CL with plus", POST + b"Content-Length: +5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL negative", POST + b"Content-Length: -5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL hex", POST + b"Content-Length: 0x5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL underscore", POST + b"Content-Length: 5_0\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL inner space", POST + b"Content-Length: 5 5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL empty", POST + b"Content-Length: \r\n\r\nhello", 400, "Content-Length is not"),
    ("CL Arabic-Indic digit", POST + "Content-Length: \u0665\r\n\r\nhello".encode(), 400, "Content-Length is not"),
    ("CL superscript two", POST + b"Content-Length: \xb2\r\n\r\nhi", 400, "Content-Length is not"),
    ("CL fullwidth digit", POST + "Content-Length: \uff15\r\n\r\nhello".encode(), 400, "Content-Length is not"),
    ("CL absurdly long", POST + b"Content-Length: " + b"9" * 40 + b"\r\n\r\n", 400, "Content-Length is not"),
    ("CL long run of zeros", POST + b"Content-Length: " + b"0" * 30 + b"5\r\n\r\nhello", 400, "Content-Length is not"),
    ("two CL", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, "more than one Content-Length"),
    ("CL list", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400, "Content-Length is not"),
    ("CL and TE", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"),
    ("TE and CL", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"),
    ("TE chunked on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0"),
    ("TE gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE gzip, chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE chunked, chunked", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("two TE lines", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, "other than exactly 'chunked'"),
    ("TE with vertical tab", POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400, "control character in a header value"),
    ("chunk size not hex", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size signed", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size with plus", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size with 0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size too long", CHUNKED + b"0" * 17 + b"5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk size line endless", CHUNKED + b"5" * 5000, 400, "chunk header longer than"),
    ("chunk extension without name", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk extension bad name", CHUNKED + b"5; =x\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk header"),
    ("chunk extension bad quote", CHUNKED + b'5;a="x\r\nhello\r\n0\r\n\r\n', 400, "invalid chunk header"),
    ("chunk size bare LF", CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400, "bare CR or LF in a chunk header"),
    ("no CRLF after chunk data", CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400, "chunk data not followed by CRLF"),
    ("LF only after chunk data", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400, "chunk data not followed by CRLF"),
    ("bad trailer", CHUNKED + b"0\r\nX : y\r\n\r\n", 400, "invalid trailer"),
    ("EOF in chunk data", CHUNKED + b"10\r\nhello" + HALF_CLOSE, 400, "closed the connection in the middle of the body"),
    ("EOF before last chunk", CHUNKED + b"5\r\nhello\r\n" + HALF_CLOSE, 400, "closed the connection in the middle of the body"),
    ("EOF in Content-Length body", POST + b"Content-Length: 10\r\n\r\nhello" + HALF_CLOSE, 400, "closed the connection in the middle of the body"),
    ("EOF in the head", b"GET / HTTP/1.1\r\n" + HOST + HALF_CLOSE, 400, "in the middle of the head"),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", 400, "without a Host header"),
    ("two Hosts", b"GET / HTTP/1.1\r\n" + HOST + HOST + b"\r\n", 400, "more than one Host"),
    ("invalid Host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    ("asterisk with GET", b"GET * HTTP/1.1\r\n" + HOST + b"\r\n", 400, "only allowed with OPTIONS"),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505, "version 2.0 is not supported"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n", 505, "version 1.2 is not supported"),
    ("HTTP/0.9", b"GET / HTTP/0.9\r\n" + HOST + b"\r\n", 505, "version 0.9 is not supported"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "version 2.0 is not supported"),
    ("request line too long", b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414, "request line longer than 1024"),
    ("request line endless", b"GET /" + b"a" * 1100, 414, "request line longer than 1024"),
    ("header line too long", b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 2100 + b"\r\n\r\n", 431, "--max-header-size"),
    ("header block too large", b"GET / HTTP/1.1\r\n" + HOST + (b"X: " + b"a" * 150 + b"\r\n") * 15 + b"\r\n", 431, "--max-header-size"),
    ("header block endless", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n" * 600, 431, "--max-header-size"),
    ("too many headers", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n" * 20 + b"\r\n", 431, "more than 20 header lines"),
    ("CL over --max-body", POST + b"Content-Length: 1001\r\n\r\n", 413, "1001 bytes is over the limit of 1000 \\(--max-body\\)"),
    ("huge CL", POST + b"Content-Length: 999999999999\r\n\r\n", 413, "over the limit of 1000"),
    ("one chunk over --max-body", CHUNKED + b"10000\r\n", 413, "chunked body over the limit of 1000 bytes \\(--max-body\\)"),
    ("chunks adding up over --max-body", CHUNKED + (b"258\r\n" + b"x" * 600 + b"\r\n") * 2, 413, "chunked body over the limit"),
    ("Expect other than 100-continue", POST + b"Expect: 200-ok\r\nContent-Length: 2\r\n\r\nhi", 417, "Expect other than 100-continue"),
    ("Expect 100-continue twice", POST + b"Expect: 100-continue, 100-continue\r\nContent-Length: 2\r\n\r\nhi", 417, "Expect other"),
]


def read_body_app(environ, start_response):
    """Reads the whole body, answers 'ok'; records the paths it served."""
    environ["wsgi.input"].read()
    read_body_app.paths.append(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


read_body_app.paths = []


def path_app(environ, start_response):
    """Answers with its path, to tell pipelined responses apart."""
    body = environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def wait_until(predicate, timeout=TIMEOUT):
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(0.01)


def rss():
    """This process's resident set size in bytes."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\s*(\d+) kB", status.read()).group(1)) * 1024


class HostileInputTests(ServerTestCase):
    """Every row of HOSTILE_REQUESTS: its status, Connection: close, a closed
    connection, one escaped log line naming the reason, and a server that lives on."""

    def setUp(self):
        super().setUp()
        read_body_app.paths.clear()
        self.server = self.start_server(read_body_app,
                                        limits=runserver.Limits(**HOSTILE_LIMITS))
        self.idle_threads = threading.active_count()

    def refuse(self, raw):
        """Send raw bytes on a new connection; return (client port, response)."""
        sock = self.connect(self.server)
        port = sock.getsockname()[1]
        half_close = raw.endswith(HALF_CLOSE)
        sock.sendall(raw[:-len(HALF_CLOSE)] if half_close else raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = Reader(sock).response()
        self.assertClosed(sock)
        return port, response

    def test_hostile_requests(self):
        for name, raw, status, reason in HOSTILE_REQUESTS:
            with self.subTest(name):
                LOG.clear()
                port, response = self.refuse(raw)
                self.assertEqual(response.status, status, response)
                self.assertEqual(response.header("connection"), "close")
                self.assertIn(str(status).encode(), response.body)
                message = LOG.wait_for(r"^127\.0\.0\.1:%d .* %d: .*%s" % (port, status, reason))
                self.assertNotRegex(message, "[\x00-\x1f\x7f-\x9f]")
                self.assertEqual([m for m in LOG.messages()
                                  if m.startswith("127.0.0.1:%d " % port)], [message])
                self.assertEqual(http_get(self.server.port).body, b"ok")
        self.assertEqual(read_body_app.paths, ["/"] * len(HOSTILE_REQUESTS))
        self.assertFalse([r for r in LOG.records if r.exc_info or "Traceback" in r.getMessage()])
        wait_until(lambda: threading.active_count() <= self.idle_threads)

    def test_the_table_is_well_formed(self):
        names = [row[0] for row in HOSTILE_REQUESTS]
        self.assertEqual(len(names), len(set(names)))

    def test_control_characters_in_the_log_are_escaped(self):
        port, response = self.refuse(b"GET /\x1b[31mred\x07 HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertEqual(response.status, 400)
        message = LOG.wait_for(r"^127\.0\.0\.1:%d " % port)
        self.assertIn("\\x1b[31mred\\x07", message)
        self.assertNotRegex(message, "[\x00-\x1f\x7f]")

    def test_tls_on_the_http_port_is_closed_without_an_http_answer(self):
        sock = self.connect(self.server)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32)
        self.assertEqual(Reader(sock).read_to_eof(), b"")      # a TLS client cannot read one
        LOG.wait_for(r"^127\.0\.0\.1:%d .*speaks HTTP, not HTTPS" % sock.getsockname()[1])
        self.assertEqual(http_get(self.server.port).body, b"ok")

    def test_a_flood_of_empty_lines_before_a_request_is_skipped_cheaply(self):
        # RFC 9112 2.2 lets a server skip empty lines before a request; doing
        # so two bytes at a time would take far longer than the header timeout.
        server = self.start_server(read_body_app, limits=runserver.Limits(header_timeout=3))
        response = self.request(server, b"\r\n" * (8 << 20) + get())
        self.assertEqual((response.status, response.body), (200, b"ok"))

    def test_optional_whitespace_around_content_length_is_not_part_of_it(self):
        # RFC 9110 5.5: OWS around a field value is not part of the value, so
        # "Content-Length:  5 " is the number 5 (h11 and waitress agree).
        for value in (b" 5", b"\t5", b"5 ", b"5\t"):
            with self.subTest(value=value):
                response = self.request(self.server, POST + b"Content-Length:%s\r\n\r\nhello"
                                        % value)
                self.assertEqual(response.status, 200)

    def test_well_formed_edge_cases_are_served(self):
        cases = [b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n",
                 b"GET / HTTP/1.0\r\n\r\n",
                 b"\r\n\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n",     # RFC 9112 2.2
                 b"GET / HTTP/1.1\r\nhOsT:127.0.0.1\r\nX-Empty:\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + HOST + b"X: caf\xe9 \x80\xff\r\n\r\n",  # obs-text
                 POST + b"Content-Length: 0000000005\r\n\r\nhello",
                 POST + b"Transfer-Encoding: Chunked\r\n\r\n5;a=b;c=\"d e\"\r\nhello\r\n0\r\n\r\n",
                 CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
                 CHUNKED + b"3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n",
                 POST + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000,
                 POST + b"Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi"]
        for raw in cases:
            with self.subTest(raw=raw[:60]):
                sock = self.connect(self.server)
                sock.sendall(raw)
                reader = Reader(sock)
                response = reader.response()
                if response.status == 100:
                    response = reader.response()
                self.assertEqual((response.status, response.body), (200, b"ok"))

    def test_smuggled_request_is_never_served(self):
        smuggled = b"GET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
        body = b"0\r\n\r\n" + smuggled
        attempts = [
            POST + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body,
            POST + b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
            POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            POST + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + body,
            POST + b"Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + body,
            POST + b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 0\r\n\r\n" + body,
            POST + b"Content-Length: 0\r\n Transfer-Encoding: chunked\r\n\r\n" + body,
            POST + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled,
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n" + body,
        ]
        for raw in attempts:
            with self.subTest(raw=raw[:90]):
                data = self.exchange(self.server, raw)
                self.assertEqual(data.count(b"HTTP/1.1 "), 1, data)
                self.assertRegex(data, rb"^HTTP/1\.1 (400|501) ")
        self.assertEqual(read_body_app.paths, [])    # neither the POST nor /smuggled ran


class BacktrackingTests(ServerTestCase):

    def test_whitespace_heavy_header_is_refused_without_backtracking(self):
        # A field-value pattern that could also match the whitespace before it
        # took about 14 s of CPU for this head; the answer must come at once.
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b" " * 60000
                     + b"\x01\r\n\r\n")
        self.assertEqual(Reader(sock).response().status, 400)


    def test_long_absolute_form_target_is_refused_without_backtracking(self):
        server = self.start_server()
        sock = self.connect(server)
        sock.sendall(b"GET http://" + b"a" * 65000 + b"# HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(Reader(sock).response().status, 400)


def vm_size():
    """This process's virtual memory size in bytes."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmSize:\s*(\d+) kB", status.read()).group(1)) * 1024


class ReviewRegressionTests(ServerTestCase):
    """Found in review: each would have crashed, stalled or corrupted a response."""

    def test_huge_chunk_size_does_not_allocate_it(self):
        server = self.start_server(echo_app)
        before = vm_size()
        socks = []
        for _ in range(3):
            sock = self.connect(server)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n3FFFFFF0\r\nabc")
            socks.append(sock)
        time.sleep(0.2)             # let the server threads reach their recv()
        self.assertLess(vm_size() - before, 512 << 20)

    def test_bare_lf_in_a_chunked_body_is_refused_at_once(self):
        server = self.start_server(echo_app, limits=runserver.Limits(body_timeout=60))
        response = self.request(server, b"POST / HTTP/1.1\r\nHost: localhost\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n")
        self.assertEqual(response.status, 400)

    def test_bad_second_request_is_logged_without_the_first_request_line(self):
        server = self.start_server()
        self.exchange(server, get("/first-good") + b"XYZ\n\n")
        line = LOG.wait_for(r"bare LF")
        self.assertNotIn("first-good", line)

    def test_write_then_a_list_sends_one_response(self):
        def app(environ, start_response):
            write = start_response("200 OK", [])
            write(b"one")
            return [b"two"]
        server = self.start_server(app)
        data = self.exchange(server, get(extra=b"Connection: close\r\n"))
        self.assertEqual(data.count(b"HTTP/1.1"), 1, data)
        self.assertIn(b"3\r\ntwo\r\n", data)

    def test_non_latin1_header_or_status_is_a_500(self):
        for status, headers in (("200 OK", [("X-Name", "caf\u00e9 \u2713")]),
                                ("200 \u2713", []), ("101 Switching Protocols", [])):
            def app(environ, start_response, status=status, headers=headers):
                start_response(status, headers)
                return [b"x"]
            with self.subTest(status=status, headers=headers):
                self.assertEqual(self.request(self.start_server(app), get()).status, 500)

    def test_no_100_continue_after_the_response_started(self):
        def app(environ, start_response):
            write = start_response("200 OK", [])
            write(b"started")
            environ["wsgi.input"].read()
            return []
        server = self.start_server(app)
        sock = self.connect(server)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        reader = Reader(sock)
        reader.read_until(b"started")
        sock.sendall(b"body")
        data = reader.read_to_eof()
        self.assertNotIn(b"100 Continue", data)


class HostCheckTests(ServerTestCase):
    """The DNS-rebinding guard: which Host values a server answers."""

    def get_with_host(self, server, host, target=b"/"):
        """The response to a GET with this Host header."""
        return self.request(server, b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host))

    def assertAnswers(self, server, hosts):
        for host in hosts:
            with self.subTest(host=host):
                self.assertEqual(self.get_with_host(server, host).status, 200)

    def assertRefuses(self, server, hosts):
        for host in hosts:
            with self.subTest(host=host):
                response = self.get_with_host(server, host)
                self.assertEqual(response.status, 400)
                self.assertEqual(response.header("connection"), "close")
                self.assertIn(b"--allowed-hosts", response.body)
                LOG.wait_for(r"400: Host .*%s.* not allowed" % re.escape(host.decode()))

    def test_loopback_server_answers_local_names_only(self):
        server = self.start_server()
        self.assertAnswers(server, [b"localhost", b"LOCALHOST:8000", b"foo.localhost",
                                    b"a.b.localhost:1", b"localhost.", b"127.0.0.1",
                                    b"127.0.0.1:123", b"[::1]", b"[::1]:8000"])
        self.assertRefuses(server, [b"evil.test", b"evil.test:8000", b"localhost.evil.test",
                                    b"127.0.0.1.evil.test", b"evillocalhost", b"127.0.0.2",
                                    b"[::2]", b"0.0.0.0", b"192.168.1.1"])

    def test_refusal_names_the_option_and_the_host(self):
        server = self.start_server()
        response = self.get_with_host(server, b"evil.test:8000")
        self.assertIn(b"--allowed-hosts evil.test", response.body)

    def test_absolute_form_target_is_checked_too(self):
        server = self.start_server()
        response = self.get_with_host(server, b"localhost", b"http://evil.test/")
        self.assertEqual(response.status, 400)
        self.assertIn(b"--allowed-hosts", response.body)

    def test_http_1_0_without_host_is_answered(self):
        server = self.start_server()
        self.assertEqual(self.request(server, b"GET / HTTP/1.0\r\n\r\n").status, 200)

    def test_any_host_with_asterisk(self):
        server = self.start_server(allowed_hosts=["*"])
        self.assertAnswers(server, [b"evil.test", b"localhost", b"1.2.3.4:5"])

    def test_domain_and_its_subdomains(self):
        server = self.start_server(allowed_hosts=[".example.test"])
        self.assertAnswers(server, [b"example.test", b"www.example.test",
                                    b"a.b.example.test:8000", b"EXAMPLE.TEST"])
        self.assertRefuses(server, [b"evil.test", b"notexample.test", b"example.test.evil",
                                    b"localhost"])

    def test_explicit_names(self):
        server = self.start_server(allowed_hosts=["dev.test", "10.0.0.1", "::1"])
        self.assertAnswers(server, [b"dev.test", b"dev.test:80", b"10.0.0.1:8000", b"[::1]"])
        self.assertRefuses(server, [b"www.dev.test", b"10.0.0.10", b"127.0.0.1"])

    def test_server_on_all_interfaces_answers_any_host(self):
        # Tests bind only to loopback: the default for 0.0.0.0 and :: is checked
        # on the address alone.
        for address in (("0.0.0.0", 8000), ("::", 8000, 0, 0), ("192.168.1.5", 80)):
            with self.subTest(address=address):
                bound = type("Bound", (), {"server_address": address})()
                self.assertEqual(runserver.default_allowed_hosts(bound), ["*"])
        bound = type("Bound", (), {"server_address": ("127.0.0.2", 8000)})()
        self.assertNotIn("*", runserver.default_allowed_hosts(bound))


class LimitsAndTimeoutsTests(ServerTestCase):
    """Slow and silent clients are cut off by the header, idle and body timeouts."""

    def short(self, **limits):
        values = dict(header_timeout=0.5, keepalive_timeout=0.5, body_timeout=0.5)
        values.update(limits)
        return self.start_server(echo_app, limits=runserver.Limits(**values))

    def test_stalled_head_gets_408(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\n" + HOST)        # and never the blank line
        response = Reader(sock).response()
        self.assertEqual(response.status, 408)
        self.assertEqual(response.header("connection"), "close")
        self.assertClosed(sock)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--header-timeout" % sock.getsockname()[1])
        self.assertEqual(http_get(server.port).status, 200)

    def test_trickled_head_is_cut_off(self):
        # One byte every 20 ms: each recv succeeds, but the whole head would
        # take 20 s, far more than the 0.5 s header timeout.
        server = self.short()
        sock = self.connect(server)
        stop = threading.Event()
        self.addCleanup(stop.set)

        def trickle():
            try:
                for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n":
                    if stop.wait(0.02):
                        return
                    sock.send(bytes([byte]))
            except OSError:
                pass

        threading.Thread(target=trickle, daemon=True).start()
        response = Reader(sock).response()
        stop.set()
        self.assertEqual(response.status, 408)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--header-timeout" % sock.getsockname()[1])

    def test_silent_connection_is_closed(self):
        server = self.short()
        sock = self.connect(server)
        self.assertEqual(Reader(sock).read_to_eof(), b"")
        LOG.wait_for(r"^127\.0\.0\.1:%d .*--header-timeout" % sock.getsockname()[1])

    def test_idle_keep_alive_connection_is_closed(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        self.assertEqual(Reader(sock).read_to_eof(), b"")
        LOG.wait_for(r"^127\.0\.0\.1:%d .*--keepalive-timeout" % sock.getsockname()[1])

    def test_stalled_content_length_body_gets_408(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(POST + b"Content-Length: 10\r\n\r\nhel")
        response = Reader(sock).response()
        self.assertEqual(response.status, 408)
        self.assertClosed(sock)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--body-timeout" % sock.getsockname()[1])
        self.assertEqual(http_get(server.port).status, 200)

    def test_stalled_chunked_body_gets_408(self):
        server = self.short()
        sock = self.connect(server)
        sock.sendall(CHUNKED + b"5\r\nhello\r\n")
        response = Reader(sock).response()
        self.assertEqual(response.status, 408)
        self.assertClosed(sock)
        LOG.wait_for(r"^127\.0\.0\.1:%d .* 408: .*--body-timeout" % sock.getsockname()[1])

    def test_slow_but_steady_body_is_accepted(self):
        # The body timeout is about silence, not about the body's total time.
        server = self.short(body_timeout=0.5)
        sock = self.connect(server)
        sock.sendall(POST + b"Content-Length: 6\r\n\r\n")
        for index in range(6):
            time.sleep(0.1)                 # pacing a slow client, not synchronisation
            sock.sendall(b"%d" % index)
        response = Reader(sock).response()
        self.assertEqual((response.status, response.body), (200, b"012345"))

    def test_slow_reader_of_a_keep_alive_response_is_not_cut(self):
        # Writing a response is bounded by the body timeout, not by what was
        # left of the keep-alive or header timeout when the request arrived.
        big = b"x" * (32 << 20)                 # more than the socket buffers hold

        def app(environ, start_response):
            body = big if environ["PATH_INFO"] == "/big" else b"small"
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return iter([body])
        server = self.start_server(app, limits=runserver.Limits(
            header_timeout=0.2, keepalive_timeout=0.2, body_timeout=TIMEOUT))
        sock = self.connect(server)
        reader = Reader(sock)
        sock.sendall(get("/small"))
        self.assertEqual(reader.response().body, b"small")
        sock.sendall(get("/big"))
        time.sleep(0.6)                         # a client slow to read, not synchronisation
        reader.read_until(b"\r\n\r\n")
        received = len(reader.buffer)
        while received < len(big):
            data = sock.recv(1 << 20)
            self.assertTrue(data, "response cut after %d bytes" % received)
            received += len(data)
        self.assertEqual(received, len(big))

    def test_defaults_are_finite(self):
        limits = runserver.Limits()
        for name in ("max_request_line", "max_header_size", "max_headers", "max_body",
                     "header_timeout", "keepalive_timeout", "body_timeout"):
            with self.subTest(name):
                self.assertGreater(getattr(limits, name), 0)
                self.assertLess(getattr(limits, name), 1 << 40)


class LoadTests(ServerTestCase):
    """Many connections, slow clients, pipelining and huge uploads, with real sockets."""

    def test_500_concurrent_keep_alive_connections(self):
        server = self.start_server(path_app)
        idle = threading.active_count()
        socks = [self.connect(server) for _ in range(500)]
        for round in range(2):
            for index, sock in enumerate(socks):
                sock.sendall(get("/%d/%d" % (index, round)))
            for index, sock in enumerate(socks):
                reader = Reader(sock)
                response = reader.response()
                self.assertEqual((response.status, response.body),
                                 (200, b"/%d/%d" % (index, round)))
                self.assertEqual(reader.buffer, b"")
        for sock in socks:
            sock.close()
        wait_until(lambda: threading.active_count() <= idle)

    def test_200_slowloris_connections_do_not_block_a_normal_client(self):
        server = self.start_server()
        slow = [self.connect(server) for _ in range(200)]
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        self.assertEqual(http_get(server.port).body, b"Hello world\n")
        for sock in slow:
            sock.sendall(b"1\r\n\r\n")
        for sock in slow:
            self.assertEqual(Reader(sock).response().status, 200)

    def test_100_pipelined_requests_answered_in_order(self):
        server = self.start_server(path_app)
        sock = self.connect(server)
        sock.sendall(b"".join(get("/%d" % index) for index in range(99))
                     + get("/99", extra=b"Connection: close\r\n"))
        reader = Reader(sock)
        for index in range(100):
            self.assertEqual(reader.response().body, b"/%d" % index)
        self.assertEqual(reader.read_to_eof(), b"")

    UPLOAD_MIB = 256

    def upload_blocks(self):
        """UPLOAD_MIB blocks of 1 MiB; seven patterns, so misordering shows in the hash."""
        base = bytes(range(256)) * 4096
        patterns = [base[shift:] + base[:shift] for shift in (0, 1, 3, 7, 15, 31, 63)]
        return [patterns[index % 7] for index in range(self.UPLOAD_MIB)]

    def hashing_app(self):
        """An app hashing the body while streaming it, sampling the RSS as it goes."""
        def app(environ, start_response):
            digest = hashlib.sha256()
            body = environ["wsgi.input"]
            total = 0
            while True:
                data = body.read(65536)
                if not data:
                    break
                digest.update(data)
                total += len(data)
                if total % (16 << 20) == 0:
                    app.peak = max(app.peak, rss())
            result = ("%d %s" % (total, digest.hexdigest())).encode()
            start_response("200 OK", [("Content-Length", str(len(result)))])
            return [result]
        app.peak = 0
        return app

    def upload(self, chunked):
        blocks = self.upload_blocks()
        expected = hashlib.sha256()
        for block in blocks:
            expected.update(block)
        app = self.hashing_app()
        server = self.start_server(app)
        before = app.peak = rss()
        started = time.monotonic()
        sock = self.connect(server)
        if chunked:
            sock.sendall(CHUNKED)
            for block in blocks:
                sock.sendall(b"%x\r\n" % len(block))
                sock.sendall(block)
                sock.sendall(b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(POST + b"Content-Length: %d\r\n\r\n" % (self.UPLOAD_MIB << 20))
            for block in blocks:
                sock.sendall(block)
        response = Reader(sock).response()
        elapsed = time.monotonic() - started
        self.assertEqual(response.body.decode(), "%d %s" % (self.UPLOAD_MIB << 20,
                                                             expected.hexdigest()))
        self.assertLess(app.peak - before, 64 << 20, "RSS grew by %d MiB"
                        % ((app.peak - before) >> 20))
        if os.environ.get("RUNSERVER_TEST_TIMES"):
            sys.stderr.write(" [%s upload of %d MiB: %.2fs, RSS +%d MiB] "
                             % ("chunked" if chunked else "Content-Length", self.UPLOAD_MIB,
                                elapsed, (app.peak - before) >> 20))

    def test_huge_upload_with_content_length(self):
        self.upload(chunked=False)

    def test_huge_chunked_upload(self):
        self.upload(chunked=True)


class ThreadModelTests(ServerTestCase):
    """One thread serves the event loop; slow requests get threads of their own."""

    def test_the_poller(self):
        server = self.start_server()
        self.assertEqual(server.server._poller.use_epoll, runserver.Poller.use_epoll)

    def test_quick_requests_are_all_served_by_the_loop_thread(self):
        # Not even a request slowed down by a loaded machine is handed on.
        original = runserver.PROMOTE_AFTER
        runserver.PROMOTE_AFTER = TIMEOUT
        self.addCleanup(setattr, runserver, "PROMOTE_AFTER", original)
        idents = []

        def app(environ, start_response):
            idents.append(threading.get_ident())
            return hello_app(environ, start_response)
        server = ServerThread(app)
        self.addCleanup(server.close)
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
                     for _ in range(5)]
            for _ in range(3):
                for sock in socks:
                    sock.sendall(get())
                    self.assertEqual(Reader(sock).response().status, 200)
        self.assertEqual(len(idents), 15)
        self.assertEqual(len(set(idents)), 1)
        self.assertNotEqual(idents[0], server.thread.ident)     # that one is the watchdog

    def test_slow_requests_get_threads_of_their_own_which_exit_when_unused(self):
        original = runserver.SPARE_THREAD_TIMEOUT
        runserver.SPARE_THREAD_TIMEOUT = 0.05
        self.addCleanup(setattr, runserver, "SPARE_THREAD_TIMEOUT", original)
        release = threading.Event()
        started = []

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                started.append(threading.get_ident())
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = ServerThread(app)
        self.addCleanup(server.close)
        before = threading.active_count()
        with contextlib.ExitStack() as stack:
            slow = [stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
                    for _ in range(3)]
            for sock in slow:
                sock.sendall(get("/slow"))
            wait_until(lambda: len(started) == 3)
            # Three requests blocked in the app, and a fourth client still served.
            self.assertEqual(http_get(server.port).status, 200)
            self.assertEqual(len(set(started)), 3)
            release.set()
            for sock in slow:
                reader = Reader(sock)
                self.assertEqual(reader.response().status, 200)
                sock.sendall(get())         # the connection went back to the loop
                self.assertEqual(reader.response().status, 200)
        # The threads the slow requests got wait SPARE_THREAD_TIMEOUT, then exit.
        wait_until(lambda: server.server.spare_threads == 0
                   and threading.active_count() <= before)

    def test_a_request_arriving_at_shutdown_is_answered(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        idle = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(idle.close)
        idle.sendall(get())
        self.assertEqual(Reader(idle).response().status, 200)
        server.shutdown()
        thread.join(TIMEOUT)
        sock.sendall(get())                 # after the loop stopped, before the connection closed
        self.assertEqual(server.close_idle_and_wait(TIMEOUT), 0)
        response = Reader(sock).response()
        self.assertEqual((response.status, response.header("connection")), (200, "close"))
        self.assertEqual(idle.recv(10), b"")


    def test_no_thread_serves_after_serve_forever_returned(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0, quiet=True)
        self.addCleanup(server.server_close)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.assertTrue(server.serving.wait(TIMEOUT))
        self.assertEqual(http_get(server.server_port).status, 200)
        server.shutdown()
        thread.join(TIMEOUT)
        wait_until(lambda: server.spare_threads == 1)  # the loop's thread, waiting for work
        server.request_stop()
        server.serve_forever()                          # returns at once: the stop came first
        wait_until(lambda: server._leaders == 0)
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=0.3)
        self.addCleanup(sock.close)
        sock.sendall(get())
        with self.assertRaises(socket.timeout):         # it waits in the backlog, unserved
            sock.recv(100)

    def test_a_request_still_running_at_server_close_gets_its_connection_closed(self):
        release = threading.Event()

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                release.wait(TIMEOUT)
            return hello_app(environ, start_response)
        server = runserver.make_server(app, "127.0.0.1", 0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.assertTrue(server.serving.wait(TIMEOUT))
        sock = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        reader = Reader(sock)
        sock.sendall(get())
        self.assertEqual(reader.response().status, 200)
        sock.sendall(get("/slow"))
        wait_until(lambda: not all(h.idle for h in list(server._connections)))
        server.shutdown()
        self.assertEqual(server.close_idle_and_wait(0.05), 1)
        server.server_close()
        release.set()
        response = reader.response()
        self.assertEqual((response.status, response.header("connection")), (200, "close"))
        self.assertEqual(reader.read_to_eof(), b"")
        self.assertFalse([r for r in LOG.records if r.levelno >= logging.ERROR])

    def test_handler_and_server_hooks_still_apply(self):
        calls = []

        class Handler(runserver.WSGIRequestHandler):
            def handle_one_request(self):
                calls.append(self.requests)
                return super().handle_one_request()
        server = self.start_server(handler_class=Handler)
        sock = self.connect(server)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get())
            self.assertEqual(reader.response().status, 200)
        self.assertEqual(calls, [0, 1])
        refused = []
        server.server.verify_request = lambda request, address: refused.append(address) and False
        self.assertEqual(self.exchange(server, get()), b"")
        self.assertEqual(len(refused), 1)

    def test_system_exit_in_the_app_closes_that_connection_only(self):
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/exit":
                sys.exit(3)
            return hello_app(environ, start_response)
        server = self.start_server(app)
        self.assertEqual(self.exchange(server, get("/exit")), b"")
        self.assertEqual(http_get(server.port).status, 200)
        wait_until(lambda: server.server._accepted == 0)


class SelectorPoller:
    """Mixed into a test class: the same tests with the portable selector
    poller (macOS, BSD) instead of Linux's epoll."""

    def setUp(self):
        original = runserver.Poller.use_epoll
        runserver.Poller.use_epoll = False
        self.addCleanup(setattr, runserver.Poller, "use_epoll", original)
        super().setUp()


class SelectorThreadModelTests(SelectorPoller, ThreadModelTests):
    pass


class SelectorKeepAliveTests(SelectorPoller, KeepAliveTests):
    pass


class SelectorLimitsAndTimeoutsTests(SelectorPoller, LimitsAndTimeoutsTests):
    pass


class AppFaultTests(ServerTestCase):
    """Apps that raise, misuse start_response or misframe their body; clients
    that leave.  The server answers or cuts the response, calls close(), and
    the next connection is served."""

    def setUp(self):
        super().setUp()
        self.closed = threading.Event()

    def closing(self, iterable):
        """Wrap an iterable so that its close() sets self.closed."""
        test = self

        class Result:
            def __iter__(self):
                return iter(iterable)

            def close(self):
                test.closed.set()
        return Result()

    def serve(self, app):
        server = self.start_server(app)
        self.addCleanup(lambda: self.assertEqual(http_get(server.port).status, 200))
        return server

    def fault_app(self, fault):
        """An app that misbehaves as `fault` says, except for http_get()'s
        requests (GET / with Connection: close), which it answers normally."""
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/" and environ.get("HTTP_CONNECTION") == "close":
                return hello_app(environ, start_response)
            return fault(environ, start_response)
        return app

    def test_exception_before_start_response(self):
        def fault(environ, start_response):
            raise ValueError("boom before")
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        self.assertIn(b"Connection: close", data)
        LOG.wait_for(r"(?s)Error in the app while serving GET /x.*ValueError: boom before")

    def test_exception_after_start_response(self):
        def fault(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            raise ValueError("boom after")
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        self.assertNotIn(b"200 OK", data)
        LOG.wait_for(r"ValueError: boom after")

    def test_exception_in_iterator_before_first_chunk(self):
        def body():
            raise ValueError("boom in iterator")
            yield b""
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), self.closing(body()))[1]))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        self.assertTrue(self.closed.wait(TIMEOUT))

    def test_exception_in_iterator_after_first_chunk(self):
        def body():
            yield b"first part"
            raise ValueError("boom mid-body")
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), self.closing(body()))[1]))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 200 ")
        self.assertIn(b"Transfer-Encoding: chunked", data)
        self.assertTrue(data.endswith(b"a\r\nfirst part\r\n"), data)   # no last chunk
        self.assertTrue(self.closed.wait(TIMEOUT))
        LOG.wait_for(r"response cut short by an app error")

    def test_exception_in_iterator_with_content_length(self):
        def body():
            yield b"12345"
            raise ValueError("boom mid-body")
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "10")]), self.closing(body()))[1]))
        data = self.exchange(server, get("/x"))
        self.assertTrue(data.endswith(b"\r\n\r\n12345"), data)
        self.assertTrue(self.closed.wait(TIMEOUT))

    def test_exception_in_close(self):
        class Result:
            def __iter__(self):
                return iter([b"ok", b"!"])

            def close(self):
                raise ValueError("boom in close")
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), Result())[1]))
        sock = self.connect(server)
        sock.sendall(get("/x") + get("/y"))      # the second is never answered
        reader = Reader(sock)
        self.assertEqual(reader.response().body, b"ok!")
        self.assertEqual(reader.read_to_eof(), b"")
        LOG.wait_for(r"Error in close\(\) of the app's response")
        self.assertIn("boom in close", str([r.exc_info[1] for r in LOG.records if r.exc_info]))

    def test_start_response_twice(self):
        def fault(environ, start_response):
            start_response("200 OK", [])
            start_response("404 Not Found", [])
            return self.closing([b"x"])
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 500 ")
        LOG.wait_for(r"start_response\(\) called a second time")

    def test_start_response_with_exc_info_after_headers_sent(self):
        def fault(environ, start_response):
            write = start_response("200 OK", [])
            write(b"partial")
            try:
                raise ValueError("late error")
            except ValueError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            return [b"never"]
        server = self.serve(self.fault_app(fault))
        data = self.exchange(server, get("/x"))
        self.assertRegex(data, rb"^HTTP/1\.1 200 ")
        self.assertNotIn(b"never", data)
        self.assertNotIn(b"HTTP/1.1 500", data)
        LOG.wait_for(r"ValueError: late error")

    def test_start_response_with_exc_info_before_headers_sent(self):
        def app(environ, start_response):
            start_response("200 OK", [])
            try:
                raise ValueError("early error")
            except ValueError:
                start_response("503 Service Unavailable", [("Content-Length", "4")],
                               sys.exc_info())
            return [b"busy"]
        server = self.serve(self.fault_app(app))
        response = self.request(server, get("/x"))
        self.assertEqual((response.status, response.body), (503, b"busy"))

    def test_body_shorter_than_content_length(self):
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "10")]),
            self.closing([b"abc", b"de"]))[1]))
        sock = self.connect(server)
        sock.sendall(get("/x") + get("/y"))
        data = Reader(sock).read_to_eof()
        self.assertTrue(data.endswith(b"\r\n\r\nabcde"), data)
        self.assertEqual(data.count(b"HTTP/1.1"), 1)
        self.assertTrue(self.closed.wait(TIMEOUT))
        LOG.wait_for(r"5 bytes less than its Content-Length")

    def test_body_longer_than_content_length(self):
        for body in ([b"abcdef"], [b"ab", b"cd", b"ef"], iter([b"abc", b"def"])):
            with self.subTest(body=body):
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", [("Content-Length", "3")]), body)[1]))
                sock = self.connect(server)
                sock.sendall(get("/x") + get("/y"))
                data = Reader(sock).read_to_eof()
                self.assertTrue(data.endswith(b"\r\n\r\nabc"), data)
                self.assertEqual(data.count(b"HTTP/1.1"), 1)
                LOG.wait_for(r"more bytes than its Content-Length")

    def test_head_response_never_has_a_body(self):
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "3")]), [b"abc", b"def"])[1]))
        data = self.exchange(server, b"HEAD /x HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        self.assertTrue(data.endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n"), data)

    def test_non_bytes_body(self):
        for body, before in ((["text"], True), ([""], True), ([b"a", "text"], False), ([b"a", None], False)):
            with self.subTest(body=body):
                self.closed.clear()
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", []), self.closing(body))[1]))
                data = self.exchange(server, get("/x"))
                if before:
                    self.assertRegex(data, rb"^HTTP/1\.1 500 ")
                else:
                    self.assertTrue(data.endswith(b"1\r\na\r\n"), data)   # cut, no last chunk
                self.assertTrue(self.closed.wait(TIMEOUT))
                LOG.wait_for(r"not bytes, as body data")

    def test_invalid_response_headers(self):
        cases = [("X-Injected", "a\r\nSet-Cookie: evil=1"), ("X-Injected", "a\nb"),
                 ("X-Injected", "a\x00"), ("X Bad", "a"), ("X-Bytes", b"a"),
                 ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked"),
                 ("Keep-Alive", "timeout=5"), ("Upgrade", "websocket"),
                 ("Content-Length", "+3"), ("Content-Length", "\u0663")]
        for name, value in cases:
            with self.subTest(header=(name, value)):
                self.closed.clear()
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", [(name, value)]), self.closing([b"abc"]))[1]))
                data = self.exchange(server, get("/x"))
                self.assertRegex(data, rb"^HTTP/1\.1 500 ")
                self.assertNotIn(b"evil=1\r\n", data)
                self.assertNotIn(b"X-Injected", data.partition(b"\r\n\r\n")[0])

    def test_header_checks_do_not_depend_on_the_cache(self):
        # A checked ("X-A", "1") is cached; an equal namedtuple is still not a tuple.
        Header = collections.namedtuple("Header", "name value")
        for headers in ([("X-Cached", "1")], [Header("X-Cached", "1")]):
            with self.subTest(headers=headers):
                server = self.serve(self.fault_app(lambda environ, start_response: (
                    start_response("200 OK", headers), [b"abc"])[1]))
                data = self.exchange(server, get("/x", extra=b"Connection: close\r\n"))
                status = b"200" if type(headers[0]) is tuple else b"500"
                self.assertTrue(data.startswith(b"HTTP/1.1 %s " % status), data)

    def test_headers_are_sent_as_checked_by_start_response(self):
        # PEP 3333 lets the server send the headers later; it sends what it
        # checked, not what the app put in the list afterwards.
        def late(environ, start_response):
            headers = [("Content-Type", "text/plain")]
            start_response("200 OK", headers)
            headers.append(("X-Late", "a\r\nSet-Cookie: evil=1"))
            yield b"abc"
        server = self.serve(self.fault_app(late))
        data = self.exchange(server, get("/x", extra=b"Connection: close\r\n"))
        self.assertRegex(data, rb"^HTTP/1\.1 200 ")
        self.assertNotIn(b"X-Late", data)
        self.assertNotIn(b"evil", data)

    def test_two_content_lengths_are_refused(self):
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", [("Content-Length", "3"), ("Content-Length", "3")]),
            [b"abc"])[1]))
        self.assertRegex(self.exchange(server, get("/x")), rb"^HTTP/1\.1 500 ")

    def test_client_disconnects_mid_upload(self):
        finished = threading.Event()

        def fault(environ, start_response):
            try:
                environ["wsgi.input"].read()
            finally:
                finished.set()
            start_response("200 OK", [])
            return [b"never"]
        server = self.serve(self.fault_app(fault))
        sock = self.connect(server)
        sock.sendall(POST + b"Content-Length: 1000000\r\n\r\n" + b"x" * 100000)
        sock.close()
        self.assertTrue(finished.wait(TIMEOUT))
        LOG.wait_for(r"400: client closed the connection in the middle of the body")
        self.assertFalse([r for r in LOG.records if r.exc_info])

    def test_client_disconnects_mid_chunked_upload(self):
        server = self.serve(self.fault_app(echo_app))
        sock = self.connect(server)
        sock.sendall(CHUNKED + b"100000\r\n" + b"x" * 100000)
        sock.close()
        LOG.wait_for(r"400: client closed the connection in the middle of the body")

    def test_client_disconnects_mid_download(self):
        def body():
            block = b"x" * 65536
            for _ in range(4096):           # 256 MiB, far more than socket buffers
                yield block
        server = self.serve(self.fault_app(lambda environ, start_response: (
            start_response("200 OK", []), self.closing(body()))[1]))
        sock = self.connect(server)
        sock.sendall(get("/x"))
        Reader(sock).read_exactly(100000)
        sock.close()
        self.assertTrue(self.closed.wait(TIMEOUT))
        LOG.wait_for(r"GET /x HTTP/1\.1\" 200 \d+ .*\(client disconnected\)")
        self.assertFalse([r for r in LOG.records if r.exc_info])

    def test_client_disconnects_before_the_app_answers(self):
        answered = threading.Event()
        release = threading.Event()

        def fault(environ, start_response):
            release.wait(TIMEOUT)
            start_response("200 OK", [])
            try:
                return self.closing([b"x" * 65536] * 64)
            finally:
                answered.set()
        server = self.serve(self.fault_app(fault))
        sock = self.connect(server)
        sock.sendall(get("/x"))
        sock.close()
        release.set()
        self.assertTrue(answered.wait(TIMEOUT))
        self.assertTrue(self.closed.wait(TIMEOUT))


def prefix_app(environ, start_response):
    """Answers 'app:' and the path, so a test sees which requests reach the app."""
    body = ("app:" + environ["PATH_INFO"]).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_app(environ, start_response):
    """Answers with a few environ values, one `KEY=value` a line."""
    body = "".join("%s=%s\n" % (key, environ.get(key)) for key in (
        "wsgi.url_scheme", "REMOTE_ADDR", "PATH_INFO", "HTTP_HOST")).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_lines(body):
    return dict(line.split("=", 1) for line in body.decode("latin-1").splitlines())


def client_hello():
    """The first bytes a TLS client sends (its ClientHello)."""
    outgoing = ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                                  server_hostname="localhost")
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


DATA = bytes(range(256)) * 4            # 1024 distinct-enough bytes for range checks
SECRET = b"TOP SECRET: never served"


# ---- File serving: --static ------------------------------------------------------

class StaticFilesTests(ServerTestCase):
    """StaticFiles through a real server: safe paths, validators, ranges, listings."""

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="runserver-static-")
        base, root = cls.base, os.path.join(cls.base, "root")
        cls.root = root
        files = {
            "secret.txt": SECRET,                           # beside the root, never served
            "root-sibling/secret.txt": SECRET,              # shares the root's name prefix
            "root/hello.txt": b"hello, static\n",
            "root/data.bin": DATA,
            "root/style.css": b"body{}\n",
            "root/image.png": b"\x89PNG\r\n\x1a\n",
            "root/a b.txt": b"with a space\n",
            "root/caf\u00e9.txt": b"utf-8 name\n",
            "root/sub/index.html": b"<p>index of sub</p>\n",
            "root/list/<b>&x.txt": b"escaped name\n",
            "root/list/plain.txt": b"plain\n",
            "root/inside/target.txt": b"inside target\n",
        }
        for name, data in files.items():
            path = os.path.join(base, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(data)
        os.makedirs(os.path.join(root, "list", "d"))
        os.makedirs(os.path.join(root, "trap"))
        os.makedirs(os.path.join(root, "d\u00e9"))
        # A FIFO beside the root: opening it would block, so a test hangs if it is read.
        os.mkfifo(os.path.join(base, "secret.fifo"))
        links = {"root/escape.txt": "../secret.txt", "root/escape-dir": "..",
                 "root/escape-abs": os.path.join(base, "secret.txt"),
                 "root/escape-sibling": "../root-sibling/secret.txt",
                 "root/escape-fifo": "../secret.fifo",
                 "root/trap/index.html": "../../secret.txt",
                 "root/link-inside.txt": "inside/target.txt"}
        for name, target in links.items():
            os.symlink(target, os.path.join(base, name))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.server = self.start_server(prefix_app, static=[("/static", self.root)])

    def test_redirect_never_leaves_the_server(self):
        server = self.start_server(prefix_app, static=[("/", self.root)])
        response = self.request(server, b"GET //list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header("location"), "/list/")

    def get(self, path, extra=b"", method="GET"):
        """One request on a new connection; the Response."""
        return self.request(self.server, b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
                            % (method.encode(), path.encode("latin-1"), extra), method)

    def exchange_on_one_connection(self, requests):
        """Send (method, path, extra) requests one after the other on one
        keep-alive connection; return the responses.  A response with a byte
        too many or too few puts the next one out of step."""
        sock = self.connect(self.server)
        reader = Reader(sock)
        responses = []
        for method, path, extra in requests:
            sock.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
                         % (method.encode(), path.encode(), extra))
            responses.append(reader.response(method))
        sock.sendall(get("/static/hello.txt"))
        self.assertEqual(reader.response().body, b"hello, static\n")      # still in step
        return responses

    def etag(self, path):
        return self.get(path).header("etag")

    def test_traversal_attempts_are_404_and_never_read_outside(self):
        for path in ["/static/../secret.txt", "/static/%2e%2e/secret.txt",
                     "/static/%2E%2E/secret.txt", "/static/.%2e/secret.txt",
                     "/static/sub/../../secret.txt", "/static/./../secret.txt",
                     "/static/..%2fsecret.txt", "/static/..%2Fsecret.txt",
                     "/static/%2e%2e%2fsecret.txt", "/static/sub%2f..%2f..%2fsecret.txt",
                     "/static/%2fetc%2fpasswd", "/static/..%5csecret.txt",
                     "/static/..%5Csecret.txt", "/static/..\\secret.txt",
                     "/static/hello.txt%00", "/static/hello.txt%00.png", "/static/%00",
                     "/static//etc/passwd", "/static///etc/passwd", "/static/%2F%2Fetc/passwd",
                     "/static/%c0%ae%c0%ae/secret.txt", "/static/..%00/secret.txt",
                     "/static/escape.txt", "/static/escape-abs", "/static/escape-sibling",
                     "/static/escape-dir/secret.txt", "/static/escape-dir/", "/static/escape-dir",
                     "/static/escape-fifo", "/static/trap/", "/static/trap/index.html",
                     "/static/../root-sibling/secret.txt",
                     # encoded separators are refused even where they would stay inside
                     "/static/list%2fplain.txt", "/static/list%2Fplain.txt",
                     "/static/list%5cplain.txt", "/static/sub%2f"]:
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.status, 404, response)
                self.assertNotIn(SECRET, response.body)
                self.assertNotIn(b"root:", response.body)

    def test_a_symlink_that_stays_inside_is_served(self):
        self.assertEqual(self.get("/static/link-inside.txt").body, b"inside target\n")

    def test_only_get_and_head_others_405_with_allow(self):
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            for path in ("/static/hello.txt", "/static/missing.txt", "/static/sub/"):
                with self.subTest(method=method, path=path):
                    response = self.get(path, b"Content-Length: 0\r\n", method)
                    self.assertEqual(response.status, 405)
                    self.assertEqual(response.header("allow"), "GET, HEAD")
        self.assertEqual(self.get("/static/hello.txt", method="HEAD").status, 200)

    def test_file_headers(self):
        path = os.path.join(self.root, "hello.txt")
        info = os.stat(path)
        response = self.get("/static/hello.txt")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hello, static\n")
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(response.header("content-length"), "14")
        self.assertEqual(response.header("last-modified"), runserver.http_date(info.st_mtime))
        self.assertEqual(response.header("cache-control"), "no-cache")
        self.assertEqual(response.header("accept-ranges"), "bytes")
        etag = response.header("etag")
        self.assertRegex(etag, r'^"[^"]+"$')                          # strong: no W/
        for name, expected in [("style.css", "text/css; charset=utf-8"),
                               ("sub/index.html", "text/html; charset=utf-8"),
                               ("image.png", "image/png"),
                               ("data.bin", "application/octet-stream")]:
            with self.subTest(name=name):
                self.assertEqual(self.get("/static/" + name).header("content-type"), expected)

    def test_etag_changes_with_the_file(self):
        path = os.path.join(self.root, "changing.txt")
        self.addCleanup(os.unlink, path)
        with open(path, "wb") as file:
            file.write(b"one")
        os.utime(path, ns=(10 ** 18, 10 ** 18))
        first = self.etag("/static/changing.txt")
        self.assertEqual(self.etag("/static/changing.txt"), first)       # stable
        os.utime(path, ns=(10 ** 18 + 1, 10 ** 18 + 1))                  # 1 ns later
        second = self.etag("/static/changing.txt")
        self.assertNotEqual(second, first)
        with open(path, "ab") as file:
            file.write(b"two")
        os.utime(path, ns=(10 ** 18 + 1, 10 ** 18 + 1))                  # same time, new size
        self.assertNotIn(self.etag("/static/changing.txt"), (first, second))

    def test_head_has_content_length_but_no_body(self):
        head, get_response = self.exchange_on_one_connection(
            [("HEAD", "/static/data.bin", b""), ("GET", "/static/data.bin", b"")])
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-length"), str(len(DATA)))
        self.assertEqual(get_response.body, DATA)

    def test_if_none_match_gives_304_and_takes_precedence(self):
        etag = self.etag("/static/hello.txt")
        last_modified = self.get("/static/hello.txt").header("last-modified")
        future = email.utils.formatdate(time.time() + 86400, usegmt=True)
        cases = [
            (b"If-None-Match: %s\r\n" % etag.encode(), 304),
            (b"If-None-Match: \"other\", %s\r\n" % etag.encode(), 304),
            (b"If-None-Match: W/%s\r\n" % etag.encode(), 304),       # weak comparison
            (b"If-None-Match: *\r\n", 304),
            (b"If-None-Match: \"other\"\r\n", 200),
            # If-None-Match wins over If-Modified-Since, both ways round:
            (b"If-None-Match: \"other\"\r\nIf-Modified-Since: %s\r\n" % future.encode(), 200),
            (b"If-None-Match: %s\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
             % etag.encode(), 304),
            (b"If-Modified-Since: %s\r\n" % last_modified.encode(), 304),
            (b"If-Modified-Since: %s\r\n" % future.encode(), 304),
            (b"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n", 200),
            (b"If-Modified-Since: not a date\r\n", 200),
        ]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/hello.txt", extra) for extra, _ in cases])
        for (extra, status), response in zip(cases, responses):
            with self.subTest(extra=extra):
                self.assertEqual(response.status, status)
                if status == 304:
                    self.assertEqual(response.header("etag"), etag)
                    self.assertEqual(response.header("cache-control"), "no-cache")
                else:
                    self.assertEqual(response.body, b"hello, static\n")

    def test_ranges(self):
        size = len(DATA)
        cases = [("bytes=0-99", 206, 0, 100), ("bytes=100-", 206, 100, size),
                 ("bytes=-50", 206, size - 50, size), ("bytes=1000-5000", 206, 1000, size),
                 ("bytes=-5000", 206, 0, size), ("bytes=0-0", 206, 0, 1),
                 ("bytes=1023-", 206, 1023, size),
                 ("bytes=0-1,5-6", 200, 0, size), ("bytes=5-1", 200, 0, size),
                 ("items=0-1", 200, 0, size), ("bytes=0-" + "9" * 5000, None, 0, size)]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/data.bin", b"Range: %s\r\n" % value.encode())
             for value, _, _, _ in cases])
        for (value, status, start, end), response in zip(cases, responses):
            with self.subTest(range=value[:40]):
                self.assertEqual(response.body, DATA[start:end])
                self.assertEqual(response.header("content-length"), str(end - start))
                if status is None:                  # out of range numbers: ignored or clamped
                    self.assertIn(response.status, (200, 206))
                    continue
                self.assertEqual(response.status, status)
                if status == 206:
                    self.assertEqual(response.header("content-range"),
                                     "bytes %d-%d/%d" % (start, end - 1, size))
                else:
                    self.assertIsNone(response.header("content-range"))

    def test_unsatisfiable_range_is_416(self):
        for value in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
            with self.subTest(range=value):
                response = self.get("/static/data.bin", b"Range: %s\r\n" % value.encode())
                self.assertEqual(response.status, 416)
                self.assertEqual(response.header("content-range"), "bytes */1024")
                self.assertNotIn(DATA[:100], response.body)

    def test_if_range(self):
        response = self.get("/static/data.bin")
        etag, last_modified = response.header("etag"), response.header("last-modified")
        cases = [(etag, 206), ('"not-it"', 200), ("W/" + etag, 200), (last_modified, 206),
                 ("Thu, 01 Jan 1970 00:00:00 GMT", 200), ("garbage", 200)]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/data.bin", b"Range: bytes=10-19\r\nIf-Range: %s\r\n"
              % condition.encode()) for condition, _ in cases])
        for (condition, status), response in zip(cases, responses):
            with self.subTest(if_range=condition):
                self.assertEqual(response.status, status)
                self.assertEqual(response.body, DATA[10:20] if status == 206 else DATA)

    def test_directory_with_index_html(self):
        response = self.get("/static/sub/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"<p>index of sub</p>\n")
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")

    def test_directory_without_slash_redirects(self):
        for path, location in [("/static/sub", "/static/sub/"),
                               ("/static/sub?x=1&y=%2F", "/static/sub/?x=1&y=%2F"),
                               ("/static", "/static/"), ("/static/list/d", "/static/list/d/"),
                               ("/static/d%C3%A9", "/static/d%C3%A9/")]:
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.status, 301)
                self.assertEqual(response.header("location"), location)

    def test_directory_listing_escapes_names(self):
        response = self.get("/static/list/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        page = response.body.decode("utf-8")
        self.assertIn("&lt;b&gt;&amp;x.txt", page)
        self.assertNotIn("<b>", page)
        self.assertIn('href="%3Cb%3E%26x.txt"', page)
        self.assertIn('href="d/"', page)
        self.assertIn('href="plain.txt"', page)
        self.assertEqual(self.get("/static/list/%3Cb%3E%26x.txt").body, b"escaped name\n")

    def test_encoded_names(self):
        self.assertEqual(self.get("/static/a%20b.txt").body, b"with a space\n")
        self.assertEqual(self.get("/static/caf%C3%A9.txt").body, b"utf-8 name\n")
        self.assertEqual(self.get("/static/missing.txt").status, 404)

    def test_requests_outside_the_prefix_go_to_the_app(self):
        for path in ("/", "/staticx", "/static-x/y", "/other/static/hello.txt",
                     "/STATIC/hello.txt"):
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual((response.status, response.body),
                                 (200, ("app:" + path).encode()))
        response = self.get("/", b"Content-Length: 0\r\n", "POST")
        self.assertEqual(response.body, b"app:/")

    def test_range_through_sendfile_sends_exactly_the_range(self):
        path = os.path.join(self.root, "marked.bin")
        self.addCleanup(os.unlink, path)
        content = os.urandom(3 << 20)
        with open(path, "wb") as file:
            file.write(content)
        ranges = [(0, 1 << 20), ((1 << 20) + 7, (2 << 20) + 13), (len(content) - 9, len(content))]
        responses = self.exchange_on_one_connection(
            [("GET", "/static/marked.bin", b"Range: bytes=%d-%d\r\n" % (start, end - 1))
             for start, end in ranges])
        for (start, end), response in zip(ranges, responses):
            self.assertEqual(response.status, 206)
            self.assertTrue(response.body == content[start:end], "range %d-%d differs"
                            % (start, end - 1))

    def test_sparse_gigabyte_file_is_streamed_with_flat_memory(self):
        # 1 GiB through sendfile takes about a second on loopback.  On tmpfs the
        # holes read as the zero page; on a disk the page cache fills (~3 s).
        size = 1 << 30
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        directory = tempfile.mkdtemp(prefix="runserver-sparse-", dir=shm)
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "sparse.bin")
        marker = b"a marker in the middle of the holes"
        with open(path, "wb") as file:
            file.truncate(size)
            file.seek(size // 2)
            file.write(marker)
        self.server = self.start_server(prefix_app, static=[("/static", directory)])
        before = rss()
        if before is None:
            self.skipTest("no /proc/self/status to measure memory with")
        sock = self.connect(self.server)
        sock.sendall(get("/static/sparse.bin"))
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: %d\r\n" % size, head + b"\r\n")
        received = len(reader.buffer)
        buffer = bytearray(1 << 20)
        while received < size:
            count = sock.recv_into(buffer)
            if not count:
                break
            received += count
        growth = rss() - before
        self.assertEqual(received, size)
        self.assertLess(growth, 64 << 20, "RSS grew by %d MiB" % (growth >> 20))
        sock.sendall(get("/static/sparse.bin", extra=b"Range: bytes=%d-%d\r\n"
                         % (size // 2, size // 2 + len(marker) - 1)))
        self.assertEqual(reader.response().body, marker)


# ---- HTTPS: --cert and --key -----------------------------------------------------

class TLSTests(ServerTestCase, CLITestCase):
    """TLS with a self-signed certificate made by the openssl command."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("the openssl command is not installed: "
                                    "cannot make a test certificate")
        cls.keys = tempfile.mkdtemp(prefix="runserver-tls-")
        cls.cert, cls.key = os.path.join(cls.keys, "c.pem"), os.path.join(cls.keys, "k.pem")
        cls.other_key = os.path.join(cls.keys, "other-k.pem")
        for key, cert in ((cls.key, cls.cert), (cls.other_key, os.path.join(cls.keys, "o.pem"))):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True, timeout=60)
        cls.client_context = ssl.create_default_context(cafile=cls.cert)
        cls.client_context.check_hostname = False       # CN only, no subjectAltName

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.keys, ignore_errors=True)

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)

    def start_tls_server(self, app=environ_app, **options):
        return self.start_server(app, ssl_context=runserver.make_ssl_context(self.cert, self.key),
                                 **options)

    def tls_connect(self, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        tls = self.client_context.wrap_socket(sock, server_hostname="localhost")
        self.addCleanup(tls.close)
        return tls

    def test_https_request_keep_alive_and_close(self):
        server = self.start_tls_server()
        sock = self.tls_connect(server.port)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get("/x"))
            response = reader.response()
            self.assertEqual(response.status, 200)
            values = environ_lines(response.body)
            self.assertEqual(values["wsgi.url_scheme"], "https")
            self.assertEqual(values["PATH_INFO"], "/x")
        sock.sendall(get("/y", extra=b"Connection: close\r\n"))
        self.assertEqual(reader.response().status, 200)
        self.assertEqual(reader.read_to_eof(), b"")          # the server closes the TLS socket

    def test_a_bad_tls_record_is_one_log_line(self):
        server = self.start_tls_server()
        tls = self.tls_connect(server.port)
        socket.socket.sendall(tls, b"\x17\x03\x03\x00\x10" + b"A" * 16)   # under the TLS layer
        LOG.wait_for(r"connection failed: .*(DECRYPTION|BAD_RECORD_MAC|record)")
        self.assertFalse([m for m in LOG.messages() if "Internal error" in m])
        self.assertEqual(self.request_tls(server), 200)

    def request_tls(self, server):
        sock = self.tls_connect(server.port)
        sock.sendall(get("/again"))
        return Reader(sock).response().status

    def test_silent_client_does_not_block_others(self):
        # A handshake in the accept loop would hold the second client for 60 s.
        server = self.start_tls_server(limits=runserver.Limits(header_timeout=60))
        silent = self.connect(server)                        # connects and sends nothing
        sock = self.tls_connect(server.port)
        sock.sendall(get())
        self.assertEqual(Reader(sock).response().status, 200)
        silent.close()

    def test_idle_and_silent_connections_are_closed_on_shutdown(self):
        limits = runserver.Limits(keepalive_timeout=60, header_timeout=60)
        server = self.start_tls_server(limits=limits)
        silent = self.connect(server)
        idle = self.tls_connect(server.port)
        idle.sendall(get())
        self.assertEqual(Reader(idle).response().status, 200)
        server.server.shutdown()
        self.assertEqual(server.server.close_idle_and_wait(TIMEOUT), 0)
        self.assertClosed(idle)
        self.assertClosed(silent)
        self.assertFalse([r.getMessage() for r in LOG.records if r.levelno >= logging.WARNING])

    def test_file_serving_under_tls(self):
        directory = tempfile.mkdtemp(prefix="runserver-tls-static-")
        self.addCleanup(shutil.rmtree, directory, True)
        content = os.urandom(700000)
        with open(os.path.join(directory, "blob.bin"), "wb") as file:
            file.write(content)
        server = self.start_tls_server(prefix_app, static=[("/static", directory)])
        sock = self.tls_connect(server.port)
        reader = Reader(sock)
        for extra, expected in [(b"", content), (b"Range: bytes=1000-300999\r\n", content[1000:301000]),
                                (b"Range: bytes=-10\r\n", content[-10:]), (b"", content)]:
            sock.sendall(get("/static/blob.bin", extra=extra))
            response = reader.response()
            self.assertEqual(response.header("content-length"), str(len(expected)))
            self.assertTrue(response.body == expected, "the body differs")
        sock.sendall(b"HEAD /static/blob.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(reader.response("HEAD").header("content-length"), str(len(content)))
        sock.sendall(get("/after"))
        self.assertEqual(reader.response().body, b"app:/after")      # still in step
        self.assertFalse([r.getMessage() for r in LOG.records if r.levelno >= logging.WARNING])

    def test_plain_server_receiving_tls_logs_one_clear_line(self):
        server = self.start_server(hello_app)
        sock = self.connect(server)
        sock.sendall(client_hello())
        LOG.wait_for(r"this server speaks HTTP, not HTTPS")
        self.assertClosed(sock)
        self.assertEqual(len([m for m in LOG.messages() if "HTTPS" in m]), 1, LOG.messages())
        self.assertEqual(self.request(server, get()).status, 200)     # the server is fine

    def test_cli_certificate_errors_are_one_line(self):
        missing = os.path.join(self.directory, "missing.pem")
        for args, status, fragment in [
                (["--cert", missing, "--key", self.key], 2, "missing.pem"),
                (["--cert", self.cert, "--key", missing], 2, "missing.pem"),
                (["--cert", self.cert, "--key", self.other_key], 2, "other-k.pem"),
                (["--cert", self.key, "--key", self.key], 2, "k.pem"),
                (["--cert", self.directory, "--key", self.key], 2, self.directory),
                (["--cert", self.cert], 2, "--cert and --key"),
                (["--key", self.key], 2, "--cert and --key")]:
            for reload in ([], ["--noreload"]):
                with self.subTest(args=args, reload=reload):
                    self.assertOneLineError(["0"] + reload + args, status, fragment)

    def test_cli_banner_shows_https(self):
        process = self.start("127.0.0.1:0", "--noreload", "--cert", self.cert, "--key", self.key)
        url = process.wait_for_banner()
        self.assertRegex(url, r"^https://127\.0\.0\.1:\d+/$")
        sock = self.tls_connect(process.port())
        sock.sendall(get("/tls-check", extra=b"Connection: close\r\n"))
        response = Reader(sock).response()
        self.assertEqual(response.status, 200)
        self.assertIn(b"/tls-check", response.body)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)


# ---- Unix domain sockets: unix:/path -----------------------------------------------

class UnixSocketTests(ServerTestCase, CLITestCase):
    """make_server(unix_socket=...) and the CLI's unix:/path ADDRPORT."""

    def setUp(self):
        ServerTestCase.setUp(self)
        CLITestCase.setUp(self)
        self.path = os.path.join(self.directory, "s.sock")

    def unix_request(self, raw, path=None):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path or self.path)
            sock.sendall(raw)
            return Reader(sock).response()

    def test_round_trip_with_keep_alive(self):
        server = self.start_server(environ_app, unix_socket=self.path)
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(self.path)
            reader = Reader(sock)
            for path in ("/a", "/b"):
                sock.sendall(get(path, host="localhost"))
                values = environ_lines(reader.response().body)
                self.assertEqual(values["PATH_INFO"], path)
                self.assertEqual(values["REMOTE_ADDR"], "127.0.0.1")
                self.assertEqual(values["wsgi.url_scheme"], "http")
        self.assertIsNone(server.port)

    def test_socket_file_is_removed_on_server_close(self):
        server = ServerThread(hello_app, unix_socket=self.path)
        self.assertEqual(self.unix_request(get()).body, b"Hello world\n")
        server.close()
        self.assertFalse(os.path.lexists(self.path))

    def test_stale_socket_file_is_replaced(self):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()                                    # a dead server's leftover
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))
        self.start_server(hello_app, unix_socket=self.path)
        self.assertEqual(self.unix_request(get()).body, b"Hello world\n")

    def test_regular_file_is_refused_and_kept(self):
        with open(self.path, "w") as file:
            file.write("precious")
        with self.assertRaises(OSError) as caught:
            runserver.make_server(hello_app, unix_socket=self.path, quiet=True)
        self.assertIn("not a socket", str(caught.exception))
        with open(self.path) as file:
            self.assertEqual(file.read(), "precious")

    def test_live_server_on_the_path_is_refused(self):
        self.start_server(hello_app, unix_socket=self.path)
        with self.assertRaises(OSError) as caught:
            runserver.make_server(hello_app, unix_socket=self.path, quiet=True)
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertEqual(self.unix_request(get()).body, b"Hello world\n")   # untouched

    def test_cli_errors_are_one_line(self):
        with open(self.path, "w") as file:
            file.write("precious")
        code, output = self.run_cli("unix:" + self.path, "--noreload")
        self.assertEqual(code, 1, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("not a socket", output)
        self.assertTrue(os.path.isfile(self.path))
        missing = os.path.join(self.directory, "no-such-dir", "s.sock")
        code, output = self.run_cli("unix:" + missing, "--noreload")
        self.assertEqual(code, 1, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("does not exist", output)

    def test_cli_banner_and_removal_on_exit(self):
        path = os.path.join(self.directory, "with space", "s.sock")
        os.mkdir(os.path.dirname(path))
        process = self.start("unix:" + path, "--noreload")
        process.wait_for(r"^Starting development server at unix:%s$" % re.escape(path))
        process.wait_for(r"^  try: curl --unix-socket '%s' http://localhost/$" % re.escape(path))
        response = self.unix_request(get(host="localhost"), path)
        self.assertEqual(response.status, 200)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertFalse(os.path.lexists(path))

    def test_cli_with_the_reloader(self):
        app = ("def app(environ, start_response):\n"
               "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
               "    return [b%r]\n")
        self.write("unixapp.py", app % "one")
        process = self.start("unixapp:app", "unix:" + self.path, "--reload-interval", "0.05")
        self.assertEqual(process.wait_for_banner(), "unix:" + self.path)
        self.assertEqual(self.unix_request(get(host="localhost")).body, b"one")
        for attempt in range(5):
            # The worker's watcher takes its first look just after the banner;
            # a save before that look is its starting point, so save again.
            self.write("unixapp.py", app % "two")
            try:
                process.wait_for(r"unixapp\.py changed, reloading", timeout=2)
                break
            except AssertionError:
                if attempt == 4 or process.process.poll() is not None:
                    raise
        deadline = time.monotonic() + TIMEOUT
        while True:        # the old worker may answer once more before it stops accepting
            body = self.unix_request(get(host="localhost", extra=b"Connection: close\r\n")).body
            if body == b"two" or time.monotonic() > deadline:
                break
        self.assertEqual(body, b"two")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertFalse(os.path.lexists(self.path))


# ---- Server classes and the Python API --------------------------------------------

class APITests(unittest.TestCase):

    def test_import_has_no_side_effects(self):
        code = ("import logging, signal, sys; path = list(sys.path); "
                "handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)); "
                "import runserver; "
                "assert sys.path == path, 'sys.path changed'; "
                "assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers; "
                "assert not logging.getLogger('runserver').handlers; "
                "assert not logging.getLogger().handlers; print('clean')")
        result = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True,
                                timeout=TIMEOUT)
        self.assertEqual(result.stdout.strip(), b"clean", result.stderr)

    def test_rarely_needed_modules_are_not_imported_at_start_up(self):
        # Every reload starts a worker process: its imports are reload latency.
        code = ("import sys, runserver; print(sorted(m for m in %r if m in sys.modules))"
                % (("ast", "http", "ssl", "subprocess", "tempfile", "urllib.parse"),))
        result = subprocess.run([sys.executable, "-S", "-c", code], cwd=HERE,
                                capture_output=True, timeout=TIMEOUT)    # -S: not site's imports
        self.assertEqual(result.stdout.strip(), b"[]", result.stderr)

    def test_public_names(self):
        self.assertRegex(runserver.__version__, r"^\d+\.\d+\.\d+$")
        for name in runserver.__all__:
            self.assertTrue(hasattr(runserver, name), name)

    def test_server_class_is_composed_with_the_mixin_first(self):
        server = runserver.make_server(hello_app, "127.0.0.1", 0)
        self.addCleanup(server.server_close)
        mro = type(server).__mro__
        self.assertIs(mro[1], runserver.LoopThreadingMixIn)
        self.assertTrue(issubclass(mro[1], socketserver_mixin()))
        self.assertTrue(server.daemon_threads)
        self.assertGreaterEqual(server.request_queue_size, 128)
        plain = runserver.make_server(hello_app, "127.0.0.1", 0, threading=False)
        self.addCleanup(plain.server_close)
        self.assertIs(type(plain), runserver.WSGIServer)

    def test_no_connection_is_accepted_once_a_stop_has_begun(self):
        # A loop thread could accept one just after close_idle_and_wait() had
        # counted none; the worker then exited with it: a reset during a reload.
        server = runserver.make_server(hello_app, "127.0.0.1", 0)
        self.addCleanup(server.server_close)
        self.assertEqual(server.close_idle_and_wait(0), 0)
        client = socket.create_connection(("127.0.0.1", server.server_port), timeout=TIMEOUT)
        self.addCleanup(client.close)
        client.sendall(get())
        with self.assertRaises(BlockingIOError):
            server.get_request()
        # It waits in the backlog for the next serve_forever(), as for the next worker.
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, TIMEOUT)
        self.addCleanup(server.shutdown)
        self.assertEqual(Reader(client).response().status, 200)

    def test_tcp_nodelay_on_accepted_sockets(self):
        seen = {}

        class Handler(runserver.WSGIRequestHandler):
            def setup(self):
                super().setup()
                seen["nodelay"] = self.request.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server = ServerThread(hello_app, handler_class=Handler)
        self.addCleanup(server.close)
        http_get(server.port)
        self.assertTrue(seen["nodelay"])

    def test_shutdown_returns_promptly(self):
        server = ServerThread(hello_app)
        started = time.monotonic()
        server.close()
        self.assertFalse(server.thread.is_alive())
        self.assertLess(time.monotonic() - started, TIMEOUT)

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6 support")
        try:
            server = ServerThread(hello_app, host="::1")
        except OSError as exc:
            self.skipTest("cannot bind ::1: %s" % exc)
        self.addCleanup(server.close)
        with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(get(host="[::1]"))
            self.assertEqual(Reader(sock).response().status, 200)


def socketserver_mixin():
    import socketserver
    return socketserver.ThreadingMixIn


# ---- Reloader ------------------------------------------------------------------------

# ---- Reloader: the file watcher, without processes ---------------------------------

class FileWatcherTests(unittest.TestCase):
    """runserver.FileWatcher on a scratch directory, driven poll by poll."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="runserver-watch-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.base_ns = time.time_ns() - 3600 * 10**9     # an hour ago: older than any watcher
        self.path = self.write("app.py", "VERSION = 1\n")

    def write(self, name, text, mtime_ns=None, atomic=False):
        """Write a file, then give it a distinct mtime (default: base_ns)."""
        path = os.path.join(self.directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        target = path + ".tmp" if atomic else path
        with open(target, "w") as file:
            file.write(text)
        if atomic:
            os.replace(target, path)
        self.set_mtime(path, self.base_ns if mtime_ns is None else mtime_ns)
        return path

    def set_mtime(self, path, mtime_ns):
        os.utime(path, ns=(mtime_ns, mtime_ns))

    def watcher(self, *paths, **options):
        watcher = runserver.FileWatcher(extra_files=paths or [self.path], watch_modules=False,
                                        **options)
        self.assertEqual(watcher.poll(), [])             # the first poll: the baseline
        return watcher

    def test_in_place_edit_is_a_change_once(self):
        watcher = self.watcher()
        self.write("app.py", "VERSION = 2\n", self.base_ns + 10**9)      # same size
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_size_alone_is_a_change(self):
        watcher = self.watcher()
        self.write("app.py", "VERSION = 22\n")                         # same mtime
        self.assertEqual(watcher.poll(), [self.path])

    def test_atomic_rename_save_is_a_change(self):
        watcher = self.watcher()
        inode = os.stat(self.path).st_ino
        self.write("app.py", "VERSION = 3\n", atomic=True)             # same mtime and size
        self.assertNotEqual(os.stat(self.path).st_ino, inode)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_touch_without_writing_is_a_change(self):
        watcher = self.watcher()
        self.set_mtime(self.path, self.base_ns + 5 * 10**9)
        self.assertEqual(watcher.poll(), [self.path])

    def test_restoring_an_older_file_is_a_change(self):
        watcher = self.watcher()
        self.set_mtime(self.path, self.base_ns - 86400 * 10**9)       # a day older
        self.assertEqual(watcher.poll(), [self.path])

    def test_a_file_that_disappears_and_comes_back(self):
        watcher = self.watcher()
        os.remove(self.path)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])
        self.write("app.py", "VERSION = 1\n", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [self.path])

    def test_a_file_missing_at_the_start_that_appears(self):
        missing = os.path.join(self.directory, "later.txt")
        watcher = runserver.FileWatcher(extra_files=[missing], watch_modules=False)
        self.assertEqual(watcher.poll(), [])
        self.write("later.txt", "now\n")
        self.assertEqual(watcher.poll(), [missing])

    def test_new_py_file_in_a_watched_directory(self):
        watcher = self.watcher()
        self.write("notes.txt", "not python\n")
        self.set_mtime(self.directory, self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [])
        new = self.write("views.py", "X = 1\n")
        self.set_mtime(self.directory, self.base_ns + 2 * 10**9)
        self.assertEqual(watcher.poll(), [new])
        self.assertEqual(watcher.poll(), [])

    def poll_slow_turn(self, watcher):
        """Poll until the include globs are looked at again; return all changes."""
        changed = []
        for _ in range(runserver.SLOW_POLL_EVERY):
            changed += watcher.poll()
        return changed

    def test_reload_include_directory_and_glob(self):
        template = self.write("templates/page.html", "<p>1</p>")
        data = self.write("data.json", "{}")
        watcher = self.watcher(include=[os.path.join(self.directory, "templates"),
                                        os.path.join(self.directory, "*.json")])
        self.assertIn(template, watcher.watched())
        self.assertIn(data, watcher.watched())
        self.write("templates/page.html", "<p>2</p>", self.base_ns + 10**9)
        self.write("data.json", "{}", self.base_ns + 10**9)
        self.assertEqual(sorted(watcher.poll()), sorted([template, data]))
        added = self.write("templates/sub/new.html", "<p>new</p>")
        more = self.write("more.json", "[]")
        self.assertEqual(sorted(self.poll_slow_turn(watcher)), sorted([added, more]))
        self.assertEqual(self.poll_slow_turn(watcher), [])

    def test_reload_exclude(self):
        skipped = self.write("local_settings.py", "DEBUG = True\n")
        self.write("templates/cache.tmp", "")
        watcher = self.watcher(self.path, skipped,
                               include=[os.path.join(self.directory, "templates")],
                               exclude=["local_*.py", "*.tmp"])
        self.assertEqual(watcher.watched(), {self.path})
        self.write("local_settings.py", "DEBUG = False\n", self.base_ns + 10**9)
        self.write("templates/cache.tmp", "x", self.base_ns + 10**9)
        self.write("local_new.py", "")
        self.set_mtime(self.directory, self.base_ns + 10**9)
        self.assertEqual(self.poll_slow_turn(watcher), [])
        self.write("app.py", "VERSION = 2\n", self.base_ns + 10**9)
        self.assertEqual(watcher.poll(), [self.path])

    def test_first_seen_files_modified_since_loading_began_are_changes(self):
        # A module imported while the app loaded, then saved before the first poll.
        since = time.time_ns() - 10**9
        self.set_mtime(self.path, since - 5 * 10**6)   # the coarse file clock lags: 5 ms early
        other = self.write("other.py", "", since - runserver.MTIME_SLACK_NS - 1)
        watcher = runserver.FileWatcher(extra_files=[self.path, other], watch_modules=False,
                                        since_ns=since)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_py_files_made_while_the_app_loaded_are_new_files(self):
        since = time.time_ns() - 10**9
        made = self.write("views.py", "X = 1\n", since + 1)
        self.write("old.py", "X = 1\n", since - runserver.MTIME_SLACK_NS - 1)
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False,
                                        since_ns=since)
        self.assertEqual(watcher.poll(), [made])

    def test_first_seen_files_from_the_future_are_not_changes(self):
        # Clock skew (a network file system): counting it would reload forever.
        self.set_mtime(self.path, time.time_ns() + 3600 * 10**9)
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False,
                                        since_ns=time.time_ns() - 10**9)
        self.assertEqual(watcher.poll(), [])

    def test_several_saves_between_two_polls_are_one_change(self):
        watcher = self.watcher()
        for version in range(3):
            self.write("app.py", "VERSION = %d\n" % (version + 10), self.base_ns + version,
                       atomic=version % 2 == 1)
        self.assertEqual(watcher.poll(), [self.path])
        self.assertEqual(watcher.poll(), [])

    def test_saves_within_the_debounce_window_are_one_change(self):
        watcher = self.watcher()
        result = []
        thread = threading.Thread(target=lambda: result.append(watcher.wait_for_change(0.005)))
        thread.start()
        for version in range(4):            # 10 ms apart: well within RELOAD_DEBOUNCE
            if version:
                time.sleep(0.01)
            with open(self.path, "w") as file:
                file.write("VERSION = %d\n" % (100 + version))
        thread.join(TIMEOUT)
        self.assertEqual(result, [self.path])
        self.assertEqual(watcher.poll(), [])            # the last save was part of it

    def test_wait_for_change_returns_none_when_stopped(self):
        watcher = runserver.FileWatcher(extra_files=[self.path], watch_modules=False)
        stop = threading.Event()
        stop.set()
        self.assertIsNone(watcher.wait_for_change(0.01, stop))

    def test_hot_files_are_the_most_recently_modified(self):
        paths = [self.write("m%02d.py" % index, "", self.base_ns + index * 10**9)
                 for index in range(runserver.HOT_FILES + 4)]
        watcher = self.watcher(*paths)
        self.assertEqual(sorted(watcher.hot), sorted(paths[-runserver.HOT_FILES:]))
        self.write("m11.py", "X = 1\n", self.base_ns + 99 * 10**9)
        self.write("m00.py", "X = 1\n", self.base_ns + 99 * 10**9)     # not hot: seen later
        self.assertEqual(watcher.poll_hot(), [paths[-1]])
        self.assertEqual(watcher.poll(), [paths[0]])

    def test_imported_project_modules_are_watched_but_not_the_stdlib(self):
        name = "watched_module_%d" % os.getpid()
        path = self.write(name + ".py", "VALUE = 1\n")
        sys.path.insert(0, self.directory)
        self.addCleanup(sys.path.remove, self.directory)
        self.addCleanup(sys.modules.pop, name, None)
        importlib.import_module(name)
        watcher = runserver.FileWatcher()
        watcher.poll()
        self.assertIn(path, watcher.watched())
        self.assertIn(os.path.abspath(runserver.__file__), watcher.watched())
        self.assertNotIn(os.path.abspath(os.__file__), watcher.watched())
        self.write(name + ".py", "VALUE = 2\n", atomic=True)
        self.assertIn(path, watcher.poll())

    def test_module_source_maps_pyc_and_zip_imports(self):
        pyc = importlib.util.cache_from_source(self.path)
        module = type(sys)("compiled")
        module.__file__ = pyc
        self.assertEqual(runserver.module_source(module), self.path)
        archive = os.path.join(self.directory, "bundle.zip")
        name = "zipped_module_%d" % os.getpid()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr(name + ".py", "VALUE = 1\n")
        sys.path.insert(0, archive)
        self.addCleanup(sys.path.remove, archive)
        self.addCleanup(sys.modules.pop, name, None)
        self.assertEqual(runserver.module_source(importlib.import_module(name)), archive)


# ---- Reloader: supervisor and worker, as real processes --------------------------

APP_SOURCE = '''\
import os, time
import helper
try:
    import extra
    EXTRA = extra.VALUE
except ImportError:
    EXTRA = "no-extra"

VERSION = %r

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/exit":
        os._exit(7)
    if path == "/slow":
        open("entered", "w").close()
        while not os.path.exists("release"):
            time.sleep(0.01)
    body = ("%%s %%s %%s pid=%%d\\n" %% (VERSION, helper.VALUE, EXTRA, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def process_gone(pid):
    """True once `pid` has exited: a zombie counts, once its other threads (which
    share its descriptors) are gone too."""
    try:
        with open("/proc/%d/status" % pid) as file:
            status = dict(line.split(":", 1) for line in file.read().splitlines() if ":" in line)
        return status["State"].split()[0] == "Z" and int(status["Threads"]) <= 1
    except FileNotFoundError:
        return True
    except OSError:                                 # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def parent_pid(pid):
    """The parent of process `pid`, from /proc."""
    with open("/proc/%d/stat" % pid) as file:
        return int(file.read().rpartition(")")[2].split()[1])


def kill_if_alive(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def nothing_listens(port):
    """True if no socket listens on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            # With nothing listening, a connection to a local port may meet itself.
            return sock.getsockname() == sock.getpeername()
    except ConnectionRefusedError:
        return True
    except OSError:                                 # accepted, then reset as a listener closed
        return False


class ReloaderTests(CLITestCase):
    """The supervisor and its workers: reloads, errors, crashes and signals."""

    def setUp(self):
        super().setUp()
        self.write("helper.py", "VALUE = 'helper-1'\n")
        self.write("app.py", APP_SOURCE % "v1")

    def start_reloader(self, *extra, launcher=None):
        process = self.start("app:application", "127.0.0.1:0", "--reload-interval", "0.05",
                             *extra, launcher=launcher)
        return process, process.port()

    def wait_for_body(self, port, text, path="/"):
        """GET until the body contains `text` (a reload takes a moment); return it."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            body = http_get(port, path).body.decode()
            if text in body:
                return body
            if time.monotonic() > deadline:
                self.fail("no response containing %r; the last was %r" % (text, body))
            time.sleep(0.01)

    def worker_pid(self, port):
        return int(re.search(r"pid=(\d+)", self.wait_for_body(port, "pid=")).group(1))

    def edit_in_place(self, name, text):
        with open(os.path.join(self.directory, name), "r+") as file:
            file.truncate()
            file.write(text)

    def reload_lines(self, process):
        return [line for line in process.output().splitlines() if "reloading" in line
                and "reloading on changes" not in line]

    def test_edit_in_place_and_atomic_save_of_the_app_and_of_a_module_it_imports(self):
        process, port = self.start_reloader()
        self.assertIn("v1 helper-1", self.wait_for_body(port, "v1"))
        self.edit_in_place("app.py", APP_SOURCE % "v2-in-place")
        self.wait_for_body(port, "v2-in-place helper-1")
        self.write("app.py", APP_SOURCE % "v3-atomic")
        self.wait_for_body(port, "v3-atomic helper-1")
        self.write("helper.py", "VALUE = 'helper-2'\n")
        self.wait_for_body(port, "v3-atomic helper-2")
        lines = self.reload_lines(process)
        self.assertEqual(len(lines), 3, lines)
        self.assertIn(os.path.join(self.directory, "helper.py") + " changed, reloading.",
                      lines[-1])

    def test_a_new_py_file_next_to_the_app(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1 helper-1 no-extra")
        self.write("extra.py", "VALUE = 'extra-1'\n")
        self.wait_for_body(port, "v1 helper-1 extra-1")
        process.wait_for(r"extra\.py changed, reloading\.")

    def test_syntax_error_shows_a_traceback_page_until_fixed(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        self.write("app.py", APP_SOURCE % "v2" + "\ndef broken(:\n")
        deadline = time.monotonic() + TIMEOUT
        while http_get(port).status != 500:
            self.assertLess(time.monotonic(), deadline, "no 500 page:\n" + process.output())
            time.sleep(0.01)
        page = http_get(port)
        self.assertIn(b"SyntaxError", page.body)
        self.assertIn(b"app.py", page.body)
        self.assertEqual(http_get(port).status, 500)        # still serving: no restart loop
        self.write("app.py", APP_SOURCE % "v3-fixed")
        self.wait_for_body(port, "v3-fixed")
        self.assertEqual(process.output().count("SyntaxError"), 1, process.output())

    def test_exception_at_import_in_a_module_the_app_imports(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        self.write("helper.py", "raise RuntimeError('broken helper')\n")
        body = self.wait_for_body(port, "broken helper")
        self.assertIn("Traceback (most recent call last)", body)
        self.assertIn("helper.py", body)
        self.write("helper.py", "VALUE = 'helper-fixed'\n")
        self.wait_for_body(port, "v1 helper-fixed")
        self.assertNotIn("save a file to restart", process.output())

    def assert_restarts_after_a_save(self, process, port, pid):
        self.assertIsNone(process.process.poll())          # the supervisor waits,
        response = http_get(port)                           # and answers meanwhile
        self.assertEqual(response.status, 500)
        self.assertIn(b"save a file to restart it", response.body)
        self.write("app.py", APP_SOURCE % "v2-after-crash")
        process.wait_for(r"app\.py changed, restarting\.")
        self.wait_for_body(port, "v2-after-crash")
        self.assertNotEqual(self.worker_pid(port), pid)
        self.assertEqual(process.output().count("save a file to restart"), 1, process.output())

    def test_worker_killed_then_a_save_restarts_it(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        os.kill(pid, signal.SIGKILL)
        line = process.wait_for(r"The server process (.*); save a file to restart it\.$")
        self.assertEqual(line.group(1), "was killed by SIGKILL")
        self.assert_restarts_after_a_save(process, port, pid)

    def test_worker_os_exit_then_a_save_restarts_it(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        with self.assertRaises((EOFError, ConnectionError)):
            http_get(port, "/exit")
        line = process.wait_for(r"The server process (.*); save a file to restart it\.$")
        self.assertEqual(line.group(1), "exited with status 7")
        self.assert_restarts_after_a_save(process, port, pid)

    def test_an_exit_at_import_is_one_line_and_a_save_recovers(self):
        # The app's exit status is its own: status 3 once meant "reload me",
        # and os._exit(3) at import restarted workers in a loop, silently.
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        for exit_call in ("os._exit(3)", "sys.exit(3)"):
            self.write("app.py", "import os, sys\nwith open('imported', 'a') as log:\n"
                                 "    log.write('x')\n%s\n" % exit_call)
            deadline = time.monotonic() + TIMEOUT
            while b"save a file to restart it" not in http_get(port).body:
                self.assertLess(time.monotonic(), deadline, "no error page:\n" + process.output())
                time.sleep(0.01)
            self.assertEqual(http_get(port).status, 500)
            with open(os.path.join(self.directory, "imported")) as file:
                self.assertEqual(file.read(), "x", "imported again: a restart loop")
            os.remove(os.path.join(self.directory, "imported"))
            self.write("app.py", APP_SOURCE % ("fixed-" + exit_call))
            self.wait_for_body(port, "fixed-" + exit_call)
        lines = [line for line in process.output().splitlines() if "exited" in line]
        self.assertEqual(lines, ["The server process exited with status 3; save a file to "
                                 "restart it."] * 2, process.output())
        self.assertNotIn("Traceback", process.output())

    def test_sigkill_of_the_supervisor_leaves_nothing_listening(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        self.addCleanup(kill_if_alive, pid)         # if this test fails: no orphan
        process.process.kill()                      # the supervisor alone
        process.process.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while not (process_gone(pid) and nothing_listens(port)):
            self.assertLess(time.monotonic(), deadline, "the worker outlived its supervisor")
            time.sleep(0.01)

    def test_ctrl_c_stops_everything_with_status_0(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        process.signal(signal.SIGINT)               # the whole process group, as a terminal does
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(pid))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())
        self.assertNotIn("Traceback", process.output())

    def test_sigterm_to_the_supervisor_is_forwarded(self):
        process, port = self.start_reloader()
        pid = self.worker_pid(port)
        process.process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(pid))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())

    def test_no_connection_error_while_a_client_polls_through_reloads(self):
        process, port = self.start_reloader("--quiet")
        self.wait_for_body(port, "v1")
        errors, bodies, stop = [], [], threading.Event()

        def poll():
            while not stop.is_set():
                try:
                    response = http_get(port)       # a new connection for every request
                    bodies.append(response.body.decode())
                    if response.status != 200:
                        errors.append(response.status)
                except (OSError, EOFError) as exc:
                    errors.append(exc)

        client = threading.Thread(target=poll)
        client.start()
        try:
            for version in range(2, 5):
                self.write("app.py", APP_SOURCE % ("v%d" % version))
                deadline = time.monotonic() + TIMEOUT
                while not any(body.startswith("v%d " % version) for body in bodies[-3:]):
                    self.assertLess(time.monotonic(), deadline, "v%d never served" % version)
                    time.sleep(0.005)
        finally:
            stop.set()
            client.join(TIMEOUT)
        self.assertEqual(errors, [])
        self.assertEqual(len(self.reload_lines(process)), 3, process.output())

    def test_a_request_in_flight_during_a_reload_completes(self):
        process, port = self.start_reloader()
        self.wait_for_body(port, "v1")
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(get("/slow"))
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(os.path.join(self.directory, "entered")):
            self.assertLess(time.monotonic(), deadline, "the slow request never started")
            time.sleep(0.01)
        self.write("app.py", APP_SOURCE % "v2")
        process.wait_for(r"app\.py changed, reloading\.")
        self.write("release", "")
        response = Reader(sock).response()
        self.assertEqual(response.status, 200)
        self.assertTrue(response.body.startswith(b"v1 "), response.body)
        self.wait_for_body(port, "v2")

    def test_python_dash_m_runserver_survives_a_reload(self):
        process = CLIProcess(["runserver", "app:application", "127.0.0.1:0",
                              "--reload-interval", "0.05"], cwd=self.directory,
                             env={"PYTHONPATH": HERE}, program="-m")
        self.addCleanup(process.kill)
        port = process.port()
        pid = self.worker_pid(port)
        self.write("app.py", APP_SOURCE % "v2-module")
        self.wait_for_body(port, "v2-module")
        self.assertNotEqual(self.worker_pid(port), pid)
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)

    @unittest.skipUnless(os.path.isdir("/proc/self/fd"), "lists descriptors in /proc")
    def test_every_kind_of_worker_looks_the_same_to_the_app(self):
        # The first worker is forked from the supervisor, the next one forked
        # from the template, or started afresh with --no-warm: the app must
        # not tell them apart.
        source = ("import os, sys, runserver\n"
                  "VERSION = %r\n"
                  "def descriptors():\n"         # what each is, but for sockets
                  "    kinds = []\n"
                  "    for fd in os.listdir('/proc/self/fd'):\n"
                  "        try:\n"
                  "            kind = os.readlink('/proc/self/fd/' + fd).split('[')[0]\n"
                  "            if not os.path.isdir(kind):\n"    # the file watcher's scans
                  "                kinds.append(kind)\n"
                  "        except OSError:\n"       # the listing's own descriptor
                  "            pass\n"
                  "    return sorted(kind for kind in kinds if kind != 'socket:')\n"
                  "def application(environ, start_response):\n"
                  "    kinds = descriptors()\n"
                  "    body = repr((VERSION, runserver.is_reloader_worker(), os.getppid(),\n"
                  "                 sorted(name for name in os.environ if 'RUNSERVER' in name),\n"
                  "                 sys.modules['runserver'].__file__, kinds)).encode()\n"
                  "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                  "    return [body]\n")
        launcher = self.write("launch.py", (   # as a shell's `exec 7>marker.txt` would
            "import os, sys\n"
            "os.set_inheritable(os.open('marker.txt', os.O_WRONLY | os.O_CREAT), True)\n"
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"))
        seen = []
        for options in ((), ("--no-warm",)):    # forked from the template, or started
            self.write("app.py", source % "v1")
            process, port = self.start_reloader(*options, launcher=launcher)
            first = ast.literal_eval(self.wait_for_body(port, "v1"))
            self.write("app.py", source % "v2")
            second = ast.literal_eval(self.wait_for_body(port, "v2"))
            self.assertEqual(first[1:3], (True, process.process.pid))
            if not options:                     # the template is the supervisor's child
                self.assertEqual(parent_pid(second[2]), process.process.pid)
                self.assertNotEqual(second[2], process.process.pid)
            else:
                self.assertEqual(second[2], process.process.pid)
            seen += [first[1:2] + first[3:], second[1:2] + second[3:]]
            process.signal(signal.SIGINT)
            self.assertEqual(process.wait(), 0)
        self.assertEqual(len(set(repr(item) for item in seen)), 1, seen)

    def test_under_a_launcher_the_first_worker_is_started_not_forked(self):
        # Under a launcher (runpy here; a profiler, a debugger) a forked worker
        # would resume in the middle of the launcher's code and run its end.
        launcher = self.write("launcher.py", (
            "import atexit, os, runpy, sys\n"
            "print('the launcher starts in', os.getpid(), flush=True)\n"
            "atexit.register(lambda: print('the launcher ends in', os.getpid(), flush=True))\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n"))
        process, port = self.start_reloader(launcher=launcher)
        self.wait_for_body(port, "v1")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        started = re.findall(r"the launcher starts in (\d+)", process.output())
        ended = re.findall(r"the launcher ends in (\d+)", process.output())
        self.assertIn(str(process.process.pid), ended)
        self.assertLessEqual(set(ended), set(started), process.output())

    def test_usage_error_in_the_app_spec_with_the_reloader_on(self):
        code, output = self.run_cli("app:missing", "127.0.0.1:0", "--reload-interval", "0.05")
        self.assertEqual(code, 2, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn('no attribute "missing"', output)
        self.assertNotIn("Traceback", output)


class WarmReloadTests(CLITestCase):
    """Workers forked from the template: what it preloads, when it is replaced,
    when it is refused, and that it never outlives the supervisor."""

    WARM_APP = ("import os, %s\n"
                "VERSION = %r\n"
                "def application(environ, start_response):\n"
                "    body = ('%%s %%s pid=%%d ppid=%%d\\n' %% (VERSION, %s, os.getpid(),\n"
                "                                          os.getppid())).encode()\n"
                "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                "    return [body]\n")
    LIBRARY = ("import os\n"
               "with open(os.path.join(os.environ['WARM_TEST_LOG'], '%s.log'), 'a') as log:\n"
               "    log.write('%%d\\n' %% os.getpid())\n"
               "VALUE = %r\n")

    def setUp(self):
        super().setUp()
        import site
        import sysconfig
        if not site.ENABLE_USER_SITE:
            self.skipTest("no user site-packages here (a virtualenv?): the test's libraries go there")
        userbase = tempfile.mkdtemp(prefix="runserver-site-")
        self.addCleanup(shutil.rmtree, userbase, True)
        self.site = sysconfig.get_path("purelib", "%s_user" % os.name, vars={"userbase": userbase})
        self.env = {"PYTHONUSERBASE": userbase, "WARM_TEST_LOG": self.directory,
                    "PYTHONDONTWRITEBYTECODE": None}

    def library(self, name, text):
        """Write a module into the user site-packages: a library, not the project's."""
        path = os.path.join(self.site, name + ".py")
        os.makedirs(self.site, exist_ok=True)
        with open(path + ".tmp", "w") as file:
            file.write(text)
        os.replace(path + ".tmp", path)
        return path

    def app(self, version, library="lib"):
        self.write("app.py", self.WARM_APP % (library, version, library + ".VALUE"))

    def importers(self, name):
        """The pids of the processes that imported library `name`."""
        try:
            with open(os.path.join(self.directory, name + ".log")) as file:
                return [int(line) for line in file.read().split()]
        except FileNotFoundError:
            return []

    def start_warm(self, *extra):
        process = self.start("app:application", "127.0.0.1:0", "--reload-interval", "0.05",
                             *extra, env=self.env)
        return process, process.port()

    def serving(self, port, text):
        """Wait for a response containing `text`; return (body, worker pid, its parent)."""
        body = ReloaderTests.wait_for_body(self, port, text)
        pid, ppid = re.search(r"pid=(\d+) ppid=(\d+)", body).groups()
        return body, int(pid), int(ppid)

    def test_a_reloaded_worker_comes_from_the_template_with_the_libraries_imported(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.assertIn("reloading on changes (warm)", process.output())
        _, first, parent = self.serving(port, "v1 lib-1")
        self.assertEqual(parent, process.process.pid)       # forked from the supervisor
        templates = set()
        for version in ("v2", "v3"):
            self.app(version)
            _, worker, template = self.serving(port, version + " lib-1")
            self.assertNotEqual(template, process.process.pid)
            self.assertEqual(parent_pid(template), process.process.pid)
            templates.add(template)
        self.assertEqual(len(templates), 1)
        self.assertEqual(self.importers("lib"), [first] + list(templates))   # never again

    def test_with_no_warm_every_worker_imports_the_libraries(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm("--no-warm")
        self.assertIn("reloading on changes\n", process.output() + "\n")
        self.serving(port, "v1 lib-1")
        self.app("v2")
        _, worker, parent = self.serving(port, "v2 lib-1")
        self.assertEqual(parent, process.process.pid)
        self.assertEqual(len(self.importers("lib")), 2, self.importers("lib"))

    def test_a_change_to_a_preloaded_file_replaces_the_template(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 lib-1")
        self.app("v2")
        _, _, template = self.serving(port, "v2 lib-1")
        self.library("lib", self.LIBRARY % ("lib", "lib-2"))     # as pip install would
        self.serving(port, "v2 lib-2")
        self.app("v3")
        _, _, new_template = self.serving(port, "v3 lib-2")
        self.assertNotIn(new_template, (template, process.process.pid))
        self.assertEqual(parent_pid(new_template), process.process.pid)
        self.assertIn(new_template, self.importers("lib"))
        self.assertTrue(process_gone(template))

    def test_a_new_library_imported_by_an_edit_is_preloaded_too(self):
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.library("newlib", self.LIBRARY % ("newlib", "newlib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 lib-1")
        self.app("v2", library="newlib")
        _, worker, template = self.serving(port, "v2 newlib-1")
        self.assertEqual(self.importers("newlib")[0], worker)
        wait_until(lambda: self.importers("newlib") == [worker, template])
        self.app("v3", library="newlib")
        _, _, parent = self.serving(port, "v3 newlib-1")
        self.assertEqual(parent, template)
        self.assertEqual(self.importers("newlib"), [worker, template])

    def test_a_library_that_fails_in_the_template_is_left_to_the_worker(self):
        # As a Django library that reads the settings on import: the template
        # has none, and what its failed import left must not reach a worker.
        package = os.path.join(self.site, "configured")
        os.makedirs(os.path.join(package, "mid"))
        with open(os.path.join(package, "__init__.py"), "w"):
            pass
        with open(os.path.join(package, "mid", "__init__.py"), "w") as file:
            file.write("import os\nfrom . import leaf\n"
                       "if os.environ.get('APP_CONFIGURED') != '1':\n"
                       "    raise RuntimeError('not configured')\n")
        self.library(os.path.join("configured", "mid", "leaf"), "VALUE = 'leaf-1'\n")
        source = self.WARM_APP.replace("import os, %s\n", (
            "import os\nos.environ['APP_CONFIGURED'] = '1'\nimport %s as library\n"))
        self.write("app.py", source % ("configured.mid.leaf", "v1", "library.VALUE"))
        process, port = self.start_warm()
        self.serving(port, "v1 leaf-1")
        self.write("app.py", source % ("configured.mid.leaf", "v2", "library.VALUE"))
        _, _, template = self.serving(port, "v2 leaf-1")
        self.assertNotEqual(template, process.process.pid)
        self.assertNotIn("Traceback", process.output())

    def test_a_library_that_starts_a_thread_turns_warm_reloads_off(self):
        self.library("lib", "import threading\n"
                            "threading.Thread(target=threading.Event().wait, name='lib-thread',\n"
                            "                 daemon=True).start()\n"
                            "VALUE = 'lib-1'\n")
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 lib-1")
        process.wait_for(r"Warm reloads are off: importing lib starts a thread \(lib-thread\)")
        self.app("v2")
        _, _, parent = self.serving(port, "v2 lib-1")
        self.assertEqual(parent, process.process.pid)       # started afresh
        self.assertEqual(process.output().count("Warm reloads are off"), 1, process.output())

    def test_a_library_never_imports_a_project_module_in_the_template(self):
        # The template's import of it fails there: it is left to each worker.
        self.library("lib", "import projectmod\nVALUE = projectmod.VALUE\n")
        self.write("projectmod.py", "VALUE = 'project-1'\n")
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 project-1")
        self.app("v2")
        _, _, template = self.serving(port, "v2 project-1")
        self.assertNotEqual(template, process.process.pid)
        self.write("projectmod.py", "VALUE = 'project-2'\n")
        _, _, parent = self.serving(port, "v2 project-2")
        self.assertEqual(parent, template)
        self.assertNotIn("Warm reloads are off", process.output())

    def test_a_library_that_goes_on_without_a_project_module_is_refused(self):
        self.library("lib", "try:\n"
                            "    import projectmod\n"
                            "    VALUE = projectmod.VALUE\n"
                            "except ImportError:\n"
                            "    VALUE = 'no-project'\n")
        self.write("projectmod.py", "VALUE = 'project-1'\n")
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1 project-1")
        process.wait_for(r"Warm reloads are off: importing lib imports projectmod, a module "
                         r"of this project")
        self.app("v2")
        _, _, parent = self.serving(port, "v2 project-1")
        self.assertEqual(parent, process.process.pid)

    def warm_processes(self):
        """Start, reload once; return (process, port, worker pid, template pid)."""
        self.library("lib", self.LIBRARY % ("lib", "lib-1"))
        self.app("v1")
        process, port = self.start_warm()
        self.serving(port, "v1")
        self.app("v2")
        _, worker, template = self.serving(port, "v2")
        self.assertNotEqual(template, process.process.pid)
        for pid in (worker, template):
            self.addCleanup(kill_if_alive, pid)     # if this test fails: no orphan
        return process, port, worker, template

    def test_sigkill_of_the_supervisor_leaves_neither_worker_nor_template(self):
        process, port, worker, template = self.warm_processes()
        process.process.kill()                      # the supervisor alone
        process.process.wait(TIMEOUT)
        wait_until(lambda: process_gone(worker) and process_gone(template)
                   and nothing_listens(port))

    def test_ctrl_c_stops_all_three_processes(self):
        process, port, worker, template = self.warm_processes()
        process.signal(signal.SIGINT)               # the whole process group, as a terminal does
        self.assertEqual(process.wait(), 0)
        self.assertTrue(process_gone(worker) and process_gone(template))
        self.assertEqual(process.output().count("Server stopped."), 1, process.output())
        self.assertNotIn("Traceback", process.output())


# ---- App loading --------------------------------------------------------------------

class LoadAppTests(CLITestCase):

    def setUp(self):
        super().setUp()
        sys.path.insert(0, self.directory)
        self.addCleanup(sys.path.remove, self.directory)

    def module(self, name, text):
        self.write(name + ".py", text)
        self.addCleanup(sys.modules.pop, name, None)

    def test_spec_forms(self):
        self.module("specs_a", "def application(e, s): pass\ndef app(e, s): pass\n"
                               "def make(name, debug=False):\n    def wsgi(e, s): pass\n"
                               "    wsgi.args = (name, debug)\n    return wsgi\n"
                               "class K:\n    inner = staticmethod(app)\n")
        module = __import__("specs_a")
        self.assertIs(runserver.load_app("specs_a"), module.application)
        self.assertIs(runserver.load_app("specs_a:app"), module.app)
        self.assertIs(runserver.load_app("specs_a:K.inner"), module.app)
        self.assertEqual(runserver.load_app("specs_a:make('dev', debug=True)").args, ("dev", True))
        self.assertEqual(runserver.load_app("specs_a:make()" if False else "specs_a:make('x')").args,
                         ("x", False))
        path = os.path.join(self.directory, "specs_a.py")
        self.assertTrue(callable(runserver.load_app(path + ":app")))

    def test_app_is_the_fallback_name(self):
        self.module("specs_b", "def app(e, s): pass\n")
        self.assertIs(runserver.load_app("specs_b"), sys.modules["specs_b"].app)

    def test_user_mistakes_are_app_spec_errors(self):
        self.module("specs_c", "value = 3\ndef factory(x): return 5\n")
        for spec, fragment in [("no_such_module_x", "no module named"),
                               ("specs_c:missing", "no attribute"),
                               ("specs_c:value", "not a WSGI application"),
                               ("specs_c:factory(open('x'))", "must be literals"),
                               ("specs_c:factory(1", "factory call"),
                               ("specs_c:__import__('os').system('x')", "factory call"),
                               ("specs_c:factory(1)", "not a WSGI application"),
                               ("specs_c", "no callable"),
                               ("no/such/file.py:app", "no file")]:
            with self.subTest(spec=spec):
                with self.assertRaisesRegex(runserver.AppSpecError, fragment):
                    runserver.load_app(spec)

    def test_import_error_inside_the_module_is_not_a_spec_error(self):
        self.module("specs_d", "import no_such_dependency_y\n")
        with self.assertRaises(ModuleNotFoundError):
            runserver.load_app("specs_d")


# ---- Command line -----------------------------------------------------------------

class AddrportTests(unittest.TestCase):

    def test_valid_forms(self):
        parse = runserver.parse_addrport
        self.assertEqual(parse(None, False), ("127.0.0.1", 8000, None, False))
        self.assertEqual(parse(None, True), ("::1", 8000, None, True))
        self.assertEqual(parse("8080", False), ("127.0.0.1", 8080, None, False))
        self.assertEqual(parse("0:8000", False), ("0.0.0.0", 8000, None, False))
        self.assertEqual(parse("10.1.2.3:80", False), ("10.1.2.3", 80, None, False))
        self.assertEqual(parse("[::1]:9000", False), ("::1", 9000, None, True))
        self.assertEqual(parse("localhost:0", False), ("localhost", 0, None, False))
        self.assertEqual(parse("unix:/tmp/x.sock", False), (None, None, "/tmp/x.sock", False))
        self.assertEqual(parse("65535", False)[1], 65535)

    def test_invalid_forms(self):
        for addrport, ipv6 in [("8o00", False), ("65536", False), ("999999", False),
                               ("256.1.1.1:80", False), ("1.2.3:80", False), ("[zz]:80", False),
                               ("[::1]", False), ("127.0.0.1:80", True), ("localhost:80", True),
                               ("unix:", False), ("unix:/x.sock", True), (":80", False),
                               ("host:", False), ("-1", False), ("8000\n", False),
                               ("\u0661\u0662\u0663\u0664\u0665", False)]:
            with self.subTest(addrport=addrport, ipv6=ipv6):
                with self.assertRaises(runserver.UsageError):
                    runserver.parse_addrport(addrport, ipv6)


class CLITests(CLITestCase):

    def test_help_and_version(self):
        code, output = self.run_cli("--help")
        self.assertEqual(code, 0)
        for option in ("--ipv6", "--nothreading", "--noreload", "--no-color", "--quiet",
                       "--debug", "--static", "--cert", "--reload-interval", "--max-body"):
            self.assertIn(option, output)
        code, output = self.run_cli("--version")
        self.assertEqual((code, output.strip()), (0, "runserver.py " + runserver.__version__))

    @unittest.skipUnless(hasattr(os, "fork"), "sets RLIMIT_NOFILE")
    def test_out_of_file_descriptors_is_said_once_then_serving_resumes(self):
        # accept() fails with EMFILE while the listening socket stays readable.
        launcher = self.write("launch.py", (
            "import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n"))
        process = self.start("127.0.0.1:0", "--noreload", launcher=launcher)
        port = process.port()
        clients = []
        try:
            for _ in range(80):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
            process.wait_for(r"Cannot accept connections: Too many open files; they wait")
        finally:
            for client in clients:
                client.close()
        self.assertEqual(http_get(port).status, 200)
        self.assertEqual(process.output().count("Cannot accept connections"), 1,
                         process.output())

    def test_usage_errors_are_one_line_with_status_2(self):
        self.write("good.py", "def app(e, s): pass\nvalue = 1\ndef make(x): return app\n")
        for args, fragment in [
                (["8o00"], '"8o00" is not a valid port number'),
                (["good:app", "99999"], "0 to 65535"),
                (["good:app", "127.0.0.1:80", "-6"], "-6/--ipv6"),
                (["no_such_module_z:app", "0", "--noreload"], "no module named"),
                (["no_such_module_z:app", "0"], "no module named"),
                (["good:missing", "0", "--noreload"], "no attribute"),
                (["good:value", "0", "--noreload"], "not a WSGI application"),
                (["good:make(1+", "0", "--noreload"], "factory call"),
                (["good:app", "--no-such-option"], "unrecognized arguments"),
                (["good:app", "--cert", "c.pem"], "--cert and --key"),
                (["good:app", "--static", "static"], "URL_PREFIX=DIRECTORY")]:
            with self.subTest(args=args):
                self.assertOneLineError(args, 2, fragment)

    def test_import_error_inside_the_app_shows_its_traceback(self):
        self.write("broken.py", "import no_such_dependency_q\napp = None\n")
        code, output = self.run_cli("broken:app", "0", "--noreload")
        self.assertEqual(code, 1, output)
        self.assertIn("Traceback", output)
        self.assertIn("no_such_dependency_q", output)

    def test_address_in_use_is_one_line_with_status_1(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.assertOneLineError(["127.0.0.1:%d" % port, "--noreload"], 1,
                                    "That port is already in use.")

    def test_demo_app_banner_and_graceful_sigterm(self):
        process = self.start("0", "--noreload")
        url = process.wait_for_banner()
        self.assertRegex(url, r"^http://127\.0\.0\.1:\d+/$")
        process.wait_for(r"Quit the server with CONTROL-C\.")
        response = http_get(process.port(), "/hello?x=1")
        self.assertEqual(response.status, 200)
        self.assertIn(b"runserver.py", response.body)
        self.assertIn(b"GET /hello?x=1", response.body)
        page = http_get(process.port(), headers=b"Accept: text/html\r\n")
        self.assertTrue(page.header("content-type").startswith("text/html"))
        process.wait_for(r'"GET /hello\?x=1 HTTP/1.1" 200')
        process.process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(), 0)
        self.assertIn("Server stopped.", process.output())

    def test_factory_spec_and_file_path_from_the_command_line(self):
        self.write("pkg/factory.py",
                   "def create_app(name, excited=False):\n"
                   "    def app(environ, start_response):\n"
                   "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                   "        return [(name + ('!' if excited else '')).encode()]\n"
                   "    return app\n")
        process = self.start("pkg/factory.py:create_app('hi', excited=True)", "0", "--noreload")
        self.assertEqual(http_get(process.port()).body, b"hi!")

    def test_second_ctrl_c_quits_without_waiting_for_requests(self):
        self.write("slow.py", "import time\n"
                              "def app(environ, start_response):\n"
                              "    print('request started', flush=True)\n"
                              "    time.sleep(60)\n")
        for options in (["--noreload"], []):
            with self.subTest(options=options):
                process = self.start("slow:app", "0", *options)
                sock = socket.create_connection(("127.0.0.1", process.port()), timeout=TIMEOUT)
                self.addCleanup(sock.close)
                sock.sendall(get())
                process.wait_for(r"request started")
                process.signal(signal.SIGINT)
                process.wait_for(r"Waiting up to 5s for 1 request\(s\) to finish; CONTROL-C again")
                process.signal(signal.SIGINT)
                self.assertEqual(process.wait(), 0)

    def test_sigint_in_noreload_mode_exits_zero(self):
        process = self.start("0", "--noreload")
        process.port()
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertNotIn("Traceback", process.output())
        self.assertIn("Server stopped.", process.output())


class NewcomerRegressionTests(CLITestCase):
    """What a first-time user runs into: argument order, APP typos, vendoring, pipes."""

    def test_options_may_come_between_app_and_addrport(self):
        # `runserver.py hello:app --noreload 8000` was "unrecognized arguments: 8000".
        self.write("hello.py", "def app(environ, start_response):\n"
                               "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                               "    return [b'hello']\n")
        process = self.start("hello:app", "--noreload", "-q", "0")
        self.assertEqual(http_get(process.port()).body, b"hello")
        self.assertOneLineError(["hello:missing", "--noreload", "0"], 2, 'no attribute "missing"')

    def test_factory_called_with_wrong_arguments_is_one_line(self):
        self.write("fac.py", "def create_app(name):\n    return None\n"
                             "def app(environ, start_response):\n    return []\n"
                             "def broken():\n    return len(3)\n")
        for args, fragment in [
                (["fac:create_app()", "--noreload"],
                 'cannot call "create_app()": create_app() missing 1 required positional'),
                (["fac:create_app(nme=1)", "--noreload"], "unexpected keyword argument 'nme'"),
                (["fac:app()", "0"], 'cannot call "app()"')]:
            with self.subTest(args=args):
                self.assertOneLineError(args, 2, fragment)
        code, output = self.run_cli("fac:broken()", "--noreload")   # the user's own TypeError
        self.assertEqual(code, 1, output)
        self.assertIn("Traceback", output)
        self.assertIn("in broken", output)

    def test_module_dot_attribute_suggests_the_colon(self):
        self.write("hello.py", "def app(environ, start_response):\n    return []\n")
        self.assertOneLineError(["hello.app", "--noreload"], 2,
                                'no module named "hello.app"; for the attribute "app" of '
                                '"hello", write hello:app')
        self.assertOneLineError(["hello.nope", "--noreload"], 2,
                                'no module named "hello.nope" (looked in')

    def test_banner_names_an_app_given_to_run_as_an_object(self):
        self.write("myproject.py", "def app(environ, start_response):\n"
                                   "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                                   "    return [b'mine']\n")
        script = self.write("serve.py", "import runserver\nfrom myproject import app\n"
                                        "if __name__ == '__main__':\n"
                                        "    runserver.run(app, '127.0.0.1', 0)\n")
        process = CLIProcess([], self.directory, {"PYTHONPATH": HERE}, program=script)
        self.addCleanup(process.kill)
        process.wait_for(r"serving myproject:app, reloading on changes")
        self.assertEqual(http_get(process.port()).body, b"mine")
        process.signal(signal.SIGINT)
        self.assertEqual(process.wait(), 0)
        self.assertNotIn("demo app", process.output())
        self.assertIn("Server stopped.", process.output())

    def test_describe_app(self):
        class Handler:
            def __call__(self, environ, start_response):
                return []
        self.assertIsNone(runserver.describe_app(runserver.demo_app))
        self.assertEqual(runserver.describe_app(hello_app), hello_app.__module__ + ":hello_app")
        self.assertEqual(runserver.describe_app(Handler()), "a Handler object")

    def test_help_explains_the_limits(self):
        code, output = self.run_cli("--help")
        self.assertEqual(code, 0)
        output = " ".join(output.split())           # whatever the terminal's width
        self.assertIn("sizes take K, M or G", output)
        self.assertRegex(output, r"--max-body BYTES a larger request body is answered 413 "
                                 r"\(default 1G\)")
        self.assertRegex(output, r"a longer request line is answered 414 \(default 64K\)")
        self.write("hello.py", "def app(environ, start_response):\n    return []\n")
        self.assertOneLineError(["hello:missing", "--max-request-line", "8K", "--noreload"], 2,
                                'no attribute "missing"')

    def test_ctrl_c_after_stdout_reader_is_gone_is_not_a_traceback(self):
        # `runserver.py | tee log`, then Ctrl-C: tee dies first, "Server stopped." hit EPIPE.
        for args in (["0", "--noreload"], ["0"]):
            with self.subTest(args=args):
                process = subprocess.Popen(
                    [sys.executable, RUNSERVER] + args, cwd=self.directory,
                    env=dict(os.environ, NO_COLOR="1"), stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
                self.addCleanup(process.wait, TIMEOUT)
                self.addCleanup(process.stderr.close)
                for line in iter(process.stdout.readline, b""):
                    if line.startswith(b"Quit the server"):
                        break
                process.stdout.close()              # the reader of stdout goes away
                os.killpg(process.pid, signal.SIGINT)
                self.assertEqual(process.wait(TIMEOUT), 0)
                errors = process.stderr.read().decode("utf-8", "replace")
                self.assertNotIn("Traceback", errors)
                self.assertNotIn("BrokenPipeError", errors)


if __name__ == "__main__":
    unittest.main()
