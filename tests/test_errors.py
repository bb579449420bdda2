"""The error catalogue and exception tree, checked without a network."""

from __future__ import annotations

import pytest

from entragate.errors import (
    ERROR_TYPES,
    Code,
    EntraError,
    Throttled,
    TlsNotTrusted,
)


def test_every_code_has_one_exception_type_and_a_next_step() -> None:
    assert set(ERROR_TYPES) == set(Code)
    for code, cls in ERROR_TYPES.items():
        assert cls.code is code
        assert code.title and code.next_step
        error = cls("detail", host="graph.microsoft.com", operation="read")
        assert error.message.startswith(f"{code} {code.title}: read (graph.microsoft.com): detail")
        assert f"entragate explain {code}" in error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ENTRA003", Code.ENTRA003), ("entra3", Code.ENTRA003), ("7", Code.ENTRA007), (" entra009 ", Code.ENTRA009),
     ("ENTRA010", None), ("ENTRA", None), ("x", None), ("", None)],
)
def test_code_parse(text: str, expected: Code | None) -> None:
    assert Code.parse(text) is expected


def test_a_failure_carries_only_the_facts_its_type_declares() -> None:
    error = TlsNotTrusted("untrusted", verify_code=20, verify_message="unable to get local issuer")
    assert (error.verify_code, error.verify_message) == (20, "unable to get local issuer")
    assert Throttled("slow down").retry_after is None
    with pytest.raises(TypeError, match="retry_after"):
        TlsNotTrusted("untrusted", retry_after=3)
    with pytest.raises(TypeError):
        EntraError("x", _secret="no")
