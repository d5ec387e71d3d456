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

"""What every service command does first: options, the command line, logging."""

from oslo_config import cfg
from oslo_log import log as logging

#: Loggers whose DEBUG lines say nothing about nova-vmi (timers ticking, the launcher).
QUIET_LOGGERS = ['cotyledon=INFO', 'oslo.service.backend=INFO']


def setup(argv, project, binary, register, conf=None):
    """``conf`` (default ``cfg.CONF``) with ``register(conf)``'s options, parsed from
    ``argv``, and logging set up for ``binary``.

    oslo.messaging registers some of its option groups on ``cfg.CONF`` only, so services
    that talk on the bus use the global one.
    """
    conf = cfg.CONF if conf is None else conf
    logging.register_options(conf)
    logging.set_defaults(default_log_levels=logging.get_default_log_levels()
                         + QUIET_LOGGERS)
    register(conf)
    conf(argv, project=project)
    logging.setup(conf, binary)
    return conf
