"""`Secret` never prints its value, compares by value, and cannot be pickled or changed."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable

import pytest

from monitor.secret import Secret

VALUE = "s3cr3t-Value-that-must-never-print"


def _percent_s(secret: Secret) -> str:
    return "%s" % (secret,)  # noqa: UP031 (the %-format is what is under test)


def _percent_r(secret: Secret) -> str:
    return "%r" % (secret,)  # noqa: UP031


RENDERINGS: list[tuple[str, Callable[[Secret], str]]] = [
    ("repr", repr),
    ("str", str),
    ("format", format),
    ("format-spec", lambda s: format(s, ">60")),
    ("f-string", lambda s: f"{s}"),
    ("f-string-repr", lambda s: f"{s!r}"),
    ("f-string-str", lambda s: f"{s!s}"),
    ("f-string-spec", lambda s: f"{s:>40}"),
    ("f-string-debug", lambda s: f"{s=}"),
    ("str-format", "{}".format),
    ("str-format-repr", "{!r}".format),
    ("percent-s", _percent_s),
    ("percent-r", _percent_r),
    ("in-a-list", lambda s: str([s])),
    ("in-a-dict", lambda s: repr({"password": s})),
    ("in-a-tuple", lambda s: repr((s,))),
    ("in-an-exception", lambda s: str(ValueError("bad", s))),
]


@pytest.mark.parametrize("render", [r for _, r in RENDERINGS], ids=[n for n, _ in RENDERINGS])
def test_renderings_never_show_the_value(render: Callable[[Secret], str]) -> None:
    text = render(Secret(VALUE))
    assert VALUE not in text
    assert "s3cr3t" not in text
    assert "***" in text


def test_repr_and_str() -> None:
    assert repr(Secret(VALUE)) == "Secret('***')"
    assert str(Secret(VALUE)) == "***"


def test_logging_never_shows_the_value(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tests.core.secret")
    with caplog.at_level(logging.INFO, logger="tests.core.secret"):
        log.info("password is %s, again %r", Secret(VALUE), Secret(VALUE))
        log.info("extra", extra={"password": Secret(VALUE)})
    assert VALUE not in caplog.text
    assert all(VALUE not in r.getMessage() for r in caplog.records)


def test_reveal() -> None:
    assert Secret(VALUE).reveal() == VALUE
    assert Secret("").reveal() == ""


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        pytest.param(Secret("a"), Secret("a"), True, id="same-value"),
        pytest.param(Secret("a"), Secret("b"), False, id="other-value"),
        pytest.param(Secret(""), Secret(""), True, id="empty"),
        pytest.param(Secret("ü"), Secret("ü"), True, id="non-ascii"),
        pytest.param(Secret("a"), Secret("a "), False, id="trailing-space"),
    ],
)
def test_equality(left: Secret, right: Secret, equal: bool) -> None:
    assert (left == right) is equal
    assert (left != right) is not equal
    if equal:
        assert hash(left) == hash(right)
        assert len({left, right}) == 1


@pytest.mark.parametrize("other", ["a", b"a", None, 1], ids=["str", "bytes", "none", "int"])
def test_never_equal_to_a_plain_value(other: object) -> None:
    assert Secret("a") != other
    assert other != Secret("a")


def test_bool_and_len() -> None:
    assert Secret("abc")
    assert not Secret("")
    assert len(Secret("abc")) == 3


@pytest.mark.parametrize("value", [b"bytes", 123, None, Secret("x")], ids=type)
def test_wraps_only_str(value: object) -> None:
    with pytest.raises(TypeError):
        Secret(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1), ids=str)
def test_not_picklable(protocol: int) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret(VALUE), protocol=protocol)


def test_not_picklable_inside_a_container() -> None:
    with pytest.raises(TypeError):
        pickle.dumps({"token": Secret(VALUE)})


@pytest.mark.parametrize("name", ["_value", "value", "other"])
def test_cannot_set_attributes(name: str) -> None:
    secret = Secret(VALUE)
    with pytest.raises(AttributeError):
        setattr(secret, name, "changed")
    assert secret.reveal() == VALUE


def test_cannot_delete_the_value() -> None:
    secret = Secret(VALUE)
    with pytest.raises(AttributeError):
        del secret._value
    assert secret.reveal() == VALUE


def test_has_no_instance_dict() -> None:
    with pytest.raises(TypeError):
        vars(Secret(VALUE))
