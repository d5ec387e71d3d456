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

"""``[nova]``: how the API talks to Nova (keystoneauth1 session, auth and endpoint).

Nova decides who may see an instance (GET /servers/{id} with the caller's token) and,
with these service credentials, where it runs.  Nova counts as configured when
``auth_type`` is set; without it the API relies on the agents' heartbeats alone.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

GROUP = cfg.OptGroup('nova', title='Nova',
                     help='Service credentials and endpoint of the Compute API.  Leave '
                          '``auth_type`` unset to run without Nova (visibility then '
                          'comes from the instances table: admins see all, others their '
                          'project\'s instances).')

DEFAULT_SERVICE_TYPE = 'compute'


def register_opts(conf):
    conf.register_group(cfg.OptGroup(GROUP.name, title=GROUP.title, help=GROUP.help))
    ks_loading.register_session_conf_options(conf, GROUP.name)
    ks_loading.register_auth_conf_options(conf, GROUP.name)
    ks_loading.register_adapter_conf_options(conf, GROUP.name)
    conf.set_default('service_type', DEFAULT_SERVICE_TYPE, group=GROUP.name)
    conf.set_default('valid_interfaces', ['internal', 'public'], group=GROUP.name)


def list_opts():
    opts = (ks_loading.get_session_conf_options()
            + ks_loading.get_auth_common_conf_options()
            + ks_loading.get_auth_plugin_conf_options('password')
            + ks_loading.get_adapter_conf_options(include_deprecated=False))
    # The generator prints each option once.
    unique = {}
    for opt in opts:
        unique.setdefault(opt.dest, opt)
    return [(GROUP, list(unique.values()))]


def is_configured(conf):
    """True when ``[nova] auth_type`` names a keystoneauth1 plugin."""
    return bool(conf.nova.auth_type)
