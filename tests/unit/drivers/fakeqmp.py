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

"""A QMP server on a unix socket, standing in for QEMU's QMP monitor in unit tests.

It speaks the protocol as QEMU does (greeting, ``qmp_capabilities``, one JSON reply per
line carrying the command's ``id``), serves one client at a time, keeps a ``running`` flag
that ``stop``/``cont``/``query-status`` act on, and records the commands it received.
"""

import json
import socket
import threading

GREETING = {'QMP': {'version': {'qemu': {'major': 7, 'minor': 2, 'micro': 0},
                                'package': ''}, 'capabilities': ['oob']}}


class FakeQMPServer:
    """Listens on ``path``; ``commands`` lists the command names received, in order."""

    def __init__(self, path):
        self.path = str(path)
        self.running = True
        self.commands = []
        self.connections = 0
        self._client = None
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._client = conn
                self.connections += 1
            try:
                self._talk(conn)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._client = None
                conn.close()

    def _talk(self, conn):
        conn.sendall(json.dumps(GREETING).encode() + b'\r\n')
        for line in conn.makefile('rb'):
            request = json.loads(line)
            self.commands.append(request['execute'])
            reply = {'return': self._answer(request['execute'])}
            if 'id' in request:
                reply['id'] = request['id']
            if request['execute'] in ('stop', 'cont'):
                event = 'STOP' if request['execute'] == 'stop' else 'RESUME'
                conn.sendall(json.dumps({'event': event, 'timestamp': {}}).encode() + b'\r\n')
            conn.sendall(json.dumps(reply).encode() + b'\r\n')

    def _answer(self, command):
        if command == 'query-status':
            return {'running': self.running,
                    'status': 'running' if self.running else 'paused'}
        if command == 'stop':
            self.running = False
        elif command == 'cont':
            self.running = True
        return {}

    def send_event(self, name):
        """Send an asynchronous event to the connected client."""
        with self._lock:
            self._client.sendall(json.dumps({'event': name, 'timestamp': {}}).encode()
                                 + b'\r\n')

    def drop_client(self):
        """Close the connection to the current client (keeps listening)."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass            # the client hung up first

    def stop(self):
        """Stop listening and drop the client, as QEMU does when it exits (socket file stays)."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)     # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self.drop_client()
        self._thread.join(10)
