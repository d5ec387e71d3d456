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

"""The WSGI entry point for uwsgi or gunicorn: ``nova_vmi.api.wsgi:application``.

``application`` is built on first access (so that importing this module costs nothing):
the configuration is ``/etc/nova-vmi/nova-vmi.conf`` as oslo.config finds it, or the
comma-separated files of ``NOVA_VMI_CONFIG_FILES``; the pipeline is ``[api]
api_paste_config``.  Examples::

    gunicorn --workers 4 --threads 8 -b 0.0.0.0:8779 nova_vmi.api.wsgi:application
    uwsgi --http :8779 --module nova_vmi.api.wsgi:application --processes 4 --threads 8
"""

from nova_vmi import threading_backend  # noqa: F401  (first: before oslo.messaging)

import os
import threading

from nova_vmi.api import pipeline
from nova_vmi.cmd import common
from nova_vmi import conf as vmi_conf

CONFIG_FILES_ENV = 'NOVA_VMI_CONFIG_FILES'
_lock = threading.Lock()
_built = {}


def setup_conf(argv, conf=None):
    """``conf`` (cfg.CONF) with every nova-vmi option and logging set up from ``argv``."""
    return common.setup(argv, 'nova-vmi', 'nova-vmi-api', vmi_conf.register_all, conf)


def init_application(environ=os.environ, conf=None):
    """The API pipeline of the configuration ``environ`` points at (on ``conf``)."""
    files = [f for f in environ.get(CONFIG_FILES_ENV, '').split(',') if f]
    conf = setup_conf(['--config-file=%s' % path for path in files], conf=conf)
    return pipeline.load_app(conf)


def __getattr__(name):
    if name != 'application':
        raise AttributeError(name)
    with _lock:
        if 'application' not in _built:
            _built['application'] = init_application()
        return _built['application']
