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

"""What every handler needs: the app's services, the caller's context, checked input."""

import json
import threading
import uuid

import flask
import jsonschema

from nova_vmi.api import errors
from nova_vmi.api import schemas
from nova_vmi.compute import nova as nova_client
from nova_vmi.conf import nova as nova_conf
from nova_vmi import policy
from nova_vmi import rpc

#: Where the context middleware puts the caller's nova_vmi.context.RequestContext.
CONTEXT_KEY = 'nova_vmi.context'
#: Where a pipeline may put its own server lookup (the nova-api filter does).
SERVER_LOOKUP_KEY = 'nova_vmi.server_lookup'
EXTENSION = 'nova_vmi'


class Services:
    """The configuration and the clients one API process shares among requests.

    The agent RPC client is made on first use, so that an API which never casts (a
    read-only replica, a test) needs no message bus.  ``validators`` check request
    bodies (their probe names are ``[api] probes``).
    """

    def __init__(self, conf, enforcer=None, agent_api=None, nova=None):
        self.conf = conf
        self.enforcer = enforcer or policy.make_enforcer(conf)
        self._agent_api = agent_api
        self._lock = threading.Lock()
        if nova is None and nova_conf.is_configured(conf):
            nova = nova_client.NovaClient(conf)
        self.nova = nova
        self.validators = {
            'policy': schemas.validator(schemas.policy(conf.api.probes)),
            'run': schemas.validator(schemas.run(conf.api.probes)),
        }

    @property
    def agent_api(self):
        with self._lock:
            if self._agent_api is None:
                self._agent_api = rpc.AgentAPI(rpc.get_transport(self.conf),
                                               timeout=self.conf.api.rpc_timeout)
            return self._agent_api


def services():
    return flask.current_app.extensions[EXTENSION]


def context():
    """The caller's RequestContext (the context middleware made it)."""
    ctx = flask.request.environ.get(CONTEXT_KEY)
    if ctx is None:
        raise errors.Unauthorized('the request carries no authenticated identity')
    return ctx


def authorize(rule, project_id):
    ctx = context()
    policy.authorize(services().enforcer, ctx, rule, policy.target_for(ctx, project_id))


def is_admin():
    return policy.is_admin(services().enforcer, context())


def parse_uuid(value, what):
    """``value`` as a canonical UUID string, or 400 saying what it should have been."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.BadRequest('%r is not a valid %s UUID' % (value, what))


def _refuse_constant(name):
    raise ValueError('%s is not valid JSON' % name)


def json_body(schema, empty=None):
    """The request's JSON body, checked against ``schema`` (a Draft 7 validator).

    ``empty`` is what an empty body stands for; None means a body is required.
    """
    limit = services().conf.api.max_body_bytes
    length = flask.request.content_length
    if length is not None and length > limit:
        raise errors.RequestTooLarge('the request body is %d bytes; the limit is %d'
                                     % (length, limit))
    data = flask.request.stream.read(limit + 1)
    if len(data) > limit:
        raise errors.RequestTooLarge('the request body exceeds the limit of %d bytes' % limit)
    if not data.strip():
        if empty is None:
            raise errors.BadRequest('the request needs a JSON body')
        body = empty
    else:
        try:
            body = json.loads(data.decode('utf-8'), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise errors.BadRequest('malformed JSON in the request body: %s' % exc)
        except RecursionError:
            raise errors.BadRequest('the request body nests too deeply')
    validate(schema, body)
    return body


def validate(validator, body):
    """400 with the path of the worst error and what was wrong with it."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is None:
        return
    path = '/'.join(str(part) for part in error.absolute_path)
    where = "field '%s'" % path if path else 'request body'
    raise errors.BadRequest('invalid %s: %s' % (where, error.message))
