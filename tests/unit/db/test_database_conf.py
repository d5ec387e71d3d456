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

"""``[database]``: oslo.db's options with the embedded SQLite default."""

from oslo_config import cfg

from nova_vmi import context
from nova_vmi.conf import database


def test_the_default_connection_is_the_embedded_sqlite_file():
    conf = cfg.ConfigOpts()
    database.register_opts(conf)
    conf([])
    assert conf.database.connection == database.DEFAULT_CONNECTION
    assert database.DEFAULT_CONNECTION.startswith('sqlite:////var/lib/nova-vmi/')


def test_list_opts_shows_the_same_default_for_the_sample_config():
    [(group, opts)] = database.list_opts()
    connection = [opt for opt in opts if opt.dest == 'connection']
    assert group == 'database' and connection[0].default == database.DEFAULT_CONNECTION


def test_registering_twice_on_one_conf_is_harmless():
    conf = cfg.ConfigOpts()
    database.register_opts(conf)
    database.register_opts(conf)
    conf([])
    assert conf.database.max_retries == 10, "oslo.db's own defaults stay"


def test_admin_context_is_admin_and_can_carry_a_transaction():
    ctx = context.get_admin_context()
    assert ctx.is_admin and 'admin' in ctx.roles
    # Read outside a transaction, the attribute raises: look at the class instead.
    assert isinstance(getattr(context.RequestContext, 'session', None), property), (
        "enginefacade's provider should give the context a session property")
