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

"""Column types that behave the same on SQLite, MariaDB/MySQL and PostgreSQL.

Shared by the models and the migrations, so that the two describe the same columns.
"""

import datetime
import json

import sqlalchemy as sa
from sqlalchemy.dialects import mysql


class JSONText(sa.types.TypeDecorator):
    """A JSON value stored as text (LONGTEXT on MySQL, whose TEXT stops at 64 KiB).

    Text rather than a native JSON type: MariaDB's JSON is LONGTEXT anyway, and a probe's
    records are only ever read back whole.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == 'mysql':
            return dialect.type_descriptor(mysql.LONGTEXT())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return json.dumps(value, sort_keys=True)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return json.loads(value)


class UTCDateTime(sa.types.TypeDecorator):
    """A UTC time to the microsecond: aware datetimes in and out, naive UTC stored.

    MySQL's DATETIME drops the fraction unless asked for six digits; run timings are in
    milliseconds.  A naive datetime given to it is taken to be UTC already.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == 'mysql':
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value, dialect):
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=datetime.timezone.utc)
