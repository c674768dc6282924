"""Launch, observe and stop the servers under test.

Every process is started in a new session (its own process group) and
registered in ``_LIVE``; ``stop_all()`` ends whatever is left, so run.py can
call it from a ``finally`` block and on Ctrl-C.  Processes are observed
through /proc: the "tree" of a server is its launcher plus every descendant
plus anything still in its session.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time


def read_response_head(sock, bufsize):
    """Read until the blank line that ends a response head; (head, bytes after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(bufsize)
        if not chunk:
            raise ValueError("connection closed before the response headers")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


HERE = os.path.dirname(os.path.abspath(__file__))

# Order used in tables and charts.
ALL_SERVERS = [
    "runserver",
    "runserver-pypy",
    "werkzeug",
    "django",
    "wsgiref",
    "gunicorn",
    "waitress",
    "cheroot",
    "ceiling",
]
RELOADERS = ["runserver", "werkzeug", "django"]
RUNSERVERS = ["runserver", "runserver-pypy"]    # runserver.py, under CPython and PyPy
DESCRIPTIONS = {
    "runserver": "runserver.py --noreload --quiet",
    "runserver-pypy": "runserver.py --noreload --quiet under PyPy 3",
    "werkzeug": "Werkzeug run_simple(threaded=True)",
    "django": "Django basehttp.run(threading=True)",
    "wsgiref": "wsgiref.simple_server",
    "gunicorn": "gunicorn -w 1 -k sync",
    "waitress": "waitress-serve --threads=4",
    "cheroot": "cheroot.wsgi.Server (10 threads)",
    "ceiling": "bare socket, canned response",
    "nginx": "nginx, 1 worker, sendfile on",
}

BANNER_RE = re.compile(r"Starting development server at http://127\.0\.0\.1:(\d+)/")
CLK_TCK = os.sysconf("SC_CLK_TCK")

_LIVE = {}  # pid -> Process
_LIVE_LOCK = threading.Lock()


class ServerError(RuntimeError):
    pass


# ---------------------------------------------------------------- /proc ---


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (index 0 = state)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2 :].split()


def _all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def process_tree(root):
    """PIDs of ``root``, its descendants and its session's members."""
    parent_of = {}
    session_of = {}
    for pid in _all_pids():
        try:
            fields = _stat_fields(pid)
        except (OSError, ValueError):
            continue
        parent_of[pid] = int(fields[1])
        session_of[pid] = int(fields[3])
    tree = {pid for pid, sid in session_of.items() if sid == root}
    if root in parent_of:
        tree.add(root)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent_of.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sorted(tree)


def rss_bytes(pids):
    """Resident set size summed over ``pids`` (VmRSS)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def cpu_ticks(pids):
    """{pid: utime+stime in clock ticks} for the live processes in ``pids``."""
    ticks = {}
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except (OSError, ValueError):
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


# ------------------------------------------------------------ processes ---


class Process:
    """A subprocess started in its own session, with its output in a log."""

    def __init__(self, name, argv, log_path, env=None, cwd=None, read_stdout=False):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.lines = []
        self._log = open(log_path, "ab")
        self._log.write(("$ " + " ".join(argv) + "\n").encode())
        self._log.flush()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if read_stdout else self._log,
            stderr=self._log,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        with _LIVE_LOCK:
            _LIVE[self.pid] = self
        self._line_event = threading.Condition()
        self._reader = None
        if read_stdout:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self._log.write(raw)
            self._log.flush()
            with self._line_event:
                self.lines.append(raw.decode("utf-8", "replace"))
                self._line_event.notify_all()
        with self._line_event:
            self._line_event.notify_all()

    def wait_for_line(self, pattern, timeout):
        """Wait until a stdout line matches ``pattern``; return the match."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._line_event:
            while True:
                while seen < len(self.lines):
                    match = pattern.search(self.lines[seen])
                    seen += 1
                    if match:
                        return match
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise ServerError(f"{self.name} exited with status {self.proc.returncode}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServerError(f"{self.name}: no line matching {pattern.pattern!r}")
                self._line_event.wait(min(remaining, 0.2))

    def tree(self):
        return process_tree(self.pid)

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace=5.0):
        """SIGTERM the process group, then SIGKILL whatever is left."""
        pids = self.tree()
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except OSError:
            pass
        for pid in pids:
            if pid != self.pid:
                _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and not _any_alive(pids):
                break
            time.sleep(0.02)
        leftover = set(pids) | set(self.tree())
        if leftover:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            for pid in leftover:
                _signal(pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        with _LIVE_LOCK:
            _LIVE.pop(self.pid, None)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _any_alive(pids):
    for pid in pids:
        try:
            state = _stat_fields(pid)[0]
        except (OSError, ValueError):
            continue
        if state != b"Z":
            return True
    return False


def stop_all():
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for process in live:
        try:
            process.stop(grace=2.0)
        except Exception as exc:  # keep stopping the others
            print(f"warning: could not stop {process.name}: {exc}", file=sys.stderr)


def run_command(argv, timeout, env=None, log_path=None):
    """Run a short-lived command (wrk) in its own session; return stdout."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    text = out.decode("utf-8", "replace")
    if log_path:
        with open(log_path, "a") as f:
            f.write("$ " + " ".join(argv) + "\n" + text + "\n")
    return proc.returncode, text


# -------------------------------------------------------------- network ---


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=5.0, keep_body=True):
    """One GET on a new connection (Connection: close); return (status, body).

    With ``keep_body=False`` the body is read and counted but not kept, and
    ``body`` is its length.  Raises OSError (refused, reset, timeout...) or
    ValueError on a bad or truncated response.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head, rest = read_response_head(sock, 65536)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = bytearray(rest)
        received = len(rest)
        while length is None or received < length:
            chunk = sock.recv(1 << 20)
            if not chunk:
                if length is not None:
                    raise ValueError("truncated response body")
                break
            received += len(chunk)
            if keep_body:
                body += chunk
        return status, (bytes(body) if keep_body else received)


def wait_port(port, process, timeout):
    """Wait until 127.0.0.1:port accepts a connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if not process.alive():
            raise ServerError(f"{process.name} exited with status {process.proc.returncode}")
        if time.monotonic() > deadline:
            raise ServerError(f"{process.name} not listening on port {port} after {timeout}s")
        time.sleep(0.005)


def wait_http(port, process, timeout, path="/"):
    """Wait until a GET answers 200; return the time it did."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            status, _ = http_get(port, path, timeout=max(0.5, deadline - time.monotonic()),
                                 keep_body=False)
            if status == 200:
                return time.monotonic()
            last_error = f"status {status}"
        except (OSError, ValueError) as exc:
            last_error = repr(exc)
        if not process.alive():
            raise ServerError(f"{process.name} exited with status {process.proc.returncode}")
        if time.monotonic() > deadline:
            raise ServerError(f"{process.name}: no good response after {timeout}s ({last_error})")
        time.sleep(0.003)


# ------------------------------------------------------------ launchers ---


class Context:
    """Where things are: the venv's python, runserver.py, logs directory."""

    def __init__(self, venv, runserver, logdir, reload_interval=None):
        self.venv = venv
        self.python = os.path.join(venv, "bin", "python")
        self.runserver = runserver
        self.logdir = logdir
        self.reload_interval = reload_interval
        self.runserver_available = False
        self.pypy = shutil.which("pypy3")    # runserver-pypy: runserver.py under PyPy

    def env(self, app_dirs=(), extra=None):
        env = dict(os.environ)
        env.pop("PYTHONSTARTUP", None)
        env["PYTHONPATH"] = os.pathsep.join([*app_dirs, HERE])
        env["PYTHONUNBUFFERED"] = "1"
        env["VIRTUAL_ENV"] = self.venv
        env["PATH"] = os.path.join(self.venv, "bin") + os.pathsep + env.get("PATH", "")
        if extra:
            env.update(extra)
        return env


def server_argv(ctx, name, app, port, reload=False):
    """Command line that serves WSGI ``app`` (MODULE:ATTR) on ``port``."""
    bin_dir = os.path.join(ctx.venv, "bin")
    if name in RUNSERVERS:
        python = ctx.pypy if name == "runserver-pypy" else ctx.python
        argv = [python, ctx.runserver, app, f"127.0.0.1:{port}", "--quiet"]
        if not reload:
            argv.append("--noreload")
        elif ctx.reload_interval is not None:
            argv += ["--reload-interval", str(ctx.reload_interval)]
        return argv
    if reload and name not in RELOADERS:
        raise ValueError(f"{name} has no reloader")
    if name in ("werkzeug", "django", "wsgiref", "cheroot"):
        argv = [ctx.python, os.path.join(HERE, "serve.py"), name, app, str(port)]
        return argv + (["--reload"] if reload else [])
    if name == "gunicorn":
        return [
            os.path.join(bin_dir, "gunicorn"),
            "-w", "1", "-k", "sync",
            "-b", f"127.0.0.1:{port}",
            "--log-level", "warning",
            app,
        ]
    if name == "waitress":
        return [
            os.path.join(bin_dir, "waitress-serve"),
            "--threads=4",
            f"--listen=127.0.0.1:{port}",
            app,
        ]
    if name == "ceiling":
        return [ctx.python, os.path.join(HERE, "ceiling.py"), str(port)]
    raise ValueError(f"unknown server {name}")


_log_counter = [0]


def _log_path(ctx, name):
    _log_counter[0] += 1
    return os.path.join(ctx.logdir, f"{_log_counter[0]:03d}-{name}.log")


def launch(ctx, name, app, app_dirs=(), reload=False, port=None, extra_env=None,
           timeout=30.0, check_path="/"):
    """Start server ``name`` and wait until it serves a 200 on ``check_path``.

    runserver.py is started on port 0 (unless ``port`` is given) and its
    banner line gives the real port; the peers get a free port and are polled.
    Returns (Process, port); ``process.ready_at - process.started`` is the
    time from launch to the first good response.
    """
    use_banner = name in RUNSERVERS and port is None
    if port is None:
        port = 0 if use_banner else free_port()
    argv = server_argv(ctx, name, app, port, reload=reload)
    process = Process(
        name,
        argv,
        _log_path(ctx, name),
        env=ctx.env(app_dirs, extra_env),
        cwd=app_dirs[0] if app_dirs else HERE,
        read_stdout=name in RUNSERVERS,
    )
    try:
        if use_banner:
            port = int(process.wait_for_line(BANNER_RE, timeout).group(1))
        process.ready_at = wait_http(port, process, timeout, path=check_path)
    except BaseException as exc:
        tail = process.log_tail()
        process.stop()
        if isinstance(exc, ServerError):
            raise ServerError(f"{exc}\n--- log tail ---\n{tail}") from None
        raise
    return process, port


# ---------------------------------------------------------------- nginx ---


def nginx_binary():
    for path in ("/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"):
        if os.access(path, os.X_OK):
            return path
    return None


def launch_nginx(ctx, docroot, workdir, timeout=15.0):
    """nginx on a free port serving ``docroot`` with sendfile, in foreground."""
    binary = nginx_binary()
    port = free_port()
    os.makedirs(workdir, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    conf = os.path.join(workdir, "nginx.conf")
    user = "user root;\n" if os.geteuid() == 0 else ""
    with open(conf, "w") as f:
        f.write(
            f"""{user}worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
    }}
}}
"""
        )
    argv = [binary, "-p", workdir, "-c", conf, "-e", os.path.join(workdir, "error.log")]
    process = Process("nginx", argv, _log_path(ctx, "nginx"))
    try:
        wait_port(port, process, timeout)
    except BaseException as exc:
        tail = process.log_tail()
        try:
            with open(os.path.join(workdir, "error.log")) as f:
                tail += "\n" + f.read()[-2000:]
        except OSError:
            pass
        process.stop()
        if isinstance(exc, ServerError):
            raise ServerError(f"{exc}\n{tail}") from None
        raise
    return process, port
