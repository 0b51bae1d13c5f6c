"""The listing methods of :class:`~slimta.storage.session.Session`.

Every listing is built on pages. The page methods of the spec return one
page and a cursor. The whole-list methods of version 1.0 follow the
cursors to the end, and the Python-only iterators yield the ids of one
page at a time. An engine implements one ``_do_*_page`` method per
listing.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator

from . import _validate as validate
from ._records import Page

__all__ = ["LISTING_PAGE_SIZE", "Listings"]

# The page size of the whole-list methods and the iterators: the spec's
# default page size.
LISTING_PAGE_SIZE = 1000


class Listings(abc.ABC):
    """The listing methods of a session, each on the pages of one ``_do_*_page`` method."""

    def get_active_messages(self) -> list[str]:
        """List the messages that are locked now.

        Returns the stored message ids that have an unexpired lock, in no
        particular order, each once.
        """
        self._check_open()

        def read_page(cursor: str | None) -> Page:
            return self._do_get_active_messages_page(cursor, LISTING_PAGE_SIZE, "get_active_messages")

        return _unique(_follow(read_page))

    def get_deferred_messages(self, timestamp: float | None = None) -> list[str]:
        """List the messages whose retry time has come.

        Returns the ids whose retry time is at or before ``timestamp``, or
        every id with a retry time when ``timestamp`` is None, ordered by
        retry time, then by id.
        """
        self._check_open()
        until = validate.optional_timestamp(timestamp)

        def read_page(cursor: str | None) -> Page:
            operation = "get_deferred_messages"
            return self._do_get_deferred_messages_page(until, cursor, LISTING_PAGE_SIZE, operation)

        return _unique(_follow(read_page))

    def get_all_messages(self) -> list[str]:
        """List every stored message.

        Returns every stored id once, in no particular order, including
        ids that have no meta or contents yet.
        """
        self._check_open()

        def read_page(cursor: str | None) -> Page:
            return self._do_get_all_messages_page(cursor, LISTING_PAGE_SIZE, "get_all_messages")

        return _unique(_follow(read_page))

    def get_all_messages_page(self, cursor: str | None = None, count: int = 1000) -> Page:
        """List one page of every stored message.

        Start with a ``cursor`` of None and pass each returned cursor back
        until it is None. ``count``, from 1 to 10000, is a hint of how many
        ids the page holds.

        :raises InvalidArgument: ``cursor`` is not a cursor of this listing.
        """
        self._check_open()
        checked_cursor = validate.optional_cursor(cursor)
        checked_count = validate.page_size(count)
        return self._do_get_all_messages_page(checked_cursor, checked_count, "get_all_messages_page")

    def get_deferred_messages_page(
        self, timestamp: float | None = None, cursor: str | None = None, count: int = 1000
    ) -> Page:
        """List one page of the messages whose retry time has come.

        The pages hold the ids of :meth:`get_deferred_messages`, in the
        same order. Pass the same ``timestamp`` with every page.

        :raises InvalidArgument: ``cursor`` is not a cursor of this listing.
        """
        self._check_open()
        until = validate.optional_timestamp(timestamp)
        checked_cursor = validate.optional_cursor(cursor)
        checked_count = validate.page_size(count)
        operation = "get_deferred_messages_page"
        return self._do_get_deferred_messages_page(until, checked_cursor, checked_count, operation)

    def get_active_messages_page(self, cursor: str | None = None, count: int = 1000) -> Page:
        """List one page of the messages that are locked now.

        The pages hold the ids of :meth:`get_active_messages`.

        :raises InvalidArgument: ``cursor`` is not a cursor of this listing.
        """
        self._check_open()
        checked_cursor = validate.optional_cursor(cursor)
        checked_count = validate.page_size(count)
        return self._do_get_active_messages_page(checked_cursor, checked_count, "get_active_messages_page")

    def iter_all_messages(self, page_size: int = LISTING_PAGE_SIZE) -> Iterator[str]:
        """Yield every stored message id, reading one page at a time.

        A Python extension, not part of the spec, on
        :meth:`get_all_messages_page`, so memory stays flat however large
        the queue is. An id stored or deleted meanwhile may or may not be
        yielded, and the Redis engine yields an id twice when its set of
        ids shrinks meanwhile, as SSCAN does.
        """
        self._check_open()
        count = validate.page_size(page_size, "page_size")
        return _follow(lambda cursor: self.get_all_messages_page(cursor, count))

    def iter_deferred_messages(
        self, timestamp: float | None = None, page_size: int = LISTING_PAGE_SIZE
    ) -> Iterator[str]:
        """Yield the ids whose retry time has come, reading one page at a time.

        A Python extension, not part of the spec, on
        :meth:`get_deferred_messages_page`, in the order of
        :meth:`get_deferred_messages`.
        """
        self._check_open()
        until = validate.optional_timestamp(timestamp)
        count = validate.page_size(page_size, "page_size")
        return _follow(lambda cursor: self.get_deferred_messages_page(until, cursor, count))

    def iter_active_messages(self, page_size: int = LISTING_PAGE_SIZE) -> Iterator[str]:
        """Yield the ids of the locked messages, reading one page at a time.

        A Python extension, not part of the spec, on
        :meth:`get_active_messages_page`.
        """
        self._check_open()
        count = validate.page_size(page_size, "page_size")
        return _follow(lambda cursor: self.get_active_messages_page(cursor, count))

    @abc.abstractmethod
    def _check_open(self) -> None: ...

    # The page methods take the name of the public method that reads the
    # page, for the errors they raise.

    @abc.abstractmethod
    def _do_get_all_messages_page(self, cursor: str | None, count: int, operation: str) -> Page: ...

    @abc.abstractmethod
    def _do_get_deferred_messages_page(
        self, until: float | None, cursor: str | None, count: int, operation: str
    ) -> Page: ...

    @abc.abstractmethod
    def _do_get_active_messages_page(self, cursor: str | None, count: int, operation: str) -> Page: ...


def _follow(read_page: Callable[[str | None], Page]) -> Iterator[str]:
    """Yield the ids of every page, following the cursors from the first page to the last."""
    cursor = None
    while True:
        page = read_page(cursor)
        yield from page.message_ids
        if page.cursor is None:
            return
        cursor = page.cursor


def _unique(message_ids: Iterable[str]) -> list[str]:
    # A paged listing may return an id twice, as Redis's SSCAN does while
    # the set shrinks, so the whole lists keep the first of each.
    return list(dict.fromkeys(message_ids))
