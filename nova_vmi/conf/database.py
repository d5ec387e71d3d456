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

"""``[database]``: where the control plane keeps agents, policies, runs and findings.

The options are oslo.db's own (``connection``, pool sizes, retries...), with the
embedded default pointing at a SQLite file.
"""

import copy

from oslo_db import options as oslo_db_options

GROUP = 'database'

DEFAULT_CONNECTION = 'sqlite:////var/lib/nova-vmi/nova-vmi.sqlite'


def _with_default_connection(database_opts):
    """A copy of oslo.db's options whose ``connection`` defaults to ours."""
    copied = copy.deepcopy(database_opts)
    for opt in copied:
        if opt.dest == 'connection':
            opt.default = DEFAULT_CONNECTION
    return copied


#: oslo.db's options as the sample config shows them (with our default connection).
opts = _with_default_connection(oslo_db_options.database_opts)


def register_opts(conf):
    # oslo.db's own registration, so a library that registers them too does not clash.
    oslo_db_options.set_defaults(conf, connection=DEFAULT_CONNECTION)


def list_opts():
    return [(GROUP, opts)]
