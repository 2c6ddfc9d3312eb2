"""Every write into a user's space goes through one place, provider/space_writer.py.

Two ways to see it. From outside: the engine's writes (error notes, finished triggers taken
away, published downloads) race a client's PUT, DELETE and MOVE on the very same paths, and
afterwards the quota equals a recount and the trigger the client uploaded last is still there.
From the sources: no module of engine/, provider/ or server/ other than the writer and its
helpers calls a function that writes to the filesystem, except the few listed below, each
with the reason why what it writes is not a user's space.
"""

from __future__ import annotations

import ast
import random
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import new_account
from tests.downloads_helpers import url_shortcut, wait_for
from tests.quota_helpers import recounted, uploads_left, used

REPO = Path(__file__).resolve().parent.parent

# The writer and the helpers it calls; nothing else changes a user's space.
WRITER = {"provider/space_writer.py", "provider/free_names.py", "provider/own_copy.py", "provider/upload.py"}

# Writes elsewhere, and where they go. A new write into a user's space belongs in the writer;
# a new write outside the spaces belongs here, with its reason.
ELSEWHERE: dict[str, tuple[Counter, str]] = {
    "engine/content_store.py": (Counter({".mkdir": 2, ".unlink": 3, "os.link": 1}), "the content store's objects"),
    "engine/cluster_locks.py": (Counter({".mkdir": 1, "os.open(write)": 1}), "lock files under storage.root/locks/"),
    "engine/sqlite_database.py": (Counter({".mkdir": 1}), "the database's folder"),
    "engine/engine.py": (Counter({".write_bytes": 1}), "a magnet's metainfo in the temporary area"),
    "engine/temp_area.py": (Counter({"shutil.rmtree": 1, ".unlink": 2, ".mkdir": 1}),
                            "the engine's temporary area (partial downloads, torrent data)"),
    "engine/fetcher.py": (Counter({".mkdir": 1, ".touch": 1, "open(write)": 1, "os.open(write)": 1}),
                          "a download's temporary file"),
    "engine/segments.py": (Counter({".mkdir": 1, "open(write)": 2, "os.open(write)": 1}), "a download's temporary file"),
    "engine/socket_splice.py": (Counter({"os.unlink": 1}), "a probe file in the temporary area"),
    "engine/torrent_client.py": (Counter({".mkdir": 1, "shutil.rmtree": 1}), "a torrent's temporary and seeding folders"),
    "engine/torrent_resume.py": (Counter({"open(write)": 1, "os.replace": 1}),
                                 "a torrent's metadata and resume data in the temporary area"),
    "engine/torrent_shelf.py": (Counter({".mkdir": 2, ".write_text": 1, "os.replace": 1, "os.link": 1, ".touch": 1}),
                                "torrent manifests and the staging tree in the temporary area"),
    "provider/credential_cache.py": (Counter({"os.open(write)": 1}), "the login cache's generation file"),
    "provider/dav_storage.py": (Counter({".rename": 1}), "a key of the dead-property store, in the database"),
    "provider/spaces.py": (Counter({".mkdir": 3, "shutil.rmtree": 1}),
                           "the spaces' root, a new space with its downloads/ folder, the upload area"),
    "server/app.py": (Counter({".mkdir": 1}), "the data folder"),
    "server/user_service.py": (Counter({".mkdir": 1, "shutil.rmtree": 2, ".unlink": 1}),
                               "`user add` makes the space, `user remove` removes it and the user's temporary "
                               "data with the account"),
    "server/client.py": (Counter({".write_text": 1, "os.replace": 2, ".mkdir": 3, ".unlink": 3}),
                         "the sync client's local folder, on the user's own machine"),
    "server/live_sync.py": (Counter({".mkdir": 1}), "the sync client's partial files"),
    "server/shares.py": (Counter({"os.open(write)": 1, "os.link": 1, ".unlink": 1}), "the share links' key file"),
}

_OS = {"replace", "rename", "renames", "link", "symlink", "unlink", "remove", "rmdir", "removedirs", "mkdir",
       "makedirs", "utime", "truncate", "chmod", "mkfifo"}
_SHUTIL = {"rmtree", "move", "copy", "copy2", "copyfile", "copystat", "copytree", "copyfileobj"}
_PATH = {"unlink", "mkdir", "rmdir", "write_bytes", "write_text", "touch", "hardlink_to", "symlink_to", "rename", "chmod"}


def filesystem_writes(source: str) -> Counter:
    """Calls in `source` that change the filesystem, by kind (`os.replace`, `.unlink`...)."""
    found: Counter = Counter()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and any(letter in mode.value for letter in "wax+"):
                found["open(write)"] += 1
            continue
        if not isinstance(function, ast.Attribute):
            continue
        base = function.value.id if isinstance(function.value, ast.Name) else None
        if base == "os" and function.attr == "open":
            flags = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if any(flag in flags for flag in ("O_WRONLY", "O_RDWR", "O_CREAT")):
                found["os.open(write)"] += 1
        elif base == "os" and function.attr in _OS:
            found[f"os.{function.attr}"] += 1
        elif base == "shutil" and function.attr in _SHUTIL:
            found[f"shutil.{function.attr}"] += 1
        elif base not in ("os", "shutil") and function.attr in _PATH:
            found[f".{function.attr}"] += 1
    return found


@pytest.mark.parametrize("snippet, kind", [
    ("os.replace(temp, target)", "os.replace"),
    ("Path(x).unlink(missing_ok=True)", ".unlink"),
    ("shutil.rmtree(folder)", "shutil.rmtree"),
    ("open(path, 'ab')", "open(write)"),
    ("os.open(path, os.O_WRONLY | os.O_CREAT)", "os.open(write)"),
    ("target.write_bytes(body)", ".write_bytes"),
    ("os.link(a, b)", "os.link"),
])
def test_the_source_check_sees_every_kind_of_write(snippet, kind):
    assert filesystem_writes(snippet) == Counter({kind: 1})


@pytest.mark.parametrize("snippet", ["open(path, 'rb')", "os.open(path, os.O_RDONLY)", "text.replace('a', 'b')",
                                     "os.stat(path)", "shutil.disk_usage(path)"])
def test_the_source_check_ignores_reads(snippet):
    assert not filesystem_writes(snippet)


@pytest.mark.parametrize("package", ["engine", "provider", "server"])
def test_only_the_space_writer_writes_into_user_spaces(package):
    unexpected = []
    for module in sorted((REPO / package).rglob("*.py")):
        name = module.relative_to(REPO).as_posix()
        if name in WRITER:
            continue
        writes = filesystem_writes(module.read_text())
        allowed = ELSEWHERE.get(name, (Counter(), ""))[0]
        if writes - allowed:
            unexpected.append(f"{name}: {dict(writes - allowed)}")
    assert not unexpected, ("writes outside provider/space_writer.py; route a write into a user's space through it, "
                            f"or list a write elsewhere in ELSEWHERE with its reason: {unexpected}")


# --- the engine and clients on the same paths ---------------------------------

BROKEN = b"please fetch this for me\n"  # a trigger the engine answers with an .error.txt


def run_together(*works: Callable[[], None]) -> None:
    """Run each of `works` on a thread of its own, all at once, and wait for them all."""
    threads = [threading.Thread(target=work) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


ROUNDS = 120


# Issue 13: one run in three, the `downloads` instance ended with the used bytes above a recount
# (812 and 2,263 against 676): a client's DELETE of a download the moment it was published
# refunded it before the engine had booked it, and the figure, then below 2048, stopped at zero.
# tests/test_quota_books.py pins both halves of the fix; this race shows them together.
@pytest.mark.parametrize("folder, seed", [("downloads", 1), ("downloads/sub folder", 2), ("downloads/a/b", 3),
                                          ("downloads", 4)])
def test_engine_and_client_writes_on_the_same_paths_keep_the_quota_and_the_trigger(shared_servers, origin, folder, seed):
    server = shared_servers({"engine.trigger_linger": 0.1})
    carol = new_account(server, "carol", "carol-password-1")
    client = carol.session
    for depth in range(1, len(folder.split("/")) + 1):
        client.request("MKCOL", server.dav("/".join(folder.split("/")[:depth])))
    origin.add("/file.bin", bytes(range(256)) * 8)
    good = url_shortcut(origin.url("/file.bin"))
    base = f"{folder}/"
    failures: list[str] = []

    def broken_triggers() -> None:
        """Each upload of a broken trigger has the engine write its error note anew..."""
        for round_ in range(ROUNDS):
            answer = client.put(server.dav(base + "bad.url"), data=BROKEN + b"#" * (round_ % 7))
            if answer.status_code >= 500:
                failures.append(f"PUT bad.url: {answer.status_code}")

    def client_notes() -> None:
        """...while the client replaces, deletes and moves that very note."""
        chance = random.Random(seed)
        note = base + "bad.url.error.txt"
        for round_ in range(ROUNDS):
            method, extra = chance.choice([
                ("PUT", {"data": b"mine" * chance.randrange(1, 500)}),
                ("PUT", {"data": b"x"}),
                ("DELETE", {}),
                ("MOVE", {"headers": {"Destination": server.dav(base + f"moved-{round_ % 3}.txt"), "Overwrite": "T"}}),
            ])
            answer = client.request(method, server.dav(note), **extra)
            if answer.status_code >= 500:
                failures.append(f"{method} {note}: {answer.status_code}")

    def finished_triggers() -> None:
        """A trigger whose download finished goes away while the client uploads it again."""
        chance = random.Random(-seed)
        for _ in range(20):
            client.put(server.dav(base + "good.url"), data=good)
            for name in chance.sample(["file.bin", "file (1).bin", "file (2).bin"], 2):
                answer = client.delete(server.dav(base + name))
                if answer.status_code >= 500:
                    failures.append(f"DELETE {name}: {answer.status_code}")
        client.put(server.dav(base + "good.url"), data=BROKEN)  # the last upload: it must stay

    run_together(broken_triggers, client_notes, finished_triggers)
    assert not failures

    def idle() -> bool:
        tasks = client.get(server.url("/api/v1/tasks")).json()
        return not any(task["state"] in ("queued", "downloading", "waiting", "verifying") for task in tasks)

    wait_for(idle, timeout=60, message="no task running")
    space = server.space(carol.name) / folder
    assert (space / "good.url").read_bytes() == BROKEN
    wait_for(lambda: (space / "good.url.error.txt").exists(), message="the last trigger's error note")
    assert (space / "bad.url").exists()
    assert_exact_quota(client, server, carol.name)  # the engine may still be writing the last note


# Issue 13: one run in five to ten ended a note's 225 bytes below a recount, when a write's size
# read and its rename went through the folder's path with a MOVE of the folder in between (path
# locks were per path string). A change now holds the folders above it shared, a MOVE the folder
# itself (provider/path_locks.py); the test below this one holds the same for other changes.
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_error_notes_for_a_folder_moved_meanwhile_fail_no_request_and_no_worker(shared_servers, origin, seed):
    """The engine writes trigger notes (a broken trigger's in the request that uploaded it, a
    failed download's in a worker) while the client moves the triggers' folder back and forth:
    a note lands in the folder or nowhere, no request gets a 5xx, the one worker lives on and
    the quota equals a recount."""
    server = shared_servers({"engine.workers": 1, "engine.trigger_linger": 0.1})
    carol = new_account(server, "carol", "carol-password-1")
    client = carol.session
    client.request("MKCOL", server.dav("downloads/f"))
    triggers = [("bad.url", BROKEN), ("missing.url", url_shortcut(origin.url("/missing.bin")))]
    failures: list[str] = []

    def uploads() -> None:
        chance = random.Random(seed)
        for _ in range(ROUNDS):
            name, body = chance.choice(triggers)
            answer = client.put(server.dav(f"downloads/f/{name}"), data=body)
            if answer.status_code >= 500:
                failures.append(f"PUT {name}: {answer.status_code}")

    def moves() -> None:
        # All ROUNDS, also after the last upload: the one worker writes the failed downloads'
        # notes behind the uploads, and those notes racing the moves catch issue 13 too (with
        # the moves cut to the uploads' time, the six seeds passed with its fix reverted).
        for round_ in range(ROUNDS):  # an even number: the folder ends where it began
            there, away = ("f", "g") if round_ % 2 == 0 else ("g", "f")
            answer = client.request("MOVE", server.dav(f"downloads/{there}"),
                                    headers={"Destination": server.dav(f"downloads/{away}"), "Overwrite": "F"})
            if answer.status_code >= 500:
                failures.append(f"MOVE {there}: {answer.status_code}")

    run_together(uploads, moves)
    assert not failures

    origin.add("/after.bin", b"still working")
    client.put(server.dav("downloads/f/after.url"), data=url_shortcut(origin.url("/after.bin")))
    folder = server.space(carol.name) / "downloads" / "f"
    wait_for(lambda: (folder / "after.bin").exists(), timeout=60, message="a download after the race (the worker lives)")
    # Then its trigger goes (refunded a moment after it leaves the disk): the last change.
    wait_for(lambda: not (folder / "after.url").exists(), message="the finished trigger taken away")
    assert "Traceback" not in server.log_text()
    assert_exact_quota(client, server, carol.name)


def assert_exact_quota(client: requests.Session, server, user: str) -> None:
    """The used bytes equal a recount, once the engine's last change is booked."""
    try:
        wait_for(lambda: used(client, server) == recounted(server, user), timeout=10, message="an exact quota")
    finally:
        assert used(client, server) == recounted(server, user)


GRANDPARENT_ROUNDS = 30  # an even number: a folder moved away and back ends where it began


@pytest.mark.both_databases
@pytest.mark.parametrize("action", ["MOVE", "DELETE", "COPY"])
@pytest.mark.parametrize("seed", [1, 2])
def test_changes_to_files_racing_a_move_delete_or_copy_of_their_grandparent_keep_the_quota_exact(
        shared_servers, action, seed):
    """PUT, DELETE and MOVE of files in a/b/ race a MOVE of a/ away and back, a DELETE of a/
    (made again at once), or a COPY of a/ over its last copy: each change lands whole or not at
    all, no request gets a 5xx, and the quota equals a recount."""
    server = shared_servers()
    carol = new_account(server, "carol", "carol-password-1")
    client = carol.session

    def make_tree() -> None:
        for folder in ("a", "a/b"):
            client.request("MKCOL", server.dav(folder))

    make_tree()
    failures: list[str] = []

    def checked(method: str, path: str, **extra) -> None:
        answer = client.request(method, server.dav(path), **extra)
        if answer.status_code >= 500:
            failures.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")

    def file_changes() -> None:
        chance = random.Random(seed)
        names = ["x.bin", "y.bin", "z.bin"]
        for _ in range(3 * GRANDPARENT_ROUNDS):
            path = "a/b/" + chance.choice(names)
            method, extra = chance.choice([
                ("PUT", {"data": bytes(chance.randrange(1, 3000))}),
                ("DELETE", {}),
                ("MOVE", {"headers": {"Destination": server.dav("a/b/" + chance.choice(names)), "Overwrite": "T"}}),
            ])
            checked(method, path, **extra)

    def grandparent() -> None:
        for round_ in range(GRANDPARENT_ROUNDS):
            if action == "MOVE":
                there, away = ("a", "c") if round_ % 2 == 0 else ("c", "a")
                checked("MOVE", there, headers={"Destination": server.dav(away), "Overwrite": "F"})
            elif action == "DELETE":
                checked("DELETE", "a")
                make_tree()
            else:
                checked("COPY", "a", headers={"Destination": server.dav("copy"), "Overwrite": "T"})

    run_together(file_changes, grandparent)
    assert not failures
    assert_exact_quota(client, server, carol.name)


@pytest.mark.parametrize("away", ["MOVE", "DELETE"])
def test_a_put_whose_folder_goes_away_before_its_body_ends_gets_409_and_stores_nothing(shared_servers, away):
    server = shared_servers()  # the grandparent races' server
    carol = new_account(server, "carol", "carol-password-1")
    client = carol.session
    assert not uploads_left(server)  # then the one seen below is this PUT's
    client.request("MKCOL", server.dav("docs"))
    gone = threading.Event()

    def body():
        yield b"a" * 1000
        gone.wait(60)
        yield b"b" * 1000

    answers = []
    putting = threading.Thread(target=lambda: answers.append(client.put(server.dav("docs/report.txt"), data=body())))
    putting.start()
    wait_for(lambda: uploads_left(server), message="the PUT's body on its way in")
    headers = {"Destination": server.dav("elsewhere")} if away == "MOVE" else {}
    assert server.session(carol.name, carol.password).request(away, server.dav("docs"), headers=headers).status_code < 300
    gone.set()
    putting.join()
    assert answers[0].status_code == 409 and "moved or deleted meanwhile" in answers[0].text
    assert not uploads_left(server)
    assert not list(server.space(carol.name).rglob("report.txt"))
    assert used(client, server) == recounted(server, carol.name) == 0
