"""The studio's logins: a users file of names and salted password hashes, and the check Gradio's
login form calls.

The file (`palimpsest users add NAME --file F`, or `palimpsest app --users F` / $PALIMPSEST_USERS
to use it) is UTF-8 text, one person a line, `#` comments and blank lines allowed:

    # palimpsest users file: NAME<TAB>scrypt$N$R$P$SALT$HASH[<TAB>lead]
    alice	scrypt$16384$8$1$3q2+7w...==$Yk1c...==	lead
    bo	scrypt$16384$8$1$9f0a...==$Qm4t...==

NAME is an annotator name (core.annotators.clean: 1 to 80 printable characters, no tabs,
nothing starting "model:"), the name every act of that person is recorded under. After the one
tab: the hash, `scrypt` (hashlib.scrypt) with its cost N, block size R and parallelism P, a
random 16-byte SALT of that user alone and the 32-byte HASH, both base64. A password is checked
by hashing it again with the line's own salt and costs and comparing with hmac.compare_digest
(constant time); an unknown name is hashed too, so a wrong name takes as long as a wrong password.
The file is written whole (a temporary file in the same folder, renamed over it) with mode 0600.
An optional third field, `lead`, gives the person the lead role: they see every judgment of a
judging queue (Agreement, Calibration, judgment exports, `judge show --lead`) and resolve
disagreements; others see an item's scores only once they have judged it (docs/judging.md).

Knows: reading (`read_users`: a bad line is UsersFileError naming file:line and the fix), writing
(`write_users`), hashing (`hash_password`, `verify`), adding and removing (`add_user`,
`remove_user`), and `Logins`: the names and hashes a studio accepts (a file's, plus USER:PASSWORD
pairs given with --auth, hashed in memory at start), callable as Gradio's `auth`. Also
`by_person(fn)`: a page handler run as the person of the request Gradio serves (studio.identity.as_person).

Logins fail closed (docs/judging.md, Logins): `Logins.load` refuses a users file with no user
(the studio would have no login at all) and a file that its group or anyone may write (whoever
can write it can add a login); a file anyone may read is served with a warning. Failed logins
are throttled (`Throttle`): per name after NAME_FREE failures in a row and per client address
after ADDRESS_FREE, each further try must wait a delay that doubles per failure (1 s, 2 s, ...
up to MAX_DELAY_S); a try inside the delay is refused without checking the password. Every
failure and every refused try is logged with the name and the address. A right password resets
its name's count. The client address is the one `studio.app.serve` records for the request
(`CLIENT`); behind a proxy it is the proxy's.

Does not know: Gradio's sessions or cookies (Gradio keeps them), nor where acts are stored.
"""
from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import hmac
import inspect
import logging
import os
import secrets
import stat
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from core.annotators import BadAnnotator, clean

SCHEME = "scrypt"
COST_N, COST_R, COST_P = 2 ** 14, 8, 1  # scrypt costs of new hashes (~16 MB, ~0.1 s a check); old lines keep theirs
SALT_BYTES = 16  # random salt per user
HASH_BYTES = 32  # length of the derived key
MIN_PASSWORD = 8  # shortest password `users add` takes
MAX_PASSWORD = 1024  # longest password (scrypt hashes any length; this bounds a request's work)
NAME_FREE = 5  # failed logins in a row for one name before its tries are delayed
ADDRESS_FREE = 20  # failed logins in a row from one client address (any names) before its tries are delayed
MAX_DELAY_S = 900.0  # the longest delay between tries (15 minutes)
CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("palimpsest_login_client", default="unknown address")
log = logging.getLogger(__name__)
HEADER = "# palimpsest users file: NAME<TAB>scrypt$N$R$P$SALT$HASH[<TAB>lead] (palimpsest users add NAME --file F)\n"
LEAD = "lead"  # the one role a users file line may give


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
    role: str = ""  # "lead" or "" (the line's optional third field)

    def line(self) -> str:
        """The hash field, and the role field after a tab when there is one."""
        b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return f"{SCHEME}${self.n}${self.r}${self.p}${b64(self.salt)}${b64(self.key)}" + (f"\t{self.role}" if self.role else "")


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
        if line.count("\t") not in (1, 2):
            raise UsersFileError(f"{where}: expected NAME<TAB>HASH or NAME<TAB>HASH<TAB>lead; make the line with "
                                 f"`palimpsest users add NAME --file {path}`")
        name, hashed, *role = line.split("\t")
        if role and role[0].strip() != LEAD:
            raise UsersFileError(f"{where}: the role {role[0][:20]!r} is unknown; the only role is {LEAD!r} (or none)")
        try:
            name = clean(name, where=f"{where}: name")
        except BadAnnotator as exc:
            raise UsersFileError(f"{exc}; fix or remove the line") from None
        if name in users:
            raise UsersFileError(f"{where}: {name!r} is given twice; remove one line "
                                 f"(`palimpsest users remove {name} --file {path}` removes both)")
        users[name] = replace(parse_hash(hashed, where), role=LEAD if role else "")
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


def add_user(path: str | Path, name: str, password: str, lead: bool | None = None) -> bool:
    """Add `name` (or set a new password when it is there); True when the name is new. `lead`: give
    (True) or take (False) the lead role; None keeps what the line had (none for a new name)."""
    path = Path(path)
    try:
        name = clean(name, where="name")
    except BadAnnotator as exc:
        raise UsersFileError(str(exc)) from None
    check_password(password)
    users = _read_or_empty(path)
    new = name not in users
    role = (LEAD if lead else "") if lead is not None else (users[name].role if name in users else "")
    users[name] = replace(hash_password(password), role=role)
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


def check_file_mode(path: str | Path) -> None:
    """UsersFileError when the users file may be written by its group or by anyone (they could add a
    login); a warning when anyone may read it (the hashes can be attacked offline)."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # read_users says what is wrong with a file that cannot be read
    if mode & 0o022:
        who = " and ".join(w for w, bit in (("its group", 0o020), ("every user", 0o002)) if mode & bit)
        raise UsersFileError(f"{path}: the users file may be written by {who} (mode {mode:04o}), who could add a "
                             f"login; refusing to use it. Fix: chmod 600 {path}")
    if mode & 0o004:
        log.warning("%s: the users file may be read by every user of this machine (mode %04o): its password "
                    "hashes can be attacked offline; chmod 600 %s", path, mode, path)


class Throttle:
    """Growing delays after failed logins, per name and per client address (module docstring).
    Thread-safe; `clock` is time.monotonic unless a test gives its own."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], int] = {}  # ("name"|"address", key) -> failures in a row
        self._until: dict[tuple[str, str], float] = {}  # the same -> clock time before which tries are refused

    @staticmethod
    def delay(failures: int, free: int) -> float:
        """Seconds to wait after `failures` in a row when `free` go undelayed: 0, then 1, 2, 4 ... MAX_DELAY_S."""
        return 0.0 if failures < free else min(MAX_DELAY_S, 2.0 ** (failures - free))

    def wait_left(self, name: str, address: str) -> float:
        """Seconds before `name` from `address` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max(0.0, self._until.get(("name", name), 0.0) - now, self._until.get(("address", address), 0.0) - now)

    def failed(self, name: str, address: str) -> int:
        """Count a failure for both; the name's failures in a row."""
        now = self.clock()
        with self._lock:
            for key, free in ((("name", name), NAME_FREE), (("address", address), ADDRESS_FREE)):
                n = self._failures[key] = self._failures.get(key, 0) + 1
                self._until[key] = now + self.delay(n, free)
            return self._failures[("name", name)]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(("name", name), None)
            self._until.pop(("name", name), None)


@dataclass
class Logins:
    """The names and password hashes a studio accepts; call it as Gradio's `auth(username, password)`."""

    users: dict[str, Hashed] = field(default_factory=dict)  # name -> hash
    _dummy: Hashed = field(default_factory=lambda: hash_password(secrets.token_hex(8)), repr=False)  # for unknown names
    throttle: Throttle = field(default_factory=Throttle, repr=False)  # delays after failed logins

    @classmethod
    def load(cls, file: str | Path | None = None, pairs: Iterable[str] = (), leads: Iterable[str] = ()) -> "Logins":
        """A users file's logins (if given) plus USER:PASSWORD pairs (hashed now); a name in both is an
        error, and so is a file with no user or one its group or anyone may write (module docstring).
        `leads`: more names given the lead role (`app --lead NAME`); each must be one of the logins."""
        if file:
            check_file_mode(file)
        users = read_users(file) if file else {}
        if file and not users:
            raise UsersFileError(f"{file}: the users file has no user, so the studio would let anyone in without a "
                                 f"login; refusing to start. Add one with `palimpsest users add NAME --file {file}`")
        for pair in pairs:
            name, password = parse_pair(pair)
            if name in users:
                raise UsersFileError(f"--auth {name}: the name is given twice (in --auth and/or the users file); "
                                     "keep one")
            users[name] = hash_password(password)
        for lead in leads:
            name = (lead or "").strip()
            if name not in users:
                raise UsersFileError(f"--lead {name!r}: not one of the logins ({', '.join(sorted(users)) or 'none'}); "
                                     "give a name from the users file or --auth")
            users[name] = replace(users[name], role=LEAD)
        return cls(users)

    @property
    def leads(self) -> frozenset:
        """The names with the lead role."""
        return frozenset(n for n, h in self.users.items() if h.role == LEAD)

    def names(self) -> list[str]:
        return sorted(self.users)

    def __bool__(self) -> bool:
        return bool(self.users)

    def __call__(self, username: str, password: str) -> bool:
        name, address = unicodedata.normalize("NFC", (username or "").strip()[:80]), CLIENT.get()  # as clean() keeps it
        wait = self.throttle.wait_left(name, address)
        if wait > 0:
            log.warning("login for %r from %s refused without a check: too many failed logins, next try in %.0f s",
                        name, address, wait)
            return False
        hashed = self.users.get(name)
        ok = verify(password or "", hashed or self._dummy)  # an unknown name costs the same work
        if ok and hashed is not None:
            self.throttle.succeeded(name)
            return True
        n = self.throttle.failed(name, address)
        log.warning("failed login for %r from %s (%d in a row for this name)", name, address, n)
        return False


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
