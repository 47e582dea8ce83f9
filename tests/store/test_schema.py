"""schemathesis against the real server: every documented operation, generated inputs.

No 500s, and every response matches the OpenAPI schema (status codes, content types, bodies).
(schemathesis's own pytest plugin does not load under pytest 9, so operations are driven here.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import TOKEN, Server


def test_the_api_matches_its_schema(serve: Callable[..., Server]) -> None:
    """Generated requests never get a 500 or a response the schema does not describe."""
    server = serve()
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/cc/callback", "/callback", "/readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            if case.method == "POST":
                case.headers = {**(case.headers or {}), "token": TOKEN}
            # The push schema is lenient on purpose (any JSON value per field, as NXCC senders
            # are sloppy), so schema-valid data can still be a 422: "positive data acceptance"
            # does not apply; everything else does.
            case.call_and_validate(
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ]
            )

        check()
