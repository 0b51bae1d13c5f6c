"""The runner's own view of the Redis databases under test.

The runner uses a redis-py client of its own, so that a binding cannot
pass by agreeing with itself. It empties the four databases of the
offset between cases, sends the commands of ``raw`` steps, and reads the
keys back to check a case's ``layout``.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import redis

from .._count import count
from ._display import bytes_mismatch, render, to_report
from ._results import StepFailure
from ._values import Variables, VectorValueError, decode_text_bytes, resolve, text_to_bytes

__all__ = ["DATABASES", "RedisSide", "RedisSideError"]

log = logging.getLogger(__name__)

DATABASES = 4
SOCKET_TIMEOUT = 10.0
# The maximum number of extra keys that a failing exhaustive layout check lists.
SHOWN_EXTRA_KEYS = 10


class RedisSideError(Exception):
    """The runner cannot use the Redis databases: unreachable, missing or not empty."""


class RedisSide:
    """Clients on the databases ``offset`` to ``offset + 3`` of one Redis server."""

    def __init__(self, host: str, port: int, offset: int) -> None:
        self.host = host
        self.port = port
        self.offset = offset
        # Typed as Any: redis-py types replies as bytes | str, but without
        # decode_responses these clients always return bytes.
        self._clients: list[Any] = [
            redis.Redis(
                host=host,
                port=port,
                db=offset + index,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
            )
            for index in range(DATABASES)
        ]

    @property
    def address(self) -> str:
        """Return ``host:port/offset``, for messages."""
        return f"{self.host}:{self.port}/{self.offset}"

    def check_empty(self) -> None:
        """Raise :class:`RedisSideError` unless all four databases exist and hold no key."""
        for index, client in enumerate(self._clients):
            try:
                size = client.dbsize()
            except redis.RedisError as error:
                raise RedisSideError(
                    f"could not read database {self.offset + index} of the Redis server at"
                    f" {self.host}:{self.port}: {error}"
                ) from None
            if size:
                raise RedisSideError(
                    f"database {self.offset + index} of the Redis server at {self.host}:{self.port} contains"
                    f" {count(size, 'key')}, but the runner needs databases {self.offset} to"
                    f" {self.offset + DATABASES - 1} empty, because it empties them between cases."
                    " Choose another offset or empty them first"
                )

    def flush(self) -> None:
        """Empty the four databases with FLUSHDB, and no other database.

        :raises RedisSideError: the server cannot be reached.
        """
        for client in self._clients:
            try:
                client.flushdb()
            except redis.RedisError as error:
                raise RedisSideError(f"could not empty the databases at {self.address}: {error}") from None

    def set_config(self, settings: dict[str, str], previous: dict[str, str]) -> str | None:
        """Set server settings with CONFIG SET, saving each one's value in ``previous`` before it changes.

        Returns None once every setting is set. When the server rejects
        CONFIG GET or CONFIG SET, such as under an ACL that denies them, it
        returns the reason, and ``previous`` has the earlier value of every
        setting it tried to change.

        :raises redis.RedisError: the server cannot be reached.
        """
        client = self._clients[0]
        for name, value in settings.items():
            try:
                current = client.config_get(name)
            except redis.ResponseError as error:
                return f"the Redis server at {self.host}:{self.port} rejected CONFIG GET {name}: {error}"
            if name not in current:
                return f"the Redis server at {self.host}:{self.port} has no setting {name}"
            # Saved before the SET, whose reply may be lost after the server applied it.
            previous[name] = current[name]
            try:
                client.config_set(name, value)
            except redis.ResponseError as error:
                return (
                    f"the Redis server at {self.host}:{self.port} rejected CONFIG SET {name} {value}: {error}"
                )
            log.debug("set %s to %s on %s:%d, was %s", name, value, self.host, self.port, current[name])
        return None

    def restore_config(self, previous: dict[str, str]) -> None:
        """Set each setting in ``previous`` back to its value there with CONFIG SET.

        :raises RedisSideError: the server rejected a setting or cannot be reached.
        """
        for name, value in previous.items():
            try:
                self._clients[0].config_set(name, value)
            except redis.RedisError as error:
                raise RedisSideError(
                    f"could not set {name} back to {value} on the Redis server at {self.host}:{self.port}:"
                    f" {error}. Set it by hand"
                ) from None

    def run_raw(self, commands: Any, variables: Variables) -> None:
        """Send the commands of a ``raw`` step, each to its database.

        :raises StepFailure: a command is malformed or Redis rejected it.
        """
        if not isinstance(commands, list):
            raise StepFailure(f"invalid raw step: it must hold a list of commands, not {render(commands)}")
        for index, entry in enumerate(commands, 1):
            client, command = self._raw_command(index, entry, variables)
            try:
                client.execute_command(*command)
            except redis.RedisError as error:
                raise StepFailure(f"raw command {index} {render(command)} failed: {error}") from None

    def _raw_command(self, index: int, entry: Any, variables: Variables) -> tuple[Any, list[Any]]:
        if not isinstance(entry, dict) or set(entry) != {"db", "command"}:
            raise StepFailure(f"invalid raw command {index}: it needs db and command, not {render(entry)}")
        try:
            command = resolve(entry["command"], variables)
        except VectorValueError as error:
            raise StepFailure(f"invalid raw command {index}: {error}") from None
        if not isinstance(command, list) or not command:
            raise StepFailure(f"invalid raw command {index}: command must be a non-empty list")
        return self._client(entry["db"]), [_argument(part) for part in command]

    def check_layout(self, layout: dict[str, Any], variables: Variables) -> None:
        """Raise :class:`StepFailure` at the first difference between Redis and ``layout``."""
        keys = layout.get("keys", [])
        if not isinstance(keys, list):
            raise StepFailure(f"invalid layout: keys must be a list, not {render(keys)}")

        listed: set[tuple[int, bytes]] = set()
        for entry in keys:
            db, key = self._check_key(entry, variables)
            listed.add((db, key))
        if layout.get("exhaustive"):
            self._check_no_other_keys(listed)

    def _check_key(self, raw: Any, variables: Variables) -> tuple[int, bytes]:
        try:
            entry = resolve(raw, variables)
        except VectorValueError as error:
            raise StepFailure(f"invalid layout: {error}") from None
        if not isinstance(entry, dict) or not {"db", "key", "type"} <= set(entry):
            raise StepFailure(f"invalid layout key: it needs db, key and type, not {render(raw)}")

        client = self._client(entry["db"])
        key = _argument(entry["key"])
        where = f"db {entry['db']} key {render(decode_text_bytes(key))}"
        got_type = client.type(key).decode("ascii")
        if got_type != entry["type"]:
            got_text = "no such key" if got_type == "none" else got_type
            raise StepFailure.mismatch(
                f"type {entry['type']} at {where}", got_text, {"type": entry["type"]}, {"type": got_type}
            )

        if "members" in entry:
            self._check_members(client, key, where, entry)
        if "fields" in entry:
            self._check_fields(client, key, where, entry["fields"])
        if "value" in entry:
            self._check_value(client, key, where, entry["value"])
        if "ttl_ms" in entry:
            self._check_ttl(client, key, where, entry["ttl_ms"])
        return entry["db"], key

    def _check_members(self, client: Any, key: bytes, where: str, entry: dict[str, Any]) -> None:
        members = entry["members"]
        if not isinstance(members, list):
            raise StepFailure(f"invalid layout at {where}: members must be a list")
        if entry["type"] == "zset":
            expected_scored = sorted(_scored_member(where, item) for item in members)
            replies = client.zrange(key, 0, -1, withscores=True)
            got_scored = sorted((float(score), member) for member, score in replies)
            if expected_scored != got_scored:
                self._fail_values(where, "members", _scored_json(expected_scored), _scored_json(got_scored))
            return

        expected = sorted(_argument(member) for member in members)
        got = sorted(client.smembers(key))
        if expected != got:
            self._fail_values(where, "members", _texts_json(expected), _texts_json(got))

    def _check_fields(self, client: Any, key: bytes, where: str, fields: Any) -> None:
        if not isinstance(fields, dict):
            raise StepFailure(f"invalid layout at {where}: fields must be an object")
        expected = {text_to_bytes(name): _argument(value) for name, value in fields.items()}
        got = client.hgetall(key)
        if expected != got:
            self._fail_values(where, "fields", _fields_json(expected), _fields_json(got))

    def _check_value(self, client: Any, key: bytes, where: str, value: Any) -> None:
        expected = _argument(value)
        got = client.get(key)
        if expected == got:
            return
        if got is None:
            self._fail_values(where, "value", expected, got)
        difference = bytes_mismatch(expected, got)
        raise StepFailure.mismatch(
            f"value {difference.expected_text} at {where}",
            difference.got_text,
            {"value": difference.expected_json},
            {"value": difference.got_json, "first_difference": difference.offset},
        )

    def _check_ttl(self, client: Any, key: bytes, where: str, bounds: Any) -> None:
        if not isinstance(bounds, dict) or not set(bounds) <= {"min", "max"}:
            raise StepFailure(f"invalid layout at {where}: ttl_ms must be an object with min and max")
        low = bounds.get("min", float("-inf"))
        high = bounds.get("max", float("inf"))
        got = client.pttl(key)
        if not low <= got <= high:
            # PTTL is -1 for a key without an expiry.
            got_text = "no expiry (PTTL -1)" if got == -1 else f"{got} ms"
            raise StepFailure.mismatch(
                f"ttl_ms from {low} to {high} at {where}", got_text, {"ttl_ms": bounds}, {"ttl_ms": got}
            )

    @staticmethod
    def _fail_values(where: str, part: str, expected: Any, got: Any) -> NoReturn:
        raise StepFailure.mismatch(
            f"{part} {render(expected)} at {where}",
            render(got),
            {part: to_report(expected)},
            {part: to_report(got)},
        )

    def _check_no_other_keys(self, listed: set[tuple[int, bytes]]) -> None:
        extra = []
        for db, client in enumerate(self._clients):
            extra += [(db, key) for key in client.scan_iter(count=1000) if (db, key) not in listed]
        if not extra:
            return

        extra_keys = [
            {"db": db, "key": decode_text_bytes(key), "type": self._clients[db].type(key).decode("ascii")}
            for db, key in sorted(extra)[:SHOWN_EXTRA_KEYS]
        ]
        more = f" and {len(extra) - len(extra_keys)} more" if len(extra) > len(extra_keys) else ""
        raise StepFailure.mismatch(
            "no other keys",
            f"{render(extra_keys)}{more}",
            {"other_keys": []},
            {"other_keys": to_report(extra_keys)},
        )

    def _client(self, db: Any) -> Any:
        if isinstance(db, bool) or not isinstance(db, int) or not 0 <= db < DATABASES:
            raise StepFailure(f"invalid db {db!r}: it must be 0 to 3, relative to the offset")
        return self._clients[db]

    def close(self) -> None:
        """Close the clients' connections."""
        for client in self._clients:
            client.close()


def _argument(value: Any) -> bytes:
    """Return a Redis argument or value as bytes: text in its stored form, numbers as decimal text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return text_to_bytes(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StepFailure(f"invalid Redis argument {render(value)}: it must be text, bytes or a number")
    return repr(value).encode("ascii")


def _scored_member(where: str, item: Any) -> tuple[float, bytes]:
    if not isinstance(item, list) or len(item) != 2 or isinstance(item[1], bool):
        raise StepFailure(
            f"invalid layout at {where}: a zset member must be [member, score], not {render(item)}"
        )
    member, score = item
    if not isinstance(score, (int, float)):
        raise StepFailure(f"invalid layout at {where}: the score of {render(member)} must be a number")
    return float(score), _argument(member)


def _texts_json(items: list[bytes]) -> list[str]:
    return [decode_text_bytes(item) for item in items]


def _scored_json(items: list[tuple[float, bytes]]) -> list[list[Any]]:
    return [[decode_text_bytes(member), score] for score, member in items]


def _fields_json(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {decode_text_bytes(name): decode_text_bytes(value) for name, value in sorted(fields.items())}
