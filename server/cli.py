"""The `fetchdrive` command: parses arguments and calls the code that does the work.

Every failure a user can cause ends in one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, NoReturn

from engine.catalog import CatalogError
from engine.database import SQLITE_URL, DatabaseError, masked_url
from engine.database_move import MoveError, Moved, move_embedded
from engine.schema import SchemaError
from provider.accounts import AccountError
from server.settings import Config, ConfigError, load_config
from server.sizes import SizeError, format_size, parse_size

DEFAULT_CONFIG = "config.yaml"


class CommandError(Exception):
    """A user-facing failure; printed as one line."""


def _fail(message: str, status: int = 2) -> NoReturn:
    print(f"fetchdrive: error: {message}", file=sys.stderr)
    raise SystemExit(status)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see `{self.prog} --help`)")


def _read_password(args: argparse.Namespace, *, prompt: str) -> str:
    if getattr(args, "password", None) is not None:
        return args.password
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        if not line:
            raise CommandError("--password-stdin: no password on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no password given: use --password PW, --password-stdin, or run in a terminal")
    first = getpass.getpass(prompt)
    if getpass.getpass("Repeat it: ") != first:
        raise CommandError("the two passwords differ; nothing changed")
    return first


def _size_arg(text: str) -> int | None:
    try:
        return parse_size(text)
    except SizeError as error:
        raise CommandError(str(error)) from None


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _config_file(args: argparse.Namespace) -> Path | None:
    """The config file that is read: --config, else ./config.yaml if it exists, else none."""
    if args.config:
        return Path(args.config)
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else None


# Closed when the command ends: a PostgreSQL pool must not outlive a command run in-process.
_opened = contextlib.ExitStack()


def _storage(config: Config):
    from server.app import Storage

    storage = Storage(config)
    _opened.callback(storage.database.close)
    return storage


def _users(config: Config):
    from server.user_service import UserService

    return UserService(_storage(config))


def cmd_serve(config: Config, args: argparse.Namespace) -> None:
    from server.serve import serve

    serve(config, _config_file(args))


def cmd_user_add(config: Config, args: argparse.Namespace) -> None:
    users = _users(config)
    quota = _size_arg(args.quota) if args.quota is not None else config["storage.default_quota"]
    users.check_new_name(args.name)  # before asking for a password it would not use
    users.add(args.name, _read_password(args, prompt=f"Password for {args.name}: "), quota)
    from server.serve import added_user

    print(added_user(args.name, quota))


def cmd_user_list(config: Config, args: argparse.Namespace) -> None:
    users = _users(config).list()
    print(f"{'NAME':<32} {'USED':>10} {'QUOTA':>10}")
    for user in users:
        print(f"{user.name:<32} {format_size(user.used_bytes):>10} {format_size(user.quota_bytes):>10}")


def cmd_user_passwd(config: Config, args: argparse.Namespace) -> None:
    users = _users(config)
    users.require(args.name)
    users.set_password(args.name, _read_password(args, prompt=f"New password for {args.name}: "))
    print(f"changed the password of {args.name}")


def cmd_user_quota(config: Config, args: argparse.Namespace) -> None:
    quota = _size_arg(args.size)
    _users(config).set_quota(args.name, quota)
    print(f"quota of {args.name} is now {format_size(quota)}")


def cmd_user_remove(config: Config, args: argparse.Namespace) -> None:
    space = _users(config).remove(args.name, keep_files=args.keep_files)
    kept = f"; files kept in {space}" if args.keep_files else " and their files"
    print(f"removed user {args.name}{kept}")


def cmd_catalog_add(config: Config, args: argparse.Namespace) -> None:
    entry = _catalog(config).add(args.id, args.url, args.sha256, args.filename)
    print(f"added {entry.id} -> {entry.url}")


def cmd_catalog_list(config: Config, args: argparse.Namespace) -> None:
    for entry in _catalog(config).list():
        extras = "".join(
            f"  {label}={value}" for label, value in (("sha256", entry.sha256), ("filename", entry.filename)) if value
        )
        print(f"{entry.id}  {entry.url}{extras}  ({entry.origin})")


def cmd_catalog_remove(config: Config, args: argparse.Namespace) -> None:
    _catalog(config).remove(args.id)
    print(f"removed {args.id}")


def cmd_gc(config: Config, args: argparse.Namespace) -> None:
    from engine.content_store import ContentStore

    removed, freed = ContentStore(config.storage_root / "store").gc()
    print(f"removed {removed} unused stored object(s), freed {format_size(freed)}")


# How `migrate-db` names what it moved (one, several); a table not named here is "rows of" it.
_MOVED_AS = {
    "users": ("user", "users"), "tasks": ("task", "tasks"), "catalog": ("catalog entry", "catalog entries"),
    "events": ("event", "events"), "event_users": ("event counter", "event counters"),
    "devices": ("device", "devices"), "deliveries": ("delivery", "deliveries"),
    "shares": ("share link", "share links"),
    "dav_locks": ("lock record", "lock records"),  # WsgiDAV keeps a lock and its path's index entry
    "dav_properties": ("resource with dead properties", "resources with dead properties"),
}


def _moved(moved: list[Moved]) -> str:
    """`3 users, 1 catalog entry, ...`: the tables that held rows."""
    named = []
    for item in moved:
        one, many = _MOVED_AS.get(item.table, (f"row of {item.table}", f"rows of {item.table}"))
        if item.rows:
            named.append(f"{item.rows} {one if item.rows == 1 else many}")
    return ", ".join(named) or "nothing (the embedded database is empty)"


def cmd_migrate_db(config: Config, args: argparse.Namespace) -> None:
    if config["database.url"] != SQLITE_URL:
        raise CommandError(f"database.url is {masked_url(config['database.url'])} already; migrate-db moves "
                           f"the embedded database (database.url: {SQLITE_URL})")
    moved = move_embedded(config.storage_root, args.to)
    target = masked_url(args.to)
    print(f"moved {_moved(moved)} to {target}")
    print(f"next: set database.url to {target} (with its password) in {_config_file(args) or DEFAULT_CONFIG}, "
          "keep storage.root as it is, and start the server")


def _client_password(args: argparse.Namespace) -> str | None:
    if args.password is not None or args.password_stdin:
        return _read_password(args, prompt="")
    return os.environ.get("FETCHDRIVE_PASSWORD")


@contextlib.contextmanager
def _client_errors() -> Iterator[None]:
    """The client commands' failures, as any command's. Their code (with webdav3, dateutil and
    tqdm) is imported by these commands alone, not by every `serve` and admin command."""
    from server.client import ClientError

    try:
        yield
    except ClientError as error:
        raise CommandError(str(error)) from None


def cmd_add(config: Config | None, args: argparse.Namespace) -> None:
    if args.timeout is not None and not args.wait:
        raise CommandError("--timeout limits --wait; give both, or neither")
    with _client_errors():
        from server.client import add, server_from

        server = server_from(args.server, args.user, _client_password(args))
        raise SystemExit(add(server, args.sources, folder=args.folder, wait=args.wait, timeout=args.timeout))


def cmd_sync(config: Config | None, args: argparse.Namespace) -> None:
    with _client_errors():
        from server.client import server_from
        from server.live_sync import sync

        server = server_from(args.server, args.user, _client_password(args))
        raise SystemExit(sync(server, args.folder, Path(args.local_dir), delete=args.delete, watch=args.watch,
                              device=args.device))


def _catalog(config: Config):
    from engine.catalog import Catalog

    return Catalog(_storage(config).database)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fetchdrive", description="A self-hosted cloud drive that downloads for you.")
    parser.add_argument("--config", metavar="FILE", help=f"configuration file (default: ./{DEFAULT_CONFIG})")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", metavar="H", help="address to listen on (overrides server.host)")
    serve.add_argument("--port", metavar="P", type=int, help="port to listen on (overrides server.port; 0 = any free port)")
    serve.set_defaults(run=cmd_serve)

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True, parser_class=_Parser, metavar="ACTION")

    def with_password(sub: argparse.ArgumentParser) -> None:
        group = sub.add_mutually_exclusive_group()
        group.add_argument("--password", metavar="PW", help="the password (visible to other local users; prefer --password-stdin)")
        group.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    add = user_commands.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--quota", metavar="SIZE", help="e.g. 500M, 10G, 1.5T, bytes or none (default: storage.default_quota)")
    with_password(add)
    add.set_defaults(run=cmd_user_add)

    user_commands.add_parser("list", help="list users").set_defaults(run=cmd_user_list)

    passwd = user_commands.add_parser("passwd", help="change a password")
    passwd.add_argument("name")
    with_password(passwd)
    passwd.set_defaults(run=cmd_user_passwd)

    quota = user_commands.add_parser("quota", help="set a user's quota")
    quota.add_argument("name")
    quota.add_argument("size", metavar="SIZE", help="e.g. 500M, 10G, 1.5T, bytes or none")
    quota.set_defaults(run=cmd_user_quota)

    remove = user_commands.add_parser("remove", help="delete a user and their files")
    remove.add_argument("name")
    remove.add_argument("--keep-files", action="store_true", help="keep the user's folder on disk")
    remove.set_defaults(run=cmd_user_remove)

    catalog = commands.add_parser("catalog", help="map content IDs to sources")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True, parser_class=_Parser, metavar="ACTION")
    catalog_add = catalog_commands.add_parser("add", help="add or replace an entry")
    catalog_add.add_argument("id")
    catalog_add.add_argument("url")
    catalog_add.add_argument("--sha256", metavar="HEX", help="expected checksum of the content")
    catalog_add.add_argument("--filename", metavar="NAME", help="name to save under")
    catalog_add.set_defaults(run=cmd_catalog_add)
    catalog_commands.add_parser("list", help="list entries").set_defaults(run=cmd_catalog_list)
    catalog_remove = catalog_commands.add_parser("remove", help="remove an entry")
    catalog_remove.add_argument("id")
    catalog_remove.set_defaults(run=cmd_catalog_remove)

    commands.add_parser("gc", help="remove stored content no file refers to any more").set_defaults(run=cmd_gc)

    migrate = commands.add_parser(
        "migrate-db", help="move the embedded database into PostgreSQL",
        description="Copy everything the embedded database holds into an empty PostgreSQL database, in one "
                    "transaction. Run it with the server stopped; then set database.url and start the server.")
    migrate.add_argument("--to", required=True, metavar="URL",
                         help="an empty PostgreSQL database, e.g. postgresql://fetch:PW@db.example:5432/drive")
    migrate.set_defaults(run=cmd_migrate_db)

    def client_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--server", required=True, metavar="URL", help="e.g. https://drive.example:8080")
        sub.add_argument("--user", required=True, metavar="U")
        with_password(sub)

    add = commands.add_parser("add", help="queue downloads on a server (uploads a trigger file)")
    add.add_argument("sources", nargs="+", metavar="URL|ID")
    client_options(add)
    add.add_argument("--folder", default="downloads", help="folder inside downloads/ (default: downloads)")
    add.add_argument("--wait", action="store_true", help="show progress until the downloads finish")
    add.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                     help="with --wait: give up waiting (exit 1) after SECONDS; the downloads go on (default: no limit)")
    add.set_defaults(run=cmd_add, needs_config=False)

    sync = commands.add_parser("sync", help="mirror a folder of the drive into a local folder")
    sync.add_argument("local_dir", metavar="LOCAL_DIR")
    client_options(sync)
    sync.add_argument("--folder", metavar="PATH",
                      help="folder of the drive (default: all of it; with --device: none, only what is sent)")
    sync.add_argument("--delete", action="store_true", help="delete local files removed from the drive")
    sync.add_argument("--watch", type=float, metavar="SECONDS",
                      help="keep following the drive's changes as they happen; sync every SECONDS at the latest")
    sync.add_argument("--device", metavar="NAME",
                      help="register this machine as device NAME and receive into LOCAL_DIR the files sent to it")
    sync.set_defaults(run=cmd_sync, needs_config=False)
    return parser


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _configure_logging()
    run: Callable[[Config | None, argparse.Namespace], None] = args.run
    try:
        config = None
        if getattr(args, "needs_config", True):
            overrides = {key: value for key, value in (("server.host", getattr(args, "host", None)),
                                                       ("server.port", getattr(args, "port", None))) if value is not None}
            config = load_config(_config_file(args), overrides)
        with _opened:
            run(config, args)
    except (ConfigError, AccountError, CatalogError, CommandError, SchemaError, DatabaseError, MoveError) as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted", status=130)


def _exit_at_once() -> NoReturn:
    """Exit once the work is done and its output flushed, skipping the interpreter's teardown
    of every loaded module (WsgiDAV, psycopg, apprise, libtorrent...): that took 1 to 4 s
    more on a busy machine, after a server had stopped or a command had finished, paid by each
    of the hundreds of servers and commands the test suite runs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    _exit_at_once()
