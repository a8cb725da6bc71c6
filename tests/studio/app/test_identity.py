"""studio.identity: the logged-in name wins, anything else falls back to the OS user."""
from types import SimpleNamespace

from core.annotators import current, os_user
from studio.identity import annotator_of, as_person


def test_logged_in_name_is_the_annotator():
    assert annotator_of(SimpleNamespace(username="alice")) == "alice"


def test_no_login_is_the_os_user():
    assert annotator_of(SimpleNamespace(username=None)) == os_user()
    assert annotator_of(None) == os_user()


def test_unrecordable_login_name_falls_back():
    assert annotator_of(SimpleNamespace(username="model:fake")) == os_user()
    assert annotator_of(SimpleNamespace(username="a\nb")) == os_user()


def test_as_person_sets_and_restores():
    assert current() is None
    with as_person(SimpleNamespace(username="bob")) as name:
        assert name == "bob" and current() == "bob"
    assert current() is None
