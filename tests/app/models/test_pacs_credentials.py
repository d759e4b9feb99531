"""PACS passwords: in the OS keyring where there is one, for the session only where there is none,
never in the settings file. The keyring here is a file-based backend made in the test (the keyring
library's extension point, `KeyringBackend`), so a new session can read the password back."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyring.backends import fail

from app.models.pacs import PacsState
from app.models.settings import Settings
from app.models.state import AppState
from inference.pacs.credentials import SERVICE, PasswordStore, keyring_user

from ..pacs_keyring import FileKeyring

URL = "https://pacs.example.org:8443/dicom-web"
SECRET = "s3cr3t-Pa55"


def _ini(settings: Settings) -> str:
    settings.set_value("pacs/timeout", 30)  # writes the file through
    return settings.path.read_text()


def test_the_password_goes_to_the_keyring_and_a_new_session_reads_it(make_state, tmp_path: Path) -> None:
    ring = FileKeyring(tmp_path / "keyring.json")
    state: AppState = make_state()
    first = PacsState(state, passwords=PasswordStore(ring))
    first.server = URL
    first.user = "radiologist"
    assert first.set_password(SECRET) is True
    assert SECRET not in _ini(state.settings) and "radiologist" in _ini(state.settings)
    assert ring.get_password(SERVICE, keyring_user(URL, "radiologist")) == SECRET

    again = PacsState(make_state(settings_=Settings(state.settings.path)), passwords=PasswordStore(ring))
    assert (again.server, again.user, again.password) == (URL, "radiologist", SECRET)

    assert again.set_password("") is False  # an empty password forgets it
    assert PasswordStore(ring).get(URL, "radiologist") is None


def test_credentials_in_a_url_leave_the_url(make_state, tmp_path: Path) -> None:
    ring = FileKeyring(tmp_path / "keyring.json")
    state: AppState = make_state()
    pacs = PacsState(state, passwords=PasswordStore(ring))
    pacs.server = "https://doctor:p%40ss%3Aword@pacs.example.org:8443/dicom-web"
    assert (pacs.server, pacs.user, pacs.password) == (URL, "doctor", "p@ss:word")
    assert "p@ss" not in _ini(state.settings) and "p%40ss" not in _ini(state.settings)


def test_settings_written_with_a_password_are_cleaned_on_load(make_state, tmp_path: Path) -> None:
    ring = FileKeyring(tmp_path / "keyring.json")
    state: AppState = make_state()
    state.settings.set_value("pacs/server", f"https://old:{SECRET}@pacs.example.org:8443/dicom-web")
    pacs = PacsState(state, passwords=PasswordStore(ring))
    assert SECRET not in _ini(state.settings)
    assert (pacs.server, pacs.user, pacs.password) == (URL, "old", SECRET)


def test_without_a_keyring_the_password_lasts_the_session_only(make_state) -> None:
    store = PasswordStore(fail.Keyring())
    assert not store.persistent and "session only" in store.describe()
    state: AppState = make_state()
    pacs = PacsState(state, passwords=store)
    pacs.server, pacs.user = URL, "radiologist"
    assert pacs.set_password(SECRET) is False
    assert pacs.password == SECRET  # this session
    assert SECRET not in _ini(state.settings)
    later = PacsState(make_state(settings_=Settings(state.settings.path)), passwords=PasswordStore(fail.Keyring()))
    assert later.user == "radiologist" and later.password == ""  # a new session: asked again


def test_the_app_uses_the_system_keyring_or_says_there_is_none() -> None:
    import keyring

    store = PasswordStore()
    assert store.backend is keyring.get_keyring()
    expected = "system keyring" if store.persistent else "session only"
    assert expected in store.describe()


@pytest.mark.parametrize("user", ["", "someone"])
def test_no_user_no_password(user: str) -> None:
    store = PasswordStore(fail.Keyring())
    assert store.get(URL, user) is None
    assert store.set(URL, "", SECRET) is False and store.get(URL, "") is None
