"""Passwords for PACS servers: in the OS keyring where there is one (the ``keyring`` package: macOS
Keychain, Windows Credential Locker, the Secret Service on Linux desktops), else for this session
only. Never in a settings file.

An entry is service ``mammo-review``, user ``<server>/<username>``, where the server is its URL or
``dicom://AE@host:port`` without credentials. A keyring that fails (locked, no D-Bus) is treated as
absent: the password is still kept for the session and the caller is told it was not saved.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SERVICE", "PasswordStore", "keyring_user"]

SERVICE = "mammo-review"


def keyring_user(server: str, username: str) -> str:
    """The keyring's user name for a server and a user of it."""
    return f"{server}/{username}"


class PasswordStore:
    """The session's passwords, backed by the OS keyring when one is available. ``backend`` is a
    ``keyring.backend.KeyringBackend``; None means the one keyring chose for this system."""

    def __init__(self, backend: Any = None) -> None:
        self._backend = backend
        self._session: dict[tuple[str, str], str] = {}

    @property
    def backend(self) -> Any:
        if self._backend is None:
            import keyring

            self._backend = keyring.get_keyring()
        return self._backend

    @property
    def persistent(self) -> bool:
        """True when passwords outlive the session (a real keyring backend is there)."""
        from keyring.backends import fail, null

        return not isinstance(self.backend, (fail.Keyring, null.Keyring))

    def describe(self) -> str:
        """Where passwords are kept, in words for the user."""
        if not self.persistent:
            return "no system keyring: the password is kept for this session only"
        name = getattr(self.backend, "name", type(self.backend).__name__)
        return f"the password is kept in the system keyring ({name})"

    def get(self, server: str, username: str) -> str | None:
        """The password for ``username`` on ``server``: this session's, else the keyring's."""
        if not username:
            return None
        key = (server, username)
        if key in self._session:
            return self._session[key]
        if not self.persistent:
            return None
        from keyring.errors import KeyringError

        try:
            password: str | None = self.backend.get_password(SERVICE, keyring_user(server, username))
        except KeyringError:
            return None
        if password is not None:
            self._session[key] = password
        return password

    def set(self, server: str, username: str, password: str) -> bool:
        """Keep a password (an empty one forgets it); True when the keyring saved it too."""
        if not username:
            return False
        key = (server, username)
        if not password:
            self._session.pop(key, None)
            self._forget(server, username)
            return False
        self._session[key] = password
        if not self.persistent:
            return False
        from keyring.errors import KeyringError

        try:
            self.backend.set_password(SERVICE, keyring_user(server, username), password)
        except KeyringError:
            return False
        return True

    def _forget(self, server: str, username: str) -> None:
        if not self.persistent:
            return
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            self.backend.delete_password(SERVICE, keyring_user(server, username))
        except (PasswordDeleteError, KeyringError):
            pass
