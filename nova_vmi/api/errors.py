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

"""The API's errors, and the one JSON form every error response takes.

Every 4xx and 5xx body is ``{"error": {"code": 404, "title": "Not Found", "message":
"..."}}`` (Keystone's form), whatever raised it: a handler, Flask's router (404, 405),
the size limit (413), a database that cannot be reached (503) or a bug (500, with no
detail of the bug).
"""

import logging

from oslo_db import exception as db_exc
from werkzeug import exceptions as wz_exceptions

from nova_vmi import policy

LOG = logging.getLogger(__name__)


class APIError(Exception):
    """An error with an HTTP status and a message that says what was wrong."""

    code = 500
    title = 'Internal Server Error'

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class BadRequest(APIError):
    code = 400
    title = 'Bad Request'


class Unauthorized(APIError):
    code = 401
    title = 'Unauthorized'


class Forbidden(APIError):
    code = 403
    title = 'Forbidden'


class NotFound(APIError):
    code = 404
    title = 'Not Found'


class Conflict(APIError):
    code = 409
    title = 'Conflict'


class RequestTooLarge(APIError):
    code = 413
    title = 'Request Entity Too Large'


class ServiceUnavailable(APIError):
    code = 503
    title = 'Service Unavailable'


def error_body(code, title, message):
    return {'error': {'code': code, 'title': title, 'message': message}}


def _response(code, title, message, headers=None):
    return error_body(code, title, message), code, headers or {}


def _api_error(exc):
    return _response(exc.code, exc.title, exc.message)


def _policy_error(exc):
    return _response(403, Forbidden.title, str(exc))


def _http_error(exc):
    headers = {}
    if isinstance(exc, wz_exceptions.MethodNotAllowed) and exc.valid_methods:
        headers['Allow'] = ', '.join(sorted(exc.valid_methods))
    message = {
        404: 'the resource could not be found',
        405: 'the method is not allowed for the requested URL',
        413: 'the request body is too large',
    }.get(exc.code, exc.description or exc.name)
    return _response(exc.code, exc.name, message, headers)


def _database_down(exc):
    LOG.error('database unavailable: %s', exc)
    return _response(503, ServiceUnavailable.title,
                     'the database is unavailable; try again later')


def _unexpected(exc):
    LOG.exception('unexpected error in the API: %s', exc)
    return _response(500, APIError.title,
                     'the server failed to handle the request; see its log')


def register(app):
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(policy.PolicyNotAuthorized, _policy_error)
    app.register_error_handler(wz_exceptions.HTTPException, _http_error)
    app.register_error_handler(db_exc.DBConnectionError, _database_down)
    app.register_error_handler(Exception, _unexpected)
