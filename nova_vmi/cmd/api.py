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

"""``nova-vmi-api``: the API on a development server (werkzeug, one thread per request).

Production runs ``nova_vmi.api.wsgi:application`` under uwsgi or gunicorn.
"""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import sys

from oslo_config import cfg
from oslo_log import log as logging
from werkzeug import serving

from nova_vmi.api import pipeline
from nova_vmi.api import wsgi

LOG = logging.getLogger(__name__)


def main(argv=None):
    conf = wsgi.setup_conf(sys.argv[1:] if argv is None else argv)
    try:
        app = pipeline.load_app(conf)
    except cfg.ConfigFilesNotFoundError as exc:
        sys.stderr.write('nova-vmi-api: error: %s\n' % exc)
        return 2
    server = serving.make_server(conf.api.bind_host, conf.api.bind_port, app,
                                 threaded=True)
    LOG.info('nova-vmi-api (auth_strategy %s) listening on http://%s:%d/',
             conf.api.auth_strategy, conf.api.bind_host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
