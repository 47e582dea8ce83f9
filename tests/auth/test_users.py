"""Dashboard accounts: argon2id hashes, and the ``cdrhub user`` commands that manage them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from cdrhub.auth import users
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import dashboard_sessions
from cdrhub.store.schema import users as users_table
from tests.helpers.cli import db_env, run

PASSWORD = "correct horse battery"


class TestAccounts:
    def test_only_an_argon2id_hash_is_stored(self, store: Store) -> None:
        """The password itself is nowhere in the database."""
        users.create(store, "ann", "admin", PASSWORD)
        with store.read_engine.connect() as conn:
            stored = conn.execute(select(users_table.c.password_hash)).scalar_one()
        assert stored.startswith("$argon2id$") and PASSWORD not in stored

    def test_authenticate(self, store: Store) -> None:
        """The right password gives the user; a wrong one or an unknown name gives None."""
        created = users.create(store, " ann ", "viewer", PASSWORD)
        assert created.name == "ann"
        found = users.authenticate(store, "ann", PASSWORD)
        assert found is not None and found.role == "viewer" and found.stamp == created.stamp
        assert users.authenticate(store, "ann", PASSWORD + "!") is None
        assert users.authenticate(store, "nobody", PASSWORD) is None

    @pytest.mark.parametrize(
        ("name", "role", "password", "message"),
        [
            ("", "viewer", PASSWORD, "needs a name"),
            ("bob", "root", PASSWORD, "role must be"),
            ("bob", "viewer", "short", "at least 8"),
        ],
    )
    def test_refusals_say_why(
        self, store: Store, name: str, role: str, password: str, message: str
    ) -> None:
        """A user that cannot be created is refused with the reason."""
        with pytest.raises(users.UserError, match=message):
            users.create(store, name, role, password)  # type: ignore[arg-type]

    def test_names_are_unique(self, store: Store) -> None:
        """Two users cannot share a name (it is what people type to sign in)."""
        users.create(store, "ann", "viewer", PASSWORD)
        with pytest.raises(users.UserError, match="exists already"):
            users.create(store, "ann", "admin", PASSWORD)

    def test_a_new_password_changes_the_stamp(self, store: Store) -> None:
        """Sessions remember the stamp, so changing the password signs them out."""
        before = users.create(store, "ann", "viewer", PASSWORD)
        assert users.set_password(store, "ann", "another password")
        after = users.authenticate(store, "ann", "another password")
        assert after is not None and after.stamp != before.stamp
        assert users.authenticate(store, "ann", PASSWORD) is None
        assert not users.set_password(store, "nobody", "another password")


class TestSessions:
    def test_a_session_names_its_user_until_it_ends(self, store: Store) -> None:
        """Sign-in starts one; sign-out ends that one only (a second browser stays in)."""
        ann = users.create(store, "ann", "viewer", PASSWORD)
        laptop, wall = users.start_session(store, ann), users.start_session(store, ann)
        assert laptop != wall
        found = users.session_user(store, laptop)
        assert found is not None and found.name == "ann" and found.stamp == ann.stamp
        users.end_session(store, laptop)
        assert users.session_user(store, laptop) is None
        assert users.session_user(store, wall) is not None
        assert users.session_user(store, None) is None and users.session_user(store, "") is None

    def test_only_a_hash_of_the_session_id_is_stored(self, store: Store) -> None:
        """A copy of the database opens no session: the id is only in the cookie."""
        session = users.start_session(store, users.create(store, "ann", "viewer", PASSWORD))
        with store.read_engine.connect() as conn:
            stored = conn.execute(select(dashboard_sessions.c.id_hash)).scalar_one()
        assert session not in stored and len(stored) == 64

    def test_sessions_expire_twelve_hours_after_sign_in(self, store: Store) -> None:
        """The end is fixed at sign-in; expired rows are swept out at the next sign-in."""
        ann = users.create(store, "ann", "viewer", PASSWORD)
        old = users.start_session(store, ann)
        with store.writing() as conn:
            conn.execute(
                update(dashboard_sessions).values(expires_at=datetime.now(UTC) - timedelta(1))
            )
        assert users.session_user(store, old) is None
        users.start_session(store, ann)
        with store.read_engine.connect() as conn:
            rows = conn.execute(select(dashboard_sessions)).mappings().all()
        assert len(rows) == 1 and rows[0]["expires_at"] - rows[0]["created_at"] == timedelta(
            hours=12
        )

    def test_a_new_password_or_removal_ends_every_session(self, store: Store) -> None:
        """Changing the password (a suspected leak) or deleting the user signs them out
        everywhere; other users stay signed in."""
        ann = users.create(store, "ann", "viewer", PASSWORD)
        bob = users.create(store, "bob", "viewer", PASSWORD)
        ann_sessions = [users.start_session(store, ann) for _ in range(2)]
        bob_session = users.start_session(store, bob)
        assert users.set_password(store, "ann", "another password")
        assert all(users.session_user(store, s) is None for s in ann_sessions)
        assert users.session_user(store, bob_session) is not None
        assert users.remove(store, "bob")
        assert users.session_user(store, bob_session) is None
        with store.read_engine.connect() as conn:
            assert conn.execute(select(dashboard_sessions)).all() == []


class TestCommands:
    def test_create_reads_the_password_from_standard_input(
        self, settings: Settings, store: Store
    ) -> None:
        """Scripts pipe the password in; the user can then sign in with it."""
        env = db_env(settings)
        created = run("user", "create", "ann", "--role", "admin", env=env, input=PASSWORD + "\n")
        assert created.exit_code == 0, created.output
        assert "ann (admin) created" in created.output
        assert users.authenticate(store, "ann", PASSWORD) is not None
        again = run("user", "create", "ann", env=env, input=PASSWORD + "\n")
        assert again.exit_code == 1 and "exists already" in again.output
        short = run("user", "create", "bob", env=env, input="short\n")
        assert short.exit_code == 1 and "at least 8" in short.output

    def test_list_passwd_delete(self, settings: Settings, store: Store) -> None:
        """The life of an account from the command line."""
        env = db_env(settings)
        run("user", "create", "ann", env=env, input=PASSWORD + "\n")
        listed = run("user", "list", env=env)
        assert "ann" in listed.output and "viewer" in listed.output
        changed = run("user", "passwd", "ann", env=env, input="a new password\n")
        assert changed.exit_code == 0 and users.authenticate(store, "ann", "a new password")
        missing = run("user", "passwd", "bob", env=env, input="a new password\n")
        assert missing.exit_code == 1 and "no user named 'bob'" in missing.output
        deleted = run("user", "delete", "ann", env=env)
        assert deleted.exit_code == 0 and users.all_users(store) == []
        assert run("user", "delete", "ann", env=env).exit_code == 1
