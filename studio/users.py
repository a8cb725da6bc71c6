"""The studio's logins: a users file of names and salted password hashes, and the check Gradio's
login form calls.

The file (`palimpsest users add NAME --file F`, or `palimpsest app --users F` / $PALIMPSEST_USERS
to use it) is UTF-8 text, one person a line, `#` comments and blank lines allowed:

    # palimpsest users file: NAME<TAB>scrypt$N$R$P$SALT$HASH
    alice	scrypt$16384$8$1$3q2+7w...==$Yk1c...==

NAME is an annotator name (core.judging.annotator.clean: 1 to 80 printable characters, no tabs,
nothing starting "model:"), the name every act of that person is recorded under. After the one
tab: the hash, `scrypt` (hashlib.scrypt) with its cost N, block size R and parallelism P, a
random 16-byte SALT of that user alone and the 32-byte HASH, both base64. A password is checked
by hashing it again with the line's own salt and costs and comparing with hmac.compare_digest
(constant time); an unknown name is hashed too, so a wrong name takes as long as a wrong password.
The file is written whole (a temporary file in the same folder, renamed over it) with mode 0600.

Knows: reading (`read_users`: a bad line is UsersFileError naming file:line and the fix), writing
(`write_users`), hashing (`hash_password`, `verify`), adding and removing (`add_user`,
`remove_user`), and `Logins`: the names and hashes a studio accepts (a file's, plus USER:PASSWORD
pairs given with --auth, hashed in memory at start), callable as Gradio's `auth`. Also
`by_person(fn)`: a page handler run as the person of the request Gradio serves (studio.identity.as_person).

Does not know: Gradio's sessions or cookies (Gradio keeps them), nor where acts are stored.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import inspect
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from core.judging.annotator import BadAnnotator, clean

SCHEME = "scrypt"
COST_N, COST_R, COST_P = 2 ** 14, 8, 1  # scrypt costs of new hashes (~16 MB, ~0.1 s a check); old lines keep theirs
SALT_BYTES = 16  # random salt per user
HASH_BYTES = 32  # length of the derived key
MIN_PASSWORD = 8  # shortest password `users add` takes
MAX_PASSWORD = 1024  # longest password (scrypt hashes any length; this bounds a request's work)
HEADER = "# palimpsest users file: NAME<TAB>scrypt$N$R$P$SALT$HASH (palimpsest users add NAME --file F)\n"


class UsersFileError(ValueError):
    """A users file that cannot be read or a user that cannot be added; the message names the place and fix."""


@dataclass(frozen=True)
class Hashed:
    """One password hash: scrypt costs, salt and derived key."""

    n: int  # scrypt cost N (a power of 2)
    r: int  # scrypt block size
    p: int  # scrypt parallelism
    salt: bytes  # random, this user's alone
    key: bytes  # scrypt(password, salt)

    def line(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return f"{SCHEME}${self.n}${self.r}${self.p}${b64(self.salt)}${b64(self.key)}"


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=dklen)


def check_password(password: str, where: str = "password") -> str:
    """The password when it can be used; UsersFileError naming `where` and the rule otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UsersFileError(f"{where}: too short; use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD or "\n" in password or "\r" in password:
        raise UsersFileError(f"{where}: use one line of at most {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> Hashed:
    """A new salted scrypt hash of `password` (any length up to MAX_PASSWORD; not checked for strength)."""
    salt = secrets.token_bytes(SALT_BYTES)
    return Hashed(COST_N, COST_R, COST_P, salt, _derive(password, salt, COST_N, COST_R, COST_P))


def verify(password: str, hashed: Hashed) -> bool:
    """True when `password` hashes to `hashed` (constant-time compare)."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    got = _derive(password, hashed.salt, hashed.n, hashed.r, hashed.p, len(hashed.key))
    return hmac.compare_digest(got, hashed.key)


def parse_hash(text: str, where: str) -> Hashed:
    """A hash field `scrypt$N$R$P$SALT$HASH`; UsersFileError naming `where` otherwise."""
    fix = "make the line again with `palimpsest users add NAME --file F`"
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise UsersFileError(f"{where}: the hash is not {SCHEME}$N$R$P$SALT$HASH; {fix}")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, key = (base64.b64decode(x.encode("ascii"), validate=True) for x in parts[4:6])
    except (ValueError, UnicodeEncodeError):
        raise UsersFileError(f"{where}: the hash's numbers or base64 cannot be read; {fix}") from None
    if not (2 <= n <= 2 ** 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and n * r * 128 <= 2 ** 28):
        raise UsersFileError(f"{where}: scrypt costs N={n} R={r} P={p} are out of range (N a power of 2 up to "
                             f"2^20, R 1-32, P 1-16); {fix}")
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise UsersFileError(f"{where}: the salt or hash is too short; {fix}")
    return Hashed(n, r, p, salt, key)


def read_users(path: str | Path) -> dict[str, Hashed]:
    """{name: hash} from a users file. UsersFileError naming file:line and the fix for a bad line,
    a name given twice, or a file that cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsersFileError(f"{path}: no such users file; make it with `palimpsest users add NAME --file "
                             f"{path}`") from None
    except UnicodeDecodeError:
        raise UsersFileError(f"{path}: not UTF-8 text; is it the users file?") from None
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    users: dict[str, Hashed] = {}
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.count("\t") != 1:
            raise UsersFileError(f"{where}: expected NAME<TAB>HASH (one tab); make the line with `palimpsest "
                                 f"users add NAME --file {path}`")
        name, hashed = line.split("\t")
        try:
            name = clean(name, where=f"{where}: name")
        except BadAnnotator as exc:
            raise UsersFileError(f"{exc}; fix or remove the line") from None
        if name in users:
            raise UsersFileError(f"{where}: {name!r} is given twice; remove one line "
                                 f"(`palimpsest users remove {name} --file {path}` removes both)")
        users[name] = parse_hash(hashed, where)
    return users


def write_users(path: str | Path, users: dict[str, Hashed]) -> None:
    """Write the whole file: a temporary file (mode 0600) in the same folder, renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = HEADER + "".join(f"{name}\t{h.line()}\n" for name, h in sorted(users.items()))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_or_empty(path: Path) -> dict[str, Hashed]:
    return read_users(path) if path.exists() else {}


def add_user(path: str | Path, name: str, password: str) -> bool:
    """Add `name` (or set a new password when it is there); True when the name is new."""
    path = Path(path)
    try:
        name = clean(name, where="name")
    except BadAnnotator as exc:
        raise UsersFileError(str(exc)) from None
    check_password(password)
    users = _read_or_empty(path)
    new = name not in users
    users[name] = hash_password(password)
    write_users(path, users)
    return new


def remove_user(path: str | Path, name: str) -> None:
    """Remove `name`; UsersFileError when it is not in the file."""
    path = Path(path)
    users = _read_or_empty(path)
    key = name.strip()
    if key not in users:
        raise UsersFileError(f"{path}: no user {key!r}; `palimpsest users list --file {path}` shows the names")
    del users[key]
    write_users(path, users)


def parse_pair(text: str, where: str = "--auth") -> tuple[str, str]:
    """(name, password) from USER:PASSWORD (split at the first colon); UsersFileError naming `where`."""
    user, sep, password = (text or "").partition(":")
    if not sep or not user.strip() or not password:
        raise UsersFileError(f"{where} must look like USER:PASSWORD, both non-empty")
    try:
        return clean(user, where=f"{where} user"), password
    except BadAnnotator as exc:
        raise UsersFileError(str(exc)) from None


@dataclass
class Logins:
    """The names and password hashes a studio accepts; call it as Gradio's `auth(username, password)`."""

    users: dict[str, Hashed] = field(default_factory=dict)  # name -> hash
    _dummy: Hashed = field(default_factory=lambda: hash_password(secrets.token_hex(8)), repr=False)  # for unknown names

    @classmethod
    def load(cls, file: str | Path | None = None, pairs: Iterable[str] = ()) -> "Logins":
        """A users file's logins (if given) plus USER:PASSWORD pairs (hashed now); a name in both is an error."""
        users = read_users(file) if file else {}
        for pair in pairs:
            name, password = parse_pair(pair)
            if name in users:
                raise UsersFileError(f"--auth {name}: the name is given twice (in --auth and/or the users file); "
                                     "keep one")
            users[name] = hash_password(password)
        return cls(users)

    def names(self) -> list[str]:
        return sorted(self.users)

    def __bool__(self) -> bool:
        return bool(self.users)

    def __call__(self, username: str, password: str) -> bool:
        hashed = self.users.get((username or "").strip())
        ok = verify(password or "", hashed or self._dummy)  # an unknown name costs the same work
        return ok and hashed is not None


def by_person(fn: Callable) -> Callable:
    """`fn` as a Gradio handler run as the request's person (studio.identity.as_person): every act it
    records carries the logged-in name (else the OS user). The request is the one Gradio is serving
    in this thread (gradio.context.LocalContext.request, set around every event); `fn`'s signature
    is kept, so Gradio passes the same inputs, and a call outside a request (a test calling the
    handler) runs as the OS user."""
    from gradio.context import LocalContext

    from studio.identity import as_person

    if inspect.isgeneratorfunction(fn):  # a streaming handler: the person holds while it yields
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            with as_person(LocalContext.request.get(None)):
                yield from fn(*args, **kwargs)

        return streaming

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        with as_person(LocalContext.request.get(None)):
            return fn(*args, **kwargs)

    return handler
