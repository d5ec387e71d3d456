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

"""The ``openstack`` CLI plugin of nova-vmi (osc-lib hooks).

openstackclient finds this module through the ``openstack.cli.extension`` entry point
``introspection`` and its commands in ``openstack.introspection.v1``.  The client talks to
the introspection API (service type ``introspection``) through the keystoneauth1 session
osc already holds; ``--os-introspection-endpoint`` points it at an API directly (a
``noauth`` deployment with ``--os-auth-type none``, or a catalog without the service).
"""

import logging

from osc_lib import utils

from nova_vmi.osc import client as introspection_client

LOG = logging.getLogger(__name__)

API_NAME = 'introspection'
API_VERSION_OPTION = 'os_introspection_api_version'
DEFAULT_API_VERSION = '1'
API_VERSIONS = {'1': 'nova_vmi.osc.client.Client'}
ENDPOINT_ENV = 'OS_INTROSPECTION_ENDPOINT'


def make_client(instance):
    """The introspection client of the ClientManager ``instance``."""
    config = instance.get_configuration()
    return introspection_client.Client(
        instance.session,
        endpoint=introspection_client.configured_endpoint(config),
        interface=instance.interface,
        region_name=instance.region_name)


def build_option_parser(parser):
    """The global options of the plugin: the API version and an endpoint override."""
    parser.add_argument(
        '--os-introspection-api-version',
        metavar='<introspection-api-version>',
        default=utils.env('OS_INTROSPECTION_API_VERSION'),
        help='Introspection API version, default=%s (Env: OS_INTROSPECTION_API_VERSION)'
             % DEFAULT_API_VERSION)
    parser.add_argument(
        '--os-introspection-endpoint',
        metavar='<introspection-endpoint>',
        default=utils.env(ENDPOINT_ENV),
        help='The introspection API\'s URL, instead of the service catalog\'s '
             '(e.g. http://127.0.0.1:8779 with --os-auth-type none for an embedded '
             'noauth API) (Env: %s)' % ENDPOINT_ENV)
    return parser
