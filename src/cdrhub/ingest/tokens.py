"""Ingest tokens: the configured ones, or one generated on first start and kept on disk."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from cdrhub.settings import Settings


def new_token() -> str:
    """A fresh random token (32 bytes of entropy, URL-safe so it pastes anywhere)."""
    return secrets.token_urlsafe(32)


def read_token_file(path: Path) -> list[str]:
    """Tokens in a token file, one per line (blank lines and # comments ignored)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def write_token_file(path: Path, tokens: list[str]) -> None:
    """Replace the token file, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(tokens) + "\n")


def create_token_file(path: Path, tokens: list[str]) -> list[str]:
    """Write a token file only if there is none, and return the tokens in it afterwards.

    Several processes starting at once (``--workers N``) may each generate a secret: the file
    is written whole under a temporary name and hard-linked into place, which fails if one is
    there already, so every process ends up with the same, complete file and none truncates
    another's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: owner-only already
            handle.write("\n".join(tokens) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won; use its tokens
    finally:
        os.unlink(temporary)
    return read_token_file(path)


def accepted_tokens(settings: Settings, *, generate: bool = False) -> tuple[list[str], bool]:
    """The tokens pushes may carry, and whether one was just generated.

    ``CDRHUB_TOKENS`` wins; otherwise the token file under ``data_dir`` is used, and with
    ``generate`` a new token is written there when it has none.
    """
    if settings.tokens:
        return [t.get_secret_value() for t in settings.tokens], False
    stored = read_token_file(settings.token_file)
    if stored or not generate:
        return stored, False
    created = create_token_file(settings.token_file, [new_token()])
    return created, True


def token_source(settings: Settings) -> str:
    """Which tokens a push may carry, said without any of a token: how many, and where they
    come from (the environment, the config file, or the token file and its path). ``cdrhub
    config`` prints this, since ``tokens = []`` alone hides that the token file is in use."""
    if settings.tokens:
        count = len(settings.tokens)
        return (
            f"{count} token{'s' if count != 1 else ''} from {settings.origin('tokens')}; "
            f"{settings.token_file.resolve()} is not used"
        )
    path = settings.token_file.resolve()
    stored = read_token_file(settings.token_file)
    if stored:
        count = len(stored)
        return f"{count} token{'s' if count != 1 else ''} from the token file {path}"
    return f"none yet: `cdrhub serve` generates one into {path}"


def session_secret_source(settings: Settings) -> str:
    """Where the dashboard's session secret comes from, without showing it."""
    if settings.session_secret is not None:
        return f"from {settings.origin('session_secret')}"
    path = settings.session_key_file.resolve()
    if read_token_file(settings.session_key_file):
        return f"from the file {path}"
    return f"none yet: `cdrhub serve` generates one into {path}"
