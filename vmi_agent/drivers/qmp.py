# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""A small synchronous client for the QEMU Machine Protocol (QMP).

The QEMU driver pauses and resumes a guest around an introspection run and asks QEMU for
memory dumps; all of that is QMP over QEMU's unix socket.  QEMU's own Python library
(``qemu.qmp``) is built on asyncio, while the agent runs on threads, and a run needs only a
handful of blocking calls, so this client keeps to the standard library:

- it connects to a unix socket (optionally waiting for QEMU to create it), reads the
  greeting and negotiates capabilities;
- :meth:`QMPClient.execute` sends one command and returns its ``return`` value, raises
  :class:`QMPCommandError` for an ``error`` reply and :class:`QMPTimeoutError` when no reply
  comes in time;
- asynchronous events that arrive meanwhile are kept (a bounded number) for
  :meth:`QMPClient.events` instead of being mistaken for replies.

Every command carries an ``id``; a late reply to a command that timed out is recognised
and dropped.  One client may be shared by threads: commands are serialised.
"""

import collections
import itertools
import json
import socket
import threading
import time

#: Reads of 64 KiB at most per :meth:`QMPClient.closed_by_peer`.
_DRAIN_CHUNKS = 16


class QMPError(Exception):
    """Base class of the errors this client raises."""


class QMPConnectionError(QMPError):
    """The socket could not be reached, or QEMU closed it or spoke something else than QMP."""


class QMPTimeoutError(QMPError):
    """QEMU did not answer in time."""


class QMPCommandError(QMPError):
    """QEMU answered a command with an error."""

    def __init__(self, command, arguments, error):
        self.command = command
        self.arguments = arguments
        self.error_class = error.get('class', 'GenericError')
        self.desc = error.get('desc', '')
        super().__init__('QMP command %s%s failed: %s: %s'
                         % (command, ' %s' % json.dumps(arguments) if arguments else '',
                            self.error_class, self.desc))


class QMPClient:
    """A connected QMP session on a unix socket.

    ``timeout`` bounds every wait for QEMU (seconds) unless a call gives its own;
    ``connect_timeout`` is how long to keep retrying while the socket does not exist yet or
    refuses connections (QEMU still starting); ``max_events`` bounds the kept events.
    """

    def __init__(self, path, timeout=10.0, connect_timeout=0.0, max_events=1000):
        self.path = str(path)
        self.timeout = timeout
        self._events = collections.deque(maxlen=max_events)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._buffer = b''
        self._sock = self._connect(connect_timeout)
        try:
            greeting = self._receive(time.monotonic() + timeout)
            if 'QMP' not in greeting:
                raise QMPConnectionError('%s sent no QMP greeting but %r' % (self.path, greeting))
            self.greeting = greeting['QMP']
            self.execute('qmp_capabilities')
        except BaseException:
            self._sock.close()
            raise

    def _connect(self, connect_timeout):
        deadline = time.monotonic() + connect_timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if time.monotonic() >= deadline:
                    raise QMPConnectionError('cannot connect to QMP socket %s: %s'
                                             % (self.path, exc)) from exc
                time.sleep(0.02)
            except OSError as exc:
                sock.close()
                raise QMPConnectionError('cannot connect to QMP socket %s: %s'
                                         % (self.path, exc)) from exc

    @property
    def version(self):
        """QEMU's version as ``(major, minor, micro)``, from the greeting."""
        qemu = self.greeting.get('version', {}).get('qemu', {})
        return (qemu.get('major', 0), qemu.get('minor', 0), qemu.get('micro', 0))

    def execute(self, command, arguments=None, *, timeout=None, **kwargs):
        """Run one QMP command and return its ``return`` value.

        Arguments come from the ``arguments`` dict (needed for names that are not Python
        identifiers, such as ``node-name``, or for an argument called ``timeout``) and from
        keyword arguments, which override it.  ``timeout`` (seconds) defaults to the
        client's.  Raises :class:`QMPCommandError`, :class:`QMPTimeoutError` or
        :class:`QMPConnectionError`.
        """
        args = dict(arguments or {}, **kwargs)
        with self._lock:
            if self._sock is None:
                raise QMPConnectionError('QMP client for %s is closed' % self.path)
            cmd_id = next(self._ids)
            message = {'execute': command, 'id': cmd_id}
            if args:
                message['arguments'] = args
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            self._send(message, deadline)
            while True:
                reply = self._receive(deadline, command)
                if 'event' in reply:
                    self._events.append(reply)
                elif reply.get('id') != cmd_id:
                    continue        # the late reply to a command that timed out
                elif 'error' in reply:
                    raise QMPCommandError(command, args, reply['error'])
                elif 'return' in reply:
                    return reply['return']
                else:
                    raise QMPConnectionError('unexpected QMP reply to %s: %r'
                                             % (command, reply))

    def events(self):
        """Return the events received since the last call (oldest first) and forget them."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def _send(self, message, deadline):
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(json.dumps(message).encode() + b'\n')
        except socket.timeout as exc:
            raise QMPTimeoutError('timed out sending %s to %s'
                                  % (message['execute'], self.path)) from exc
        except OSError as exc:
            raise QMPConnectionError('cannot send %s to %s: %s'
                                     % (message['execute'], self.path, exc)) from exc

    def _receive(self, deadline, command='the greeting'):
        """Read one JSON message (QEMU writes one per line)."""
        while True:
            line, sep, rest = self._buffer.partition(b'\n')
            if not sep:
                self._buffer += self._recv(deadline, command)
                continue
            self._buffer = rest
            if line.strip():
                break
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise QMPConnectionError('%s sent a line that is not JSON: %r'
                                     % (self.path, line[:200])) from exc
        if not isinstance(message, dict):
            raise QMPConnectionError('%s sent %r, not a JSON object' % (self.path, message))
        return message

    def _recv(self, deadline, command):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPTimeoutError('no answer to %s from %s' % (command, self.path))
            try:
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise QMPConnectionError('cannot read from %s: %s' % (self.path, exc)) from exc
            if not chunk:
                raise QMPConnectionError('QEMU closed %s while waiting for %s'
                                         % (self.path, command))
            return chunk

    def closed_by_peer(self):
        """Whether QEMU closed the connection (it exited), told without a round trip.

        Reads what is pending on the socket without waiting: events are kept for
        :meth:`events` (bounded), stray replies dropped; end-of-file or a socket error
        means the peer is gone.  While a command is in flight the answer is False: that
        command finds out itself.  A closed client counts as closed.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._sock is None:
                return True
            try:
                return self._drain_pending()
            finally:
                if self._sock is not None:
                    self._sock.settimeout(self.timeout)
        finally:
            self._lock.release()

    def _drain_pending(self):
        """Read without blocking (at most ``_DRAIN_CHUNKS`` reads); True at end-of-file."""
        self._sock.setblocking(False)
        for _ in range(_DRAIN_CHUNKS):
            try:
                chunk = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self._buffer += chunk
            self._absorb_complete_lines()
        return False

    def _absorb_complete_lines(self):
        """Keep the events among the complete lines buffered while no command waits."""
        *lines, self._buffer = self._buffer.split(b'\n')
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and 'event' in message:
                self._events.append(message)

    def close(self):
        """Close the socket (QEMU keeps running); safe to call twice."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
